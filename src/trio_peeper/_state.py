"""`snapshotted`: let the instances of your own class be rolled back with the state."""

from __future__ import annotations

from typing import TypeVar

import _fastcore._objects as _objects
from _fastcore import SCALARS

__all__ = ["snapshotted"]

ClassT = TypeVar("ClassT", bound=type)

# handled already: immutable values (dict, list, set and the other item types:
# _objects.ITEM_TYPES)
_BUILTIN = frozenset({*SCALARS, tuple, object, type})


def snapshotted(cls: ClassT) -> ClassT:
    """Snapshot the instances of *cls* (and of its subclasses) in a preserving server's state.

    Use it as a class decorator, or call it on a class you do not own. An
    instance in the state then behaves as a mutable dataclass does: its
    attributes (``__dict__`` and ``__slots__``) are saved when each callback
    begins and put back in place if the callback crashes; an attribute changed
    by a callback that returns is a change at the instance's path; dicts, lists
    and sets stored in its attributes become tracked copies. It costs O(number
    of attributes) per callback for each instance in the state.

    Only for plain data: an instance is copied when it is stored at a second
    place of the state and when it leaves the state in a reply. Without this,
    instances of your classes are kept by reference and not rolled back.

    Raises:
      TypeError: *cls* is not a class, or is a builtin type the state handles already.
    """
    if not isinstance(cls, type):
        msg = f"snapshotted() expects a class, got {cls!r}"
        raise TypeError(msg)
    if cls in _BUILTIN or issubclass(cls, _objects.ITEM_TYPES):
        msg = f"snapshotted() expects a class of your own, got {cls.__qualname__!r}, which the state handles already"
        raise TypeError(msg)
    _objects.register(cls)
    return cls
