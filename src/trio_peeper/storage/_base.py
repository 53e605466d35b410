"""The storage interface durable servers write through, and what it exchanges.

A backend keeps, per durable *key*: the owner's fencing token, the stored
format ``vsn`` (the server class's version), and the state as *parts*: opaque
part names (bytes) mapped to encoded records (bytes, see `_codec`). A state
whose dumped data is a dict is stored one part per top-level key, so a write
carries only the keys that changed; any other data is one part named ``b""``.

Guarantees every backend gives (`trio_peeper.testing.check_storage` checks them):
- ``claim`` gives a fencing token greater than every token given for that key
  before, or raises `AlreadyStarted` while another *live* owner holds the key
  (an owner whose process died is detected at once: no lease to wait out);
- ``write`` applies all of a batch's writes in one transaction when it can
  (group commit), and each write only if the key's token is still the
  writer's: a stale owner's write fails with `Fenced` and changes nothing;
- a write that returned (without an error for it) is durable;
- ``load`` returns what the last successful writes left.
"""

from __future__ import annotations

import abc
from collections.abc import Sequence

from .._errors import StorageError
from .._util import final

WHOLE = b""  # the part name of a state stored as one part


class Fenced(StorageError):
    """A write or release by an owner whose claim was superseded: nothing was written."""

    def __init__(self, key: str, token: int, current: int | None) -> None:
        super().__init__(f"key {key!r}: token {token} is stale (the key is claimed with {current}); write refused")
        self.key, self.token, self.current = key, token, current

    def __reduce__(self) -> tuple[object, ...]:
        return type(self), (self.key, self.token, self.current)


@final
class Stored:
    """What `Storage.load` returns for a key: its format version, token and parts."""

    __slots__ = ("parts", "token", "vsn")

    def __init__(self, vsn: int, token: int, parts: dict[bytes, bytes]) -> None:
        self.vsn, self.token, self.parts = vsn, token, parts

    def __repr__(self) -> str:
        return f"Stored(vsn={self.vsn}, token={self.token}, parts={len(self.parts)})"


@final
class Write:
    """One durable server's changes: parts to set and to delete, under its token.

    ``replace=True`` drops every stored part not in ``set_parts`` first (the
    whole state was rewritten).
    """

    __slots__ = ("delete_parts", "key", "replace", "set_parts", "token", "vsn")

    def __init__(
        self,
        key: str,
        token: int,
        vsn: int,
        set_parts: dict[bytes, bytes],
        delete_parts: Sequence[bytes] = (),
        *,
        replace: bool = False,
    ) -> None:
        self.key, self.token, self.vsn = key, token, vsn
        self.set_parts, self.delete_parts, self.replace = set_parts, tuple(delete_parts), replace

    def __repr__(self) -> str:
        return (
            f"Write({self.key!r}, token={self.token}, vsn={self.vsn}, set={len(self.set_parts)},"
            f" delete={len(self.delete_parts)}, replace={self.replace})"
        )


class Storage(abc.ABC):
    """The small async interface of a storage backend (see the module docstring).

    Every method is a checkpoint. Implement it to plug in another store; run
    `trio_peeper.testing.check_storage` against it.

    .. versionadded:: 0.1
    """

    @abc.abstractmethod
    async def open(self) -> None:
        """Connect / create what is needed. Called once by the node before any other method."""

    @abc.abstractmethod
    async def aclose(self) -> None:
        """Release everything (this process's claims die with it)."""

    @abc.abstractmethod
    async def claim(self, key: str, owner: str) -> int:
        """Become the live owner of *key*; returns the new fencing token.

        Raises:
          AlreadyStarted: another live owner holds *key* (in this process or another).
          StorageError: the backend failed.
        """

    @abc.abstractmethod
    async def release(self, key: str, token: int) -> None:
        """Stop owning *key* (a stale token is ignored: nothing to release)."""

    @abc.abstractmethod
    async def load(self, key: str) -> Stored | None:
        """The stored state of *key*, or None if nothing was ever written."""

    @abc.abstractmethod
    async def write(self, batch: Sequence[Write]) -> list[BaseException | None]:
        """Apply *batch* (one transaction when possible); one result per write, in order.

        A write whose token is stale gets a `Fenced` result and changes
        nothing; the others are applied. An error of the whole batch (the
        disk, the connection) is raised as `StorageError` (nothing written).
        """

    @abc.abstractmethod
    async def delete(self, key: str, token: int) -> None:
        """Forget *key*'s state (its owner's token required).

        Raises:
          Fenced: *token* is stale.
        """
