"""The node: the root of a program that uses durability (`open_node`).

It owns the storage, claims keys for its durable servers (at most one live
owner per key, in this process or any other) and runs the *committer*: one
task that takes every durable write waiting at that moment and hands them to
the storage as one batch, one transaction (group commit). A server waiting
for its write to be durable is parked, not polling.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Hashable
from contextlib import asynccontextmanager
from typing import Any

import trio
from outcome import Value
from trio.lowlevel import Abort, current_task, reschedule, wait_task_rescheduled

from ._errors import AlreadyStarted, StorageError
from ._runtime import current_runtime
from ._util import final
from .storage._base import Storage, Write


def _not_now(_: object) -> Abort:
    # a durable write is not abandoned half way: a kill lands once it is done
    return Abort.FAILED


@final
class _Pending:
    __slots__ = ("task", "write")

    def __init__(self, write: Write, task: trio.lowlevel.Task) -> None:
        self.write, self.task = write, task


@final
class Node:
    """The running node (`open_node`'s handle): its storage, id and live keys.

    .. versionadded:: 0.1
    """

    __slots__ = ("_committer", "_live", "_nursery", "_opened", "_opening", "_pending", "_releasing", "_storage", "id", "name")

    def __init__(self, storage: Storage | None, name: Hashable | None) -> None:
        if storage is not None and not isinstance(storage, Storage):
            msg = f"storage must be a tp.storage backend (a tp.storage.Storage), got {storage!r}"
            raise TypeError(msg)
        self._storage = storage
        self.name = name
        self.id = uuid.uuid4().hex  # this node's owner id in the storage
        self._opened = False
        self._opening: trio.Lock | None = None  # one open, however many servers start at once
        self._pending: list[_Pending] = []
        self._committer: trio.lowlevel.Task | None = None
        self._live: dict[str, list[Any]] = {}  # {key: [ServerRef, token]} claimed by this node
        self._nursery: trio.Nursery | None = None
        self._releasing: dict[str, trio.Event] = {}  # {key: set once its release reached the storage}

    def __repr__(self) -> str:
        return f"<Node {self.name or self.id[:8]} storage={self._storage!r} live={len(self._live)}>"

    @property
    def storage(self) -> Storage | None:
        """The storage backend (None until a durable server needs the default SQLite)."""
        return self._storage

    async def _ensure_storage(self) -> Storage:
        if self._storage is None:
            from .storage import SQLite  # noqa: PLC0415 - the default, only when needed

            self._storage = SQLite("trio_peeper.db")
        if not self._opened:
            if self._opening is None:
                self._opening = trio.Lock()
            async with self._opening:
                if not self._opened:
                    await self._storage.open()
                    self._opened = True
        return self._storage

    # ------------------------------------------------------------- claims

    async def claim(self, key: str, ref: Any) -> int:
        """Make this node the live owner of *key* for *ref*; returns the fencing token."""
        holder = self._live.get(key)
        if holder is not None:
            await trio.lowlevel.checkpoint()
            raise AlreadyStarted(key, holder[0], what="key")
        releasing = self._releasing.get(key)
        if releasing is not None:  # it just stopped: its release goes first
            await releasing.wait()
            return await self.claim(key, ref)
        entry = self._live[key] = [ref, 0]  # reserved while the claim is in flight
        try:
            storage = await self._ensure_storage()
            token = await storage.claim(key, self.id)
        except BaseException:
            del self._live[key]
            raise
        entry[1] = token
        return token

    def release_soon(self, key: str, token: int) -> None:
        """Let *key* go (its server stopped for good); the storage is told in the background."""
        self._live.pop(key, None)
        if self._nursery is not None and self._storage is not None and self._opened:
            self._releasing[key] = trio.Event()
            self._nursery.start_soon(self._release, key, token)

    async def _release(self, key: str, token: int) -> None:
        try:
            assert self._storage is not None
            await self._storage.release(key, token)
        except StorageError:
            pass  # the next claim of the key bumps the token anyway
        finally:
            done = self._releasing.pop(key, None)
            if done is not None:
                done.set()

    # ------------------------------------------------------------- writes

    async def write(self, write: Write) -> BaseException | None:
        """Queue *write* for the next batch; returns its result once the batch is durable.

        Not cancellable half way: a cancel (a kill) takes effect when the write is done.
        """
        await self._ensure_storage()
        pending = _Pending(write, current_task())
        self._pending.append(pending)
        committer = self._committer
        if committer is not None:
            self._committer = None
            reschedule(committer)
        result: BaseException | None = await wait_task_rescheduled(_not_now)
        return result

    async def _commit_loop(self) -> None:
        while True:
            if not self._pending:
                self._committer = current_task()
                await wait_task_rescheduled(_committer_abort(self))
                continue
            batch, self._pending = self._pending, []
            try:
                assert self._storage is not None
                results = await self._storage.write([p.write for p in batch])
                if len(results) != len(batch):
                    msg = f"storage {self._storage!r} returned {len(results)} results for {len(batch)} writes"
                    raise StorageError(msg)
            except Exception as e:  # the whole batch failed: nothing of it is acknowledged
                results = [e] * len(batch)
            for p, r in zip(batch, results):
                reschedule(p.task, Value(r))

    async def _aclose(self) -> None:
        if self._storage is not None and self._opened:
            self._opened = False
            with trio.CancelScope(shield=True):
                live, self._live = self._live, {}
                for key, (_, token) in live.items():
                    if token:
                        await self._release(key, token)
                await self._storage.aclose()


def _committer_abort(node: Node) -> Any:
    def abort(_: object) -> Abort:
        node._committer = None
        return Abort.SUCCEEDED

    return abort


def current_node() -> Node:
    """The node opened with `open_node` in this run.

    Raises:
      RuntimeError: no node is open (durable servers need ``async with tp.open_node(...)``).
    """
    node = current_runtime().node
    if node is None:
        msg = "durable servers need a node: run them inside `async with tp.open_node(storage=...)`"
        raise RuntimeError(msg)
    return node  # type: ignore[no-any-return]


@asynccontextmanager
async def open_node(*, storage: Storage | None = None, name: Hashable | None = None) -> AsyncIterator[Node]:
    """The root of a program that uses durable servers.

    *storage* is a backend from `tp.storage`; with none, ``SQLite("trio_peeper.db")``
    is opened when the first durable server starts. Close it after the
    supervisors of its durable servers (nest them inside), so their final
    syncs land.

    .. versionadded:: 0.1
    """
    rt = current_runtime()
    if rt.node is not None:
        msg = "a node is already open in this trio.run"
        raise RuntimeError(msg)
    node = Node(storage, name)
    rt.node = node
    try:
        async with trio.open_nursery() as nursery:
            node._nursery = nursery
            nursery.start_soon(node._commit_loop, name="trio_peeper.committer")
            try:
                yield node
            finally:
                nursery.cancel_scope.cancel()
    finally:
        rt.node = None
        await node._aclose()

