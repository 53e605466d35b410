"""`SQLite`: the embedded storage backend (stdlib `sqlite3`, WAL mode).

One dedicated writer thread per instance owns the write connection and runs
every claim, release, write and delete. It takes all the jobs queued when it
wakes up and runs them in ONE ``BEGIN IMMEDIATE`` transaction, each job in its
own savepoint (group commit across callers, on top of the batches `write`
already gets): a job that fails is rolled back to its savepoint alone; a failed
``COMMIT`` fails the whole group. A caller awaits its job without blocking
Trio (the thread completes a Trio waiter through the run's token); a caller
cancelled after submitting stops waiting, and its job still commits, or not,
atomically. Reads (`load`) use a small pool of read connections in worker
threads: WAL lets them read a consistent snapshot while the writer commits.

Schema::

    servers(key TEXT PRIMARY KEY, vsn INTEGER, token INTEGER NOT NULL, owner TEXT)
    parts(key TEXT, part BLOB, value BLOB, PRIMARY KEY (key, part)) WITHOUT ROWID

A ``servers`` row is never deleted, so a key's tokens never go back.

Liveness of owners: for every owner id this instance claims for, it holds an
exclusive ``flock`` on ``<db path>.owners/<quoted owner>.lock`` until
`SQLite.aclose` (acquired on the first claim by that owner, inside the claim's
transaction). A claim that finds the key held by another owner tries to lock
that owner's file with ``LOCK_NB``: if it can, the holder's process is gone
(the lock died with it), the file is removed and the key is taken at once; if
it cannot, the holder is alive and the claim raises `AlreadyStarted`. A holder
without a lock file is dead. Lock files are created, checked and removed only
inside ``BEGIN IMMEDIATE`` transactions, so these checks are serialized
across processes by SQLite's own write lock.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import queue
import sqlite3
import threading
import urllib.parse
from collections.abc import Callable, Sequence
from typing import Any

import outcome
import trio

from .._errors import AlreadyStarted, StorageError
from .._util import final
from ._base import Fenced, Storage, Stored, Write

_SCHEMA_VERSION = 1
_SYNCHRONOUS = ("OFF", "NORMAL", "FULL", "EXTRA")
_BUSY_TIMEOUT = 60.0  # seconds another connection may hold the write lock before we fail
_MAX_GROUP = 512  # jobs committed in one transaction at most

_SCHEMA = (
    "CREATE TABLE IF NOT EXISTS servers ("
    " key TEXT PRIMARY KEY, vsn INTEGER, token INTEGER NOT NULL, owner TEXT NULL)",
    "CREATE TABLE IF NOT EXISTS parts ("
    " key TEXT NOT NULL, part BLOB NOT NULL, value BLOB NOT NULL, PRIMARY KEY (key, part)) WITHOUT ROWID",
)


class _Job:
    """One unit of work for the writer thread, and the Trio task waiting for it."""

    __slots__ = ("abandoned", "fn", "in_tx", "result", "task", "token")

    def __init__(self, fn: Callable[[sqlite3.Connection], Any], *, in_tx: bool) -> None:
        self.fn, self.in_tx = fn, in_tx
        self.result: outcome.Outcome[Any] | None = None
        self.task = trio.lowlevel.current_task()
        self.token = trio.lowlevel.current_trio_token()
        self.abandoned = False  # set (in the Trio thread) when the waiter was cancelled

    def finish(self, result: outcome.Outcome[Any]) -> None:
        """Writer thread: hand *result* to the waiter (in its Trio thread)."""
        self.result = result
        with contextlib.suppress(trio.RunFinishedError):
            self.token.run_sync_soon(self._deliver)

    def _deliver(self) -> None:
        if not self.abandoned:
            self.abandoned = True  # deliver once
            assert self.result is not None
            trio.lowlevel.reschedule(self.task, self.result)


_STOP = object()


def _lock_name(owner: str) -> str:
    """A file name for *owner*: its percent-encoding, or a hash when that is too long."""
    name = urllib.parse.quote(owner, safe="")
    if not name or len(name) > 150 or name.startswith("."):
        name = "h-" + hashlib.sha256(owner.encode("utf-8", "surrogatepass")).hexdigest()
    return name + ".lock"


def _same_file(fd: int, path: str) -> bool:
    """Whether the open *fd* is still the file at *path* (not unlinked or replaced)."""
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return False
    ft = os.fstat(fd)
    return (st.st_dev, st.st_ino) == (ft.st_dev, ft.st_ino)


@final
class SQLite(Storage):
    """Keeps durable state in an SQLite database file (WAL mode).

    ``synchronous`` is SQLite's ``PRAGMA synchronous`` of the write connection:
    ``"FULL"`` (the default) makes every acknowledged write survive a crash of
    the process or the machine; ``"NORMAL"`` may lose the last writes on power
    loss, never on a process crash. Several instances, in this process or in
    others, may share one file: each claim is exclusive across all of them.

    .. versionadded:: 0.1
    """

    def __init__(self, path: str | os.PathLike[str], *, synchronous: str = "FULL") -> None:
        self._path = os.fspath(path)
        if not isinstance(self._path, str):
            msg = f"SQLite storage path must be a str path, got {path!r}"
            raise TypeError(msg)
        if self._path == "" or self._path == ":memory:" or self._path.startswith("file:"):
            msg = f"SQLite storage needs a database file path, got {self._path!r}; use tp.storage.Memory() for memory"
            raise ValueError(msg)
        sync = str(synchronous).upper()
        if sync not in _SYNCHRONOUS:
            msg = f"synchronous must be one of {', '.join(_SYNCHRONOUS)}, got {synchronous!r}"
            raise ValueError(msg)
        self._synchronous = sync
        self._owners_dir = self._path + ".owners"
        self._open = 0
        self._thread: threading.Thread | None = None
        self._queue: queue.SimpleQueue[object] = queue.SimpleQueue()
        self._readers: list[sqlite3.Connection] = []
        # writer-thread state
        self._conn: sqlite3.Connection | None = None
        self._locks: dict[str, int] = {}  # owner -> fd holding its flock
        self._commits = 0  # transactions committed (tests look at it)

    def __repr__(self) -> str:
        state = "open" if self._open else "closed"
        return f"<SQLite storage {self._path!r} {state}>"

    @property
    def path(self) -> str:
        """The database file."""
        return self._path

    # ---------------------------------------------------------------- lifecycle

    async def open(self) -> None:
        await trio.lowlevel.checkpoint_if_cancelled()
        if self._open:
            self._open += 1
            await trio.lowlevel.cancel_shielded_checkpoint()
            return
        old = self._thread
        if old is not None and old.is_alive():
            # a cancelled aclose left the last writer thread finishing: let it
            await trio.to_thread.run_sync(old.join)
            if self._open:  # another open() got there first
                self._open += 1
                return
        self._queue = queue.SimpleQueue()
        self._conn = None
        self._locks = {}
        thread = threading.Thread(target=self._writer, name=f"trio_peeper SQLite writer {self._path}", daemon=True)
        self._thread = thread
        self._open = 1
        thread.start()
        try:
            await self._submit(self._init, in_tx=False)
        except BaseException:
            self._open = 0
            self._queue.put(_STOP)
            raise

    async def aclose(self) -> None:
        if self._open:
            self._open -= 1
            if not self._open:
                self._queue.put(_STOP)  # after every job already queued
                readers, self._readers = self._readers, []
                for conn in readers:
                    conn.close()
        thread = self._thread
        if thread is not None and not self._open and thread.is_alive():
            # the thread finishes the pending jobs, closes and unlocks; a cancelled
            # aclose stops waiting for that, not the thread
            await trio.to_thread.run_sync(thread.join, abandon_on_cancel=True)
        else:
            await trio.lowlevel.checkpoint()

    def _check_open(self) -> None:
        if not self._open:
            msg = f"SQLite storage {self._path!r} is not open"
            raise StorageError(msg)

    # ------------------------------------------------------------ the interface

    async def claim(self, key: str, owner: str) -> int:
        return await self._submit(lambda conn: self._claim(conn, key, owner))  # type: ignore[no-any-return]

    async def release(self, key: str, token: int) -> None:
        def release(conn: sqlite3.Connection) -> None:
            conn.execute("UPDATE servers SET owner = NULL WHERE key = ? AND token = ?", (key, token))

        await self._submit(release)

    async def write(self, batch: Sequence[Write]) -> list[BaseException | None]:
        batch = list(batch)
        return await self._submit(lambda conn: self._write(conn, batch))  # type: ignore[no-any-return]

    async def delete(self, key: str, token: int) -> None:
        def delete(conn: sqlite3.Connection) -> None:
            current = self._token(conn, key)
            if current != token:
                raise Fenced(key, token, current)
            conn.execute("DELETE FROM parts WHERE key = ?", (key,))
            conn.execute("UPDATE servers SET vsn = 0 WHERE key = ?", (key,))

        await self._submit(delete)

    async def load(self, key: str) -> Stored | None:
        await trio.lowlevel.checkpoint_if_cancelled()
        self._check_open()
        conn = self._readers.pop() if self._readers else None
        try:
            conn, stored = await trio.to_thread.run_sync(self._load, conn, key)
        except BaseException:
            if conn is not None:
                conn.close()
            raise
        if self._open and len(self._readers) < 8:
            self._readers.append(conn)
        else:
            conn.close()
        return stored

    # ------------------------------------------------------ the Trio side of jobs

    async def _submit(self, fn: Callable[[sqlite3.Connection], Any], *, in_tx: bool = True) -> Any:
        await trio.lowlevel.checkpoint_if_cancelled()
        self._check_open()
        job = _Job(fn, in_tx=in_tx)
        self._queue.put(job)

        def abort(_: object) -> trio.lowlevel.Abort:
            job.abandoned = True  # the job runs anyway; nobody learns its result
            return trio.lowlevel.Abort.SUCCEEDED

        return await trio.lowlevel.wait_task_rescheduled(abort)

    # ------------------------------------------------------------- writer thread

    def _writer(self) -> None:
        try:
            while True:
                job = self._queue.get()
                if job is _STOP:
                    return
                assert isinstance(job, _Job)
                if not job.in_tx:
                    job.finish(outcome.capture(self._run_alone, job))
                    continue
                group = [job]
                stop = False
                while len(group) < _MAX_GROUP:
                    try:
                        nxt = self._queue.get_nowait()
                    except queue.Empty:
                        break
                    if nxt is _STOP:
                        stop = True
                        break
                    assert isinstance(nxt, _Job)
                    if not nxt.in_tx:
                        self._run_group(group)
                        group = []
                        nxt.finish(outcome.capture(self._run_alone, nxt))
                        continue
                    group.append(nxt)
                if group:
                    self._run_group(group)
                if stop:
                    return
        finally:
            self._shutdown()

    def _error(self, what: str, e: BaseException) -> StorageError:
        err = StorageError(f"SQLite storage {self._path!r}: {what} failed: {type(e).__name__}: {e}")
        err.__cause__ = e
        return err

    def _rollback(self) -> None:
        """Leave no transaction open (whatever state the connection is in)."""
        conn = self._conn
        if conn is not None and conn.in_transaction:
            try:
                conn.execute("ROLLBACK")
            except sqlite3.Error:
                # the connection is unusable: drop it, the next job reconnects
                self._conn = None
                with contextlib.suppress(sqlite3.Error):
                    conn.close()

    def _connection(self) -> sqlite3.Connection:
        if self._conn is None:
            self._conn = self._connect()
        return self._conn

    def _run_alone(self, job: _Job) -> Any:
        try:
            return job.fn(self._connection())
        except (sqlite3.Error, OSError) as e:
            raise self._error("opening the database", e) from e
        finally:
            self._rollback()

    def _run_group(self, group: list[_Job]) -> None:
        while group:
            group = self._run_transaction(group)

    def _run_transaction(self, group: list[_Job]) -> list[_Job]:
        """Run *group* in one transaction, one savepoint per job; finish the jobs run.

        Returns the jobs left to run when SQLite dropped the whole transaction.
        """
        try:
            conn = self._connection()
            conn.execute("BEGIN IMMEDIATE")
        except (sqlite3.Error, OSError) as e:
            self._rollback()
            err = self._error("starting a transaction", e)
            for job in group:
                job.finish(outcome.Error(err))
            return []
        results: list[outcome.Outcome[Any]] = []
        for i, job in enumerate(group):
            savepoint = f"j{i}"
            try:
                conn.execute(f"SAVEPOINT {savepoint}")
                value = job.fn(conn)
            except BaseException as e:
                error = self._error("a write", e) if isinstance(e, sqlite3.Error | OSError) else e
                lost: BaseException | None = None
                if not conn.in_transaction:
                    lost = error  # SQLite rolled it all back (disk full, I/O error...)
                else:
                    try:
                        conn.execute(f"ROLLBACK TO {savepoint}")
                        conn.execute(f"RELEASE {savepoint}")
                    except sqlite3.Error as e2:
                        lost = self._error("rolling back a write", e2)
                results.append(outcome.Error(error))
                if lost is not None:
                    # the jobs run so far are lost with the transaction
                    self._rollback()
                    for done, res in zip(group, results[:-1]):
                        done.finish(outcome.Error(lost) if isinstance(res, outcome.Value) else res)
                    job.finish(results[-1])
                    return group[i + 1 :]
            else:
                results.append(outcome.Value(value))
                try:
                    conn.execute(f"RELEASE {savepoint}")
                except sqlite3.Error as e:
                    results[-1] = outcome.Error(self._error("a write", e))
                    self._rollback()
                    err = self._error("the transaction", e)
                    for done, res in zip(group, results):
                        done.finish(outcome.Error(err) if isinstance(res, outcome.Value) else res)
                    return group[i + 1 :]
        try:
            conn.execute("COMMIT")
        except sqlite3.Error as e:
            self._rollback()
            err = self._error("committing", e)
            results = [outcome.Error(err) if isinstance(res, outcome.Value) else res for res in results]
        else:
            self._commits += 1
        for job, res in zip(group, results):
            job.finish(res)
        return []

    def _shutdown(self) -> None:
        """Writer thread, last: close the connection, give up the owner locks."""
        self._rollback()
        conn, self._conn = self._conn, None
        if conn is not None:
            with contextlib.suppress(sqlite3.Error):
                conn.close()
        locks, self._locks = self._locks, {}
        for owner, fd in locks.items():
            # unlink while still locked: nobody can lock the old file and keep it
            with contextlib.suppress(OSError):
                os.unlink(os.path.join(self._owners_dir, _lock_name(owner)))
            os.close(fd)
        # a job queued by a racing caller after the stop: tell it
        while True:
            try:
                job = self._queue.get_nowait()
            except queue.Empty:
                break
            if isinstance(job, _Job):
                job.finish(outcome.Error(StorageError(f"SQLite storage {self._path!r} is closed")))

    # ----------------------------------------------------- connections, schema

    def _connect(self, *, read: bool = False) -> sqlite3.Connection:
        conn = sqlite3.connect(
            self._path, timeout=_BUSY_TIMEOUT, isolation_level=None, check_same_thread=not read
        )
        try:
            if read:
                conn.execute("PRAGMA query_only = ON")
            else:
                mode = conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
                if str(mode).lower() != "wal":
                    msg = f"SQLite storage {self._path!r}: cannot use WAL mode (journal_mode stays {mode!r})"
                    raise StorageError(msg)
                conn.execute(f"PRAGMA synchronous = {self._synchronous}")
        except BaseException:
            conn.close()
            raise
        return conn

    def _init(self, conn: sqlite3.Connection) -> None:
        os.makedirs(self._owners_dir, exist_ok=True)
        conn.execute("BEGIN IMMEDIATE")
        version = conn.execute("PRAGMA user_version").fetchone()[0]
        if version > _SCHEMA_VERSION:
            msg = (
                f"SQLite storage {self._path!r} has schema version {version}; "
                f"this trio_peeper reads up to {_SCHEMA_VERSION}"
            )
            raise StorageError(msg)
        for statement in _SCHEMA:
            conn.execute(statement)
        if version < _SCHEMA_VERSION:
            conn.execute(f"PRAGMA user_version = {_SCHEMA_VERSION}")
        conn.execute("COMMIT")

    # ------------------------------------------------------------ jobs (writer)

    @staticmethod
    def _token(conn: sqlite3.Connection, key: str) -> int | None:
        row = conn.execute("SELECT token FROM servers WHERE key = ?", (key,)).fetchone()
        return None if row is None else int(row[0])

    def _claim(self, conn: sqlite3.Connection, key: str, owner: str) -> int:
        row = conn.execute("SELECT token, owner FROM servers WHERE key = ?", (key,)).fetchone()
        if row is not None:
            holder = row[1]
            if holder is not None and holder != owner and self._alive(holder):
                raise AlreadyStarted(key, what="key")
        self._hold(owner)
        if row is None:
            token = 1
            conn.execute("INSERT INTO servers (key, vsn, token, owner) VALUES (?, 0, ?, ?)", (key, token, owner))
        else:
            token = int(row[0]) + 1
            conn.execute("UPDATE servers SET token = ?, owner = ? WHERE key = ?", (token, owner, key))
        return token

    def _hold(self, owner: str) -> None:
        """Lock *owner*'s file for as long as this instance is open (if nobody else does)."""
        if owner in self._locks:
            return
        path = os.path.join(self._owners_dir, _lock_name(owner))
        while True:
            fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                # another live instance claims under the same owner id: it keeps the
                # id alive; we try again on our next claim
                os.close(fd)
                return
            except BaseException:
                os.close(fd)
                raise
            if _same_file(fd, path):
                break
            os.close(fd)  # removed or replaced after we opened it: again
        try:
            os.ftruncate(fd, 0)
            os.write(fd, f"{os.getpid()} {owner}\n".encode("utf-8", "surrogatepass"))
        except OSError:
            pass  # diagnostics only
        self._locks[owner] = fd

    def _alive(self, holder: str) -> bool:
        """Whether owner *holder* is alive: its lock file exists and is locked."""
        if holder in self._locks:
            return True
        path = os.path.join(self._owners_dir, _lock_name(holder))
        while True:
            try:
                fd = os.open(path, os.O_RDWR | os.O_CLOEXEC)
            except FileNotFoundError:
                return False
            try:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except BlockingIOError:
                    return True
                if not _same_file(fd, path):
                    continue  # replaced meanwhile: look at the new file
                # the holder died with its lock: remove the file while we hold it
                os.unlink(path)
                return False
            finally:
                os.close(fd)

    def _write(self, conn: sqlite3.Connection, batch: list[Write]) -> list[BaseException | None]:
        results: list[BaseException | None] = []
        for w in batch:
            current = self._token(conn, w.key)
            if current != w.token:
                results.append(Fenced(w.key, w.token, current))
                continue
            if w.replace:
                conn.execute("DELETE FROM parts WHERE key = ?", (w.key,))
            elif w.delete_parts:
                conn.executemany(
                    "DELETE FROM parts WHERE key = ? AND part = ?", [(w.key, name) for name in w.delete_parts]
                )
            if w.set_parts:
                conn.executemany(
                    "INSERT INTO parts (key, part, value) VALUES (?, ?, ?)"
                    " ON CONFLICT (key, part) DO UPDATE SET value = excluded.value",
                    [(w.key, name, value) for name, value in w.set_parts.items()],
                )
            conn.execute("UPDATE servers SET vsn = ? WHERE key = ?", (w.vsn, w.key))
            results.append(None)
        return results

    # ------------------------------------------------------------ reads (worker)

    def _load(self, conn: sqlite3.Connection | None, key: str) -> tuple[sqlite3.Connection, Stored | None]:
        try:
            if conn is None:
                conn = self._connect(read=True)
            conn.execute("BEGIN")
            try:
                row = conn.execute("SELECT vsn, token FROM servers WHERE key = ?", (key,)).fetchone()
                parts = dict(conn.execute("SELECT part, value FROM parts WHERE key = ?", (key,)).fetchall())
            finally:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")  # read only: nothing to commit
        except sqlite3.Error as e:
            if conn is not None:
                conn.close()
            raise self._error(f"loading {key!r}", e) from e
        if row is None or not parts:
            return conn, None
        return conn, Stored(int(row[0] or 0), int(row[1]), {bytes(k): bytes(v) for k, v in parts.items()})
