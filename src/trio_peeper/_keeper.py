"""The keeper: the cell that outlives a server's crashes.

A keeper is a plain object held by the `ServerRef`, not a task. It holds the
mailbox and the last committed state; an incarnation reads from it and commits
to it, and when an incarnation dies the keeper is untouched, so the next one
continues from it. Preservation (committed state across restarts, the process
dictionary, tables) builds on this cell.
"""

from __future__ import annotations

import _fastcore

from ._util import final

_NO_STATE = object()  # the keeper has never committed a state


@final
class Keeper:
    """Mailbox + committed state of one server, across all its incarnations."""

    __slots__ = ("commits", "mailbox", "pdict", "state")

    def __init__(self) -> None:
        self.mailbox = _fastcore.Ring(4)  # [(tag, payload)], oldest first; grows on demand
        self.state: object = _NO_STATE
        self.commits = 0
        self.pdict: dict[object, object] | None = None  # made on first use

    @property
    def has_state(self) -> bool:
        """True once an incarnation committed a state."""
        return self.state is not _NO_STATE

    def forget(self) -> None:
        """Drop everything preserved (the server stopped for good)."""
        self.state = _NO_STATE
        self.pdict = None
