"""`Mirror`: dual-write to two backends, to migrate from one to the other.

The *primary* is authoritative: claims, fencing and loads go to it first; a
key the primary has never stored is loaded from the *secondary* (the backend
being migrated from), and the next write stores it in the primary. Every
write goes to the primary, then (if it succeeded there) to the secondary
under the secondary's own claim; a write is acknowledged only when both took
it, so switching to either backend alone later loses nothing acknowledged.
"""

from __future__ import annotations

from collections.abc import Sequence

from .._errors import StorageError
from .._util import final
from ._base import Fenced, Storage, Stored, Write


@final
class Mirror(Storage):
    """Writes through to *primary* and *secondary*; reads from *primary* first.

    .. versionadded:: 0.1
    """

    def __init__(self, primary: Storage, secondary: Storage) -> None:
        for s in (primary, secondary):
            if not isinstance(s, Storage):
                msg = f"Mirror needs two tp.storage backends, got {s!r}"
                raise TypeError(msg)
        self.primary, self.secondary = primary, secondary
        self._tokens: dict[str, int] = {}  # {key: the secondary's token for our claim}
        self._primary_tokens: dict[str, int] = {}  # {key: the primary's token for our claim}

    def __repr__(self) -> str:
        return f"<Mirror {self.primary!r} -> {self.secondary!r}>"

    async def open(self) -> None:
        await self.primary.open()
        await self.secondary.open()

    async def aclose(self) -> None:
        try:
            await self.primary.aclose()
        finally:
            await self.secondary.aclose()

    async def claim(self, key: str, owner: str) -> int:
        token = await self.primary.claim(key, owner)
        try:
            self._tokens[key] = await self.secondary.claim(key, owner)
        except BaseException:
            await self.primary.release(key, token)
            raise
        self._primary_tokens[key] = token
        return token

    async def release(self, key: str, token: int) -> None:
        await self.primary.release(key, token)
        self._primary_tokens.pop(key, None)
        secondary = self._tokens.pop(key, None)
        if secondary is not None:
            await self.secondary.release(key, secondary)

    async def load(self, key: str) -> Stored | None:
        stored = await self.primary.load(key)
        if stored is None:
            stored = await self.secondary.load(key)
            token = self._primary_tokens.get(key)
            if stored is not None and token is not None:
                # migrate the record now, so later partial writes land on a whole state
                (result,) = await self.primary.write([Write(key, token, stored.vsn, stored.parts, replace=True)])
                if result is not None:
                    raise result
        return stored

    async def write(self, batch: Sequence[Write]) -> list[BaseException | None]:
        results = await self.primary.write(batch)
        mirrored: list[tuple[int, Write]] = []
        for i, (w, r) in enumerate(zip(batch, results)):
            if r is None:
                token = self._tokens.get(w.key)
                if token is None:
                    results[i] = StorageError(f"Mirror: key {w.key!r} is not claimed on the secondary")
                    continue
                mirrored.append((i, Write(w.key, token, w.vsn, w.set_parts, w.delete_parts, replace=w.replace)))
        if mirrored:
            second = await self.secondary.write([w for _, w in mirrored])
            for (i, _), r in zip(mirrored, second):
                if r is not None:
                    err = StorageError(f"Mirror: the secondary refused the write of {batch[i].key!r}: {r}")
                    err.__cause__ = r
                    results[i] = err
        return results

    async def delete(self, key: str, token: int) -> None:
        await self.primary.delete(key, token)
        secondary = self._tokens.get(key)
        if secondary is None:
            raise Fenced(key, token, None)
        await self.secondary.delete(key, secondary)
