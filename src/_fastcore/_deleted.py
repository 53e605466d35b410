"""`DELETED`, the marker of a removed path in a state diff, shared by both ``_cow`` twins.

One object whichever twin made the diff, so diffs compare equal across twins,
and one pickle (``_fastcore._deleted.DELETED``) that either twin loads
(STYLE S7.3: persisted bytes never depend on the implementation).
"""

from __future__ import annotations

from typing import Final

__all__ = ["DELETED"]


class _Deleted:
    __slots__ = ()

    def __repr__(self) -> str:
        return "DELETED"

    def __reduce__(self) -> str:
        return "DELETED"  # pickled by reference: unpickles as this very object


DELETED: Final = _Deleted()
