"""Shared by the `_fastcore` tests: load each module's two twins, and items that must never be compared.

Every fastcore test runs once per twin. The fixture imports the module by name,
so a missing compiled extension is an error, never a skip.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from types import ModuleType

import pytest


def twins(stem: str) -> dict[str, str]:
    """``{"cython": "_fastcore._<stem>", "python": "_fastcore._<stem>_py"}``."""
    return {"cython": f"_fastcore._{stem}", "python": f"_fastcore._{stem}_py"}


def twin_fixture(stem: str) -> Callable[[pytest.FixtureRequest], ModuleType]:
    """A module-scoped fixture yielding each twin of ``_fastcore._<stem>`` in turn."""
    names = twins(stem)

    @pytest.fixture(params=sorted(names), scope="module")
    def fixture(request: pytest.FixtureRequest) -> ModuleType:
        return importlib.import_module(names[request.param])

    return fixture


class Poison:
    """An item whose ``__eq__`` and ``__hash__`` raise: a container of items must never call them."""

    __slots__ = ("__weakref__", "n")

    def __init__(self, n: int) -> None:
        self.n = n

    def __eq__(self, other: object) -> bool:
        raise AssertionError("an item was compared")

    def __hash__(self) -> int:
        raise AssertionError("an item was hashed")

    def __repr__(self) -> str:
        return f"Poison({self.n})"
