"""Test kit: the storage conformance kit and a fault-injecting storage wrapper.

``await check_storage(make_storage)`` runs every guarantee of the storage
interface (see `trio_peeper.storage.Storage`) against a backend, built-in or
third-party. ``FaultyStorage(inner, fail_on=...)`` fails (or tears) chosen
state writes to test what a durable server does when storage breaks.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Sequence

import trio

from ._errors import AlreadyStarted, StorageError
from ._util import final
from .storage._base import WHOLE, Fenced, Storage, Stored, Write
from .storage._codec import decode_record, encode_record, part_name

__all__ = ["FaultyStorage", "check_storage"]


def _fail(what: str) -> AssertionError:
    return AssertionError(f"storage conformance: {what}")


def _expect(condition: bool, what: str) -> None:
    if not condition:
        raise _fail(what)


async def _expect_raises(exc: type[BaseException], what: str, fn: Callable[[], object]) -> None:
    try:
        await fn()  # type: ignore[misc]
    except exc:
        return
    except BaseException as other:
        msg = f"{what}: expected {exc.__name__}, got {other!r}"
        raise _fail(msg) from other
    raise _fail(f"{what}: expected {exc.__name__}, nothing was raised")


async def check_storage(make_storage: Callable[[], Storage]) -> None:
    """Check that a backend keeps every promise of the storage interface.

    *make_storage* returns a new storage object on each call, all over the same
    backing data (for `Memory`, ``lambda: shared_instance``); it is called a few
    times to play different owners. Keys are unique per call, so the kit can
    run against a store that already holds data. Raises `AssertionError`
    naming the broken promise.
    """
    run = uuid.uuid4().hex[:12]
    k1, k2, k3 = (f"check/{run}/{i}" for i in range(3))
    a, b = make_storage(), make_storage()
    await a.open()
    await b.open()
    try:
        _expect(await a.load(k1) is None, "load of an unknown key returns None")

        t1 = await a.claim(k1, f"{run}-A")
        _expect(isinstance(t1, int) and t1 > 0, f"claim returns a positive int token, got {t1!r}")
        await _expect_raises(AlreadyStarted, "a second live owner's claim", lambda: b.claim(k1, f"{run}-B"))

        whole = encode_record({"n": 1, "items": [1, 2]})
        results = await a.write([Write(k1, t1, 1, {WHOLE: whole})])
        _expect(results == [None], f"a write under the current token succeeds, got {results!r}")
        stored = await b.load(k1)
        _expect(isinstance(stored, Stored), f"load after a write returns Stored, got {stored!r}")
        assert stored is not None
        _expect(stored.vsn == 1 and stored.token == t1, f"load gives the written vsn and the token, got {stored!r}")
        _expect(stored.parts == {WHOLE: whole}, "load gives back the written parts byte for byte")
        _expect(decode_record(stored.parts[WHOLE]) == {"n": 1, "items": [1, 2]}, "records round-trip")

        pa, pb = part_name("a"), part_name("b")
        ra, rb, rb2 = encode_record(1), encode_record([2]), encode_record("two")
        results = await a.write([Write(k1, t1, 2, {pa: ra, pb: rb}, replace=True)])
        _expect(results == [None], "a replacing write succeeds")
        stored = await a.load(k1)
        _expect(stored is not None and stored.parts == {pa: ra, pb: rb}, "replace drops the parts not rewritten")
        _expect(stored is not None and stored.vsn == 2, "a write sets the vsn")
        results = await a.write([Write(k1, t1, 2, {pb: rb2}, [pa])])
        stored = await a.load(k1)
        _expect(results == [None] and stored is not None and stored.parts == {pb: rb2}, "a partial write sets and deletes only its parts")

        await a.release(k1, t1)
        t2 = await b.claim(k1, f"{run}-B")
        _expect(t2 > t1, f"a new claim gets a greater token ({t2!r} after {t1!r})")
        stale = await a.write([Write(k1, t1, 3, {pa: ra})])
        _expect(len(stale) == 1 and isinstance(stale[0], Fenced), f"a stale owner's write is fenced, got {stale!r}")
        stored = await b.load(k1)
        _expect(stored is not None and stored.parts == {pb: rb2} and stored.vsn == 2, "a fenced write changes nothing")
        await a.release(k1, t1)  # stale: ignored
        await _expect_raises(AlreadyStarted, "a stale release does not free the key", lambda: a.claim(k1, f"{run}-A"))

        t_k2 = await b.claim(k2, f"{run}-B")
        t_k3 = await b.claim(k3, f"{run}-B")
        results = await b.write(
            [
                Write(k2, t_k2, 1, {WHOLE: encode_record(2)}),
                Write(k1, t1, 1, {WHOLE: encode_record("stale")}),
                Write(k3, t_k3, 1, {WHOLE: encode_record(3)}),
            ]
        )
        _expect(
            results[0] is None and isinstance(results[1], Fenced) and results[2] is None,
            f"in a batch, only the stale write is fenced, got {results!r}",
        )
        s2, s3 = await a.load(k2), await a.load(k3)
        _expect(
            s2 is not None and s3 is not None and decode_record(s2.parts[WHOLE]) == 2 and decode_record(s3.parts[WHOLE]) == 3,
            "the other writes of the batch are applied",
        )

        big = encode_record({"blob": "x" * 1_000_000})
        results = await b.write([Write(k2, t_k2, 1, {WHOLE: big})])
        s2 = await a.load(k2)
        _expect(results == [None] and s2 is not None and s2.parts[WHOLE] == big, "a 1 MB record round-trips")

        many = [Write(k3, t_k3, 1, {part_name(i): encode_record(i) for i in range(200)}, replace=True)]
        _expect(await b.write(many) == [None], "a write of 200 parts succeeds")
        s3 = await a.load(k3)
        _expect(s3 is not None and len(s3.parts) == 200, "200 parts are all stored")

        await _expect_raises(Fenced, "a stale delete is fenced", lambda: a.delete(k2, t_k2 - 1 if t_k2 > 1 else 0))
        await b.delete(k2, t_k2)
        _expect(await a.load(k2) is None, "load after delete returns None")
        await b.release(k2, t_k2)
        t_k2b = await a.claim(k2, f"{run}-A")
        _expect(t_k2b > t_k2, "tokens never go back, even after a delete")
        await a.release(k2, t_k2b)
        await b.release(k1, t2)
        await b.release(k3, t_k3)
    finally:
        with trio.CancelScope(shield=True):
            await a.aclose()
            await b.aclose()


@final
class FaultyStorage(Storage):
    """Wraps a backend; the n-th state write (from 1) fails when ``fail_on(n)`` is true.

    Each `Write` of a batch counts as one state write; claims, releases, loads
    and deletes are not counted. A failing write gets a `StorageError` result
    (the rest of its batch goes through). With ``tear=True`` a failing write
    first applies the first half of its parts to the inner store, as a torn
    write to a non-transactional store would.
    """

    def __init__(self, inner: Storage, *, fail_on: Callable[[int], bool], tear: bool = False) -> None:
        self.inner, self.fail_on, self.tear = inner, fail_on, tear
        self.writes = 0  # state writes seen
        self.failed: list[int] = []  # the numbers of the writes made to fail

    def __repr__(self) -> str:
        return f"<FaultyStorage over {self.inner!r}: {self.writes} writes, failed {self.failed}>"

    async def open(self) -> None:
        await self.inner.open()

    async def aclose(self) -> None:
        await self.inner.aclose()

    async def claim(self, key: str, owner: str) -> int:
        return await self.inner.claim(key, owner)

    async def release(self, key: str, token: int) -> None:
        await self.inner.release(key, token)

    async def load(self, key: str) -> Stored | None:
        return await self.inner.load(key)

    async def delete(self, key: str, token: int) -> None:
        await self.inner.delete(key, token)

    async def write(self, batch: Sequence[Write]) -> list[BaseException | None]:
        results: list[BaseException | None] = [None] * len(batch)
        passed: list[tuple[int, Write]] = []
        torn: list[Write] = []
        for i, w in enumerate(batch):
            self.writes += 1
            if self.fail_on(self.writes):
                self.failed.append(self.writes)
                results[i] = StorageError(f"injected failure of state write #{self.writes} (key {w.key!r})")
                if self.tear and w.set_parts:
                    half = dict(list(w.set_parts.items())[: max(1, len(w.set_parts) // 2)])
                    torn.append(Write(w.key, w.token, w.vsn, half))
            else:
                passed.append((i, w))
        if torn:
            await self.inner.write(torn)
        if passed:
            inner = await self.inner.write([w for _, w in passed])
            for (i, _), r in zip(passed, inner):
                results[i] = r
        else:
            await trio.lowlevel.checkpoint()
        return results
