"""`Memory`: a storage backend in this process's memory (tests, examples).

Owners are the nodes of this process; a claim by a second live node raises
`AlreadyStarted`. Nothing survives the process.
"""

from __future__ import annotations

from collections.abc import Sequence

import trio

from .._errors import AlreadyStarted, StorageError
from .._util import final
from ._base import Fenced, Storage, Stored, Write


@final
class Memory(Storage):
    """Keeps durable state in a dict. Share one instance to share the data.

    .. versionadded:: 0.1
    """

    def __init__(self) -> None:
        # {key: [vsn, token, owner or None, {part: record}]}
        self._data: dict[str, list[object]] = {}
        self._open = 0

    def __repr__(self) -> str:
        return f"<Memory storage keys={len(self._data)}>"

    async def open(self) -> None:
        await trio.lowlevel.checkpoint()
        self._open += 1

    async def aclose(self) -> None:
        await trio.lowlevel.checkpoint()
        self._open = max(0, self._open - 1)

    def _entry(self, key: str) -> list[object]:
        entry = self._data.get(key)
        if entry is None:
            entry = self._data[key] = [0, 0, None, {}]
        return entry

    def _check_open(self) -> None:
        if not self._open:
            msg = "Memory storage is not open"
            raise StorageError(msg)

    async def claim(self, key: str, owner: str) -> int:
        await trio.lowlevel.checkpoint()
        self._check_open()
        entry = self._entry(key)
        holder = entry[2]
        if holder is not None and holder != owner:
            # in one process a node releases its keys when it closes: a holder is live
            raise AlreadyStarted(key, what="key")
        entry[1] = int(entry[1]) + 1  # type: ignore[call-overload]
        entry[2] = owner
        return int(entry[1])  # type: ignore[call-overload]

    async def release(self, key: str, token: int) -> None:
        await trio.lowlevel.checkpoint()
        entry = self._data.get(key)
        if entry is not None and entry[1] == token:
            entry[2] = None

    async def load(self, key: str) -> Stored | None:
        await trio.lowlevel.checkpoint()
        self._check_open()
        entry = self._data.get(key)
        if entry is None or not entry[3]:
            return None
        parts: dict[bytes, bytes] = dict(entry[3])  # type: ignore[call-overload]
        return Stored(int(entry[0]), int(entry[1]), parts)  # type: ignore[call-overload]

    async def write(self, batch: Sequence[Write]) -> list[BaseException | None]:
        await trio.lowlevel.checkpoint()
        self._check_open()
        results: list[BaseException | None] = []
        for w in batch:
            entry = self._data.get(w.key)
            current = None if entry is None else int(entry[1])  # type: ignore[call-overload]
            if current != w.token:
                results.append(Fenced(w.key, w.token, current))
                continue
            assert entry is not None
            parts: dict[bytes, bytes] = entry[3]  # type: ignore[assignment]
            if w.replace:
                parts.clear()
            for name in w.delete_parts:
                parts.pop(name, None)
            parts.update(w.set_parts)
            entry[0] = w.vsn
            results.append(None)
        return results

    async def delete(self, key: str, token: int) -> None:
        await trio.lowlevel.checkpoint()
        self._check_open()
        entry = self._data.get(key)
        current = None if entry is None else int(entry[1])  # type: ignore[call-overload]
        if current != token:
            raise Fenced(key, token, current)
        assert entry is not None
        entry[3] = {}
        entry[0] = 0
