"""The keeper: the cell that outlives a server's crashes.

A keeper is a plain object held by the `ServerRef`, not a task. It holds the
mailbox, the last committed state, the process dictionary and (for a
preserving server) the state's `_fastcore.Journal`; an incarnation reads from
it and commits to it, and when an incarnation dies the keeper is untouched, so
the next one continues from it. The journal makes every callback a
transaction: a crash rolls the state back to the last commit, in place.
"""

from __future__ import annotations

import _fastcore

from ._util import final

_NO_STATE = object()  # the keeper has never committed a state


@final
class Keeper:
    """Mailbox + committed state of one server, across all its incarnations."""

    __slots__ = ("commits", "journal", "mailbox", "pdict", "state")

    def __init__(self, owner: object, preserve: bool) -> None:
        # a preserving server's state is a tracked tree; None: plain objects
        self.journal: _fastcore.Journal | None = _fastcore.Journal(owner) if preserve else None
        self.mailbox = _fastcore.Ring(4)  # [(tag, payload)], oldest first; grows on demand
        self.state: object = _NO_STATE
        self.commits = 0
        self.pdict: dict[object, object] | None = None  # made on first use

    @property
    def has_state(self) -> bool:
        """True once an incarnation committed a state."""
        return self.state is not _NO_STATE

    def adopt(self, state: object) -> object:
        """Make *state* the committed state (tracked if preserving); returns what is stored."""
        j = self.journal
        if j is not None:
            state = j.adopt_root(state)
        self.state = state
        return state

    def forget(self) -> None:
        """Drop everything preserved (the server stopped for good)."""
        self.state = _NO_STATE
        self.pdict = None
        if self.journal is not None:
            self.journal.adopt_root(None)  # drops the root and the registry of snapshotted objects
