"""Suite-wide set-up: which _fastcore core runs, and virtual time for every trio test.

`make test` runs the whole suite twice, with ``TRIO_PEEPER_FASTCORE=cython``
(the compiled extensions are required: a missing one fails the run at import)
and with ``TRIO_PEEPER_FASTCORE=python`` (the pure-Python twins).
"""

from __future__ import annotations

import importlib.util
import os
import sys
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import Any

import pytest
import trio
import trio.testing

import _fastcore


def _load_pg() -> Any:
    """tests/storage/_pg.py, loaded by path once (the storage and durability tests share it)."""
    path = Path(__file__).resolve().parent / "storage" / "_pg.py"
    module = sys.modules.get("_pg")
    if module is not None and Path(getattr(module, "__file__", "")).resolve() == path:
        return module
    spec = importlib.util.spec_from_file_location("_pg", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["_pg"] = module
    spec.loader.exec_module(module)
    return module


# one real PostgreSQL server per test session, defined here once: a session
# fixture defined in two directories' conftests would start two servers
postgres_dsn = _load_pg().postgres_dsn


def pytest_report_header(config: pytest.Config) -> str:
    return f"trio_peeper _fastcore implementation: {_fastcore.IMPLEMENTATION}"


def pytest_configure(config: pytest.Config) -> None:
    wanted = os.environ.get("TRIO_PEEPER_FASTCORE", "auto")
    if wanted in ("cython", "python") and _fastcore.IMPLEMENTATION != wanted:
        msg = f"TRIO_PEEPER_FASTCORE={wanted} but _fastcore.IMPLEMENTATION is {_fastcore.IMPLEMENTATION}"
        raise pytest.UsageError(msg)


def _run_on_virtual_time(fn: Callable[[], Awaitable[object]], *, clock: trio.abc.Clock | None = None, instruments: Sequence[trio.abc.Instrument] = ()) -> object:
    """``trio.run`` with a MockClock that jumps ahead when all tasks block, unless the test brings a clock."""
    if clock is None:
        clock = trio.testing.MockClock(autojump_threshold=0)
    return trio.run(fn, clock=clock, instruments=instruments)


@pytest.hookimpl(trylast=True)
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Every trio test runs on virtual time (pytest-trio marked them already; our runner goes first)."""
    for item in items:
        if item.get_closest_marker("trio") is not None:
            item.add_marker(pytest.mark.trio(run=_run_on_virtual_time), append=False)
