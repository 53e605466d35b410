"""`Postgres`: durable state in PostgreSQL through psycopg 3.

Layout, in the storage's schema (created at `Postgres.open` if missing)::

    servers (key TEXT PRIMARY KEY, vsn INTEGER, token BIGINT NOT NULL, owner TEXT)
    parts   (key TEXT, part BYTEA, value BYTEA, PRIMARY KEY (key, part))

Ownership: a claim takes a *session-level* advisory lock on the 64-bit xxhash
of the key (seeded with the schema name, so two schemas in one database never
collide) on a connection dedicated to the owner and kept open while the
storage is open. The lock lives exactly as long as that connection: when the
owning process dies, PostgreSQL drops its session and the key can be claimed
again at once, with no lease to wait out. The fencing token (``servers.token``)
is bumped in the claim's transaction and checked in the transaction of every
write, so a stale owner can never overwrite a newer one.

Threads and cancellation: psycopg's *sync* API runs in
`trio.to_thread.run_sync` worker threads (``abandon_on_cancel=False``), one
thread at a time per connection. While a query runs, a watchdog task waits for
the caller's cancellation; when it comes, the watchdog calls
``Connection.cancel_safe()`` (in its own thread) until the worker is done, so
the query stops on the server, its transaction is rolled back, and the
connection is left idle and usable. A call that was interrupted raises
`trio.Cancelled` and did nothing; a call whose work had already committed
returns its result (the caller sees the cancellation at its next checkpoint).
"""

from __future__ import annotations

import math
import threading
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, TypeVar

import trio
import xxhash

from .._errors import AlreadyStarted, StorageError
from .._util import final
from ._base import Fenced, Storage, Stored, Write

if TYPE_CHECKING:
    import psycopg

T = TypeVar("T")

_APPLICATION_NAME = "trio_peeper"
_CONNECT_TIMEOUT = 10  # seconds, unless the dsn says otherwise
_CANCEL_TIMEOUT = 5.0  # seconds one cancel request may take
_CANCEL_RETRY = 0.05  # real seconds between cancel requests while the worker runs


def _psycopg() -> Any:
    """The psycopg module, imported on first use so `trio_peeper` imports without it."""
    try:
        import psycopg  # noqa: PLC0415
    except ImportError as e:
        msg = "the Postgres storage needs psycopg 3: pip install 'psycopg[binary]>=3.2'"
        raise StorageError(msg) from e
    return psycopg


def _quote_ident(name: str) -> str:
    """*name* as a quoted SQL identifier."""
    return '"' + name.replace('"', '""') + '"'


def _signed64(n: int) -> int:
    """An unsigned 64-bit int as the signed BIGINT PostgreSQL's advisory locks take."""
    return n - (1 << 64) if n >= (1 << 63) else n


class _Interrupted(Exception):
    """The caller was cancelled before the next statement of a call was sent."""


class _Call:
    """The shared state of one call: its worker thread, the watchdog and the Trio side.

    ``mutex`` orders the worker's "a statement is in flight" flag against the
    watchdog's cancel requests: a cancel request is sent only while a statement
    is in flight, and a statement is never started once a cancel was requested.
    """

    __slots__ = ("cancel_requested", "finished", "in_query", "mutex")

    def __init__(self) -> None:
        self.mutex = threading.Lock()
        self.finished = threading.Event()
        self.cancel_requested = False
        self.in_query = False

    def execute(self, cur: psycopg.Cursor[Any], query: str, params: Sequence[object] = ()) -> psycopg.Cursor[Any]:
        """Run one statement on *cur*, unless the caller was cancelled (worker thread)."""
        with self.mutex:
            if self.cancel_requested:
                raise _Interrupted
            self.in_query = True
        try:
            return cur.execute(query, params)  # type: ignore[arg-type]
        finally:
            with self.mutex:
                self.in_query = False

    def cancel_until_finished(self, c: _Conn) -> None:
        """Cancel the worker's statements until it is done (watchdog thread).

        A cancel request that reaches an idle backend is ignored by PostgreSQL,
        so one sent just before a statement arrived is repeated until the
        worker finishes.
        """
        while True:
            with self.mutex:
                self.cancel_requested = True
                conn = c.conn
                if self.in_query and conn is not None and not conn.closed:
                    try:
                        conn.cancel_safe(timeout=_CANCEL_TIMEOUT)
                    except Exception:  # noqa: BLE001 - the next round retries; the worker ends anyway
                        pass
            if self.finished.wait(_CANCEL_RETRY):
                return


class _Conn:
    """One psycopg connection, used by one worker thread at a time (``lock``)."""

    __slots__ = ("conn", "lock", "owner")

    def __init__(self, owner: str | None = None) -> None:
        self.owner = owner  # the owner whose claims this connection's session holds, if any
        self.conn: psycopg.Connection[Any] | None = None
        self.lock = trio.Lock()

    def usable(self) -> bool:
        conn = self.conn
        return conn is not None and not conn.closed and not conn.broken


@final
class Postgres(Storage):
    """Keeps durable state in PostgreSQL (psycopg 3, sync API in worker threads).

    Args:
      dsn: A libpq connection string or URI, as `psycopg.connect` takes it.
      schema: The schema holding the storage's tables (created if missing).

    Every claim holds one session-level advisory lock on a connection dedicated
    to its owner, so a crashed process's keys are free again at once. Writes of
    one batch commit in one transaction (group commit); a write whose fencing
    token is stale gets `Fenced` and changes nothing. Every method is a
    checkpoint; a cancelled call stops its query on the server (see the module
    docstring) and raises `trio.Cancelled` having done nothing.

    .. versionadded:: 0.1
    """

    def __init__(self, dsn: str, *, schema: str = "trio_peeper") -> None:
        if not isinstance(dsn, str):
            msg = f"dsn must be a str (a libpq connection string or URI), got {dsn!r}"
            raise TypeError(msg)
        if not isinstance(schema, str) or not schema:
            msg = f"schema must be a non-empty str, got {schema!r}"
            raise TypeError(msg)
        self._dsn, self._schema = dsn, schema
        self._seed = xxhash.xxh64_intdigest(schema.encode("utf-8", "surrogatepass"))
        s = _quote_ident(schema)
        self._sql_servers, self._sql_parts = f"{s}.servers", f"{s}.parts"
        self._open = 0
        self._writer = _Conn()
        self._reader = _Conn()
        self._owners: dict[str, _Conn] = {}
        # {key: (owner, token)}: the claims of this storage object; token None while claiming
        self._held: dict[str, tuple[str, int | None]] = {}
        self._watchdogs: trio.CapacityLimiter | None = None

    def __repr__(self) -> str:
        state = "open" if self._open else "closed"
        return f"<Postgres storage schema={self._schema!r} {state} claims={len(self._held)}>"

    # -- plumbing ------------------------------------------------------------------

    def _lock_id(self, key: str) -> int:
        return _signed64(xxhash.xxh64_intdigest(key.encode("utf-8", "surrogatepass"), seed=self._seed))

    def _check_open(self) -> None:
        if not self._open:
            msg = f"Postgres storage (schema {self._schema!r}) is not open"
            raise StorageError(msg)

    def _connect(self) -> psycopg.Connection[Any]:
        """A new autocommit connection (worker thread)."""
        psycopg = _psycopg()
        kwargs: dict[str, object] = {"autocommit": True}
        try:
            params = psycopg.conninfo.conninfo_to_dict(self._dsn)
        except psycopg.Error as e:
            msg = f"Postgres storage: invalid dsn: {e}"
            raise StorageError(msg) from None
        if "application_name" not in params:
            kwargs["application_name"] = _APPLICATION_NAME
        if "connect_timeout" not in params:
            kwargs["connect_timeout"] = _CONNECT_TIMEOUT
        try:
            return psycopg.Connection.connect(self._dsn, **kwargs)  # type: ignore[no-any-return]
        except psycopg.Error as e:
            msg = f"Postgres storage: cannot connect: {e}".rstrip()
            raise StorageError(msg) from e

    def _call(self, c: _Conn, call: _Call, fn: Callable[..., T], args: tuple[object, ...]) -> T:
        """Run *fn* on *c*'s connection (worker thread); the connection is left idle."""
        try:
            if not c.usable():
                old, c.conn = c.conn, None
                if old is not None:
                    old.close()
                c.conn = self._connect()
            return fn(c.conn, call, *args)
        finally:
            call.finished.set()
            conn = c.conn
            if conn is not None and not conn.closed:
                from psycopg.pq import TransactionStatus  # noqa: PLC0415

                if conn.info.transaction_status != TransactionStatus.IDLE:
                    try:
                        conn.rollback()
                    except Exception:  # noqa: BLE001 - a broken connection is replaced on next use
                        conn.close()

    async def _watchdog(self, c: _Conn, call: _Call) -> None:
        """Wait for the caller's cancellation; then cancel the worker's queries until it ends."""
        try:
            await trio.sleep_forever()
        except trio.Cancelled:
            # Cancelled by the caller's scope, or by _run once the worker is done
            if call.finished.is_set():
                return
            with trio.CancelScope(shield=True):
                await trio.to_thread.run_sync(
                    call.cancel_until_finished, c, limiter=self._watchdogs, abandon_on_cancel=False
                )
            # returning (not raising) keeps Cancelled out of the nursery's exception
            # group; the caller gets its own Cancelled from _run

    async def _run(self, c: _Conn, what: str, fn: Callable[..., T], *args: object) -> T:
        """``fn(conn, call, *args)`` in a worker thread on *c*, cancellable (see the module docstring)."""
        psycopg = _psycopg()
        async with c.lock:
            if c.owner is not None and c.conn is not None and not c.usable():
                # the owner's session died (server restart, network): its advisory locks went with it
                for key in [k for k, (o, t) in self._held.items() if o == c.owner and t is not None]:
                    del self._held[key]
            call = _Call()
            outcome: BaseException | None = None
            result: T | None = None
            async with trio.open_nursery() as nursery:
                nursery.start_soon(self._watchdog, c, call)
                try:
                    result = await trio.to_thread.run_sync(self._call, c, call, fn, args, abandon_on_cancel=False)
                except BaseException as e:  # noqa: BLE001 - re-raised below, outside the nursery
                    outcome = e
                finally:
                    call.finished.set()
                    nursery.cancel_scope.cancel()
        if outcome is None:
            return result  # type: ignore[return-value]
        if call.cancel_requested and isinstance(outcome, (_Interrupted, psycopg.errors.QueryCanceled)):
            await trio.lowlevel.checkpoint()  # raises Cancelled: the call did nothing
        if isinstance(outcome, _Interrupted):  # pragma: no cover - only when cancelled
            msg = f"Postgres storage: {what} was interrupted"
            raise StorageError(msg)
        if isinstance(outcome, psycopg.Error):
            msg = f"Postgres storage: {what} failed: {outcome}".rstrip()
            raise StorageError(msg) from outcome
        raise outcome

    # -- Storage -------------------------------------------------------------------

    async def open(self) -> None:
        if self._open:
            await trio.lowlevel.checkpoint()
            self._open += 1
            return
        self._watchdogs = trio.CapacityLimiter(math.inf)
        await self._run(self._writer, "open", self._do_open)
        self._open += 1

    def _do_open(self, conn: psycopg.Connection[Any], call: _Call) -> None:
        cur = conn.cursor()
        row = call.execute(cur, "SELECT to_regclass(%s), to_regclass(%s)", (self._sql_servers, self._sql_parts)).fetchone()
        if row is not None and row[0] is not None and row[1] is not None:
            return
        s = _quote_ident(self._schema)
        with conn.transaction():
            # serialize concurrent first opens (CREATE ... IF NOT EXISTS races on the catalogs)
            call.execute(cur, "SELECT pg_advisory_xact_lock(%s)", (_signed64(self._seed ^ 0x7470_7363_6865_6D61),))
            call.execute(cur, f"CREATE SCHEMA IF NOT EXISTS {s}")
            call.execute(
                cur,
                f"CREATE TABLE IF NOT EXISTS {self._sql_servers} ("
                " key TEXT PRIMARY KEY, vsn INTEGER NOT NULL DEFAULT 0, token BIGINT NOT NULL, owner TEXT)",
            )
            call.execute(
                cur,
                f"CREATE TABLE IF NOT EXISTS {self._sql_parts} ("
                " key TEXT NOT NULL, part BYTEA NOT NULL, value BYTEA NOT NULL, PRIMARY KEY (key, part))",
            )

    async def aclose(self) -> None:
        if self._open > 1:
            await trio.lowlevel.checkpoint()
            self._open -= 1
            return
        self._open = 0
        conns = [self._writer, self._reader, *self._owners.values()]
        self._owners = {}
        self._held.clear()
        with trio.CancelScope(shield=True):
            for c in conns:
                async with c.lock:
                    conn, c.conn = c.conn, None
                    if conn is not None:
                        await trio.to_thread.run_sync(conn.close)
        await trio.lowlevel.checkpoint()

    async def claim(self, key: str, owner: str) -> int:
        self._check_open()
        if key in self._held:
            # this process holds it already (advisory locks are re-entrant per session)
            await trio.lowlevel.checkpoint()
            raise AlreadyStarted(key, what="key")
        self._held[key] = (owner, None)
        token: int | None = None
        try:
            c = self._owners.get(owner)
            if c is None:
                c = self._owners[owner] = _Conn(owner)
            token = await self._run(c, f"claim of key {key!r}", self._do_claim, key, owner, self._lock_id(key))
            if token is None:
                raise AlreadyStarted(key, what="key")
            self._held[key] = (owner, token)
            return token
        finally:
            if token is None and self._held.get(key) == (owner, None):
                del self._held[key]

    def _do_claim(self, conn: psycopg.Connection[Any], call: _Call, key: str, owner: str, lock_id: int) -> int | None:
        cur = conn.cursor()
        row = call.execute(cur, "SELECT pg_try_advisory_lock(%s)", (lock_id,)).fetchone()
        if row is None or not row[0]:
            return None
        try:
            with conn.transaction():
                row = call.execute(
                    cur,
                    f"INSERT INTO {self._sql_servers} AS s (key, vsn, token, owner) VALUES (%s, 0, 1, %s)"
                    " ON CONFLICT (key) DO UPDATE SET token = s.token + 1, owner = EXCLUDED.owner"
                    " RETURNING s.token",
                    (key, owner),
                ).fetchone()
        except BaseException:
            if not conn.closed:
                try:
                    conn.execute("SELECT pg_advisory_unlock(%s)", (lock_id,))
                except Exception:  # noqa: BLE001 - a broken session has dropped the lock anyway
                    conn.close()
            raise
        assert row is not None
        return int(row[0])

    async def release(self, key: str, token: int) -> None:
        held = self._held.get(key)
        if not self._open or held is None or held[1] != token:
            await trio.lowlevel.checkpoint()  # a stale token: nothing to release
            return
        c = self._owners[held[0]]
        try:
            await self._run(c, f"release of key {key!r}", self._do_release, key, token, self._lock_id(key))
        except StorageError:
            if c.usable():
                raise
            # the owner's session is gone, and its advisory lock with it: released
        if self._held.get(key) == held:
            del self._held[key]

    def _do_release(self, conn: psycopg.Connection[Any], call: _Call, key: str, token: int, lock_id: int) -> None:
        cur = conn.cursor()
        call.execute(cur, f"UPDATE {self._sql_servers} SET owner = NULL WHERE key = %s AND token = %s", (key, token))
        conn.execute("SELECT pg_advisory_unlock(%s)", (lock_id,))  # never interrupted once begun

    async def load(self, key: str) -> Stored | None:
        self._check_open()
        return await self._run(self._reader, f"load of key {key!r}", self._do_load, key)

    def _do_load(self, conn: psycopg.Connection[Any], call: _Call, key: str) -> Stored | None:
        cur = conn.cursor(binary=True)
        rows = call.execute(
            cur,
            f"SELECT s.vsn, s.token, p.part, p.value FROM {self._sql_servers} s"
            f" LEFT JOIN {self._sql_parts} p ON p.key = s.key WHERE s.key = %s",
            (key,),
        ).fetchall()
        parts = {bytes(part): bytes(value) for _, _, part, value in rows if part is not None}
        if not parts:
            return None
        return Stored(int(rows[0][0]), int(rows[0][1]), parts)

    async def write(self, batch: Sequence[Write]) -> list[BaseException | None]:
        self._check_open()
        if not batch:
            await trio.lowlevel.checkpoint()
            return []
        return await self._run(self._writer, f"write of {len(batch)} change(s)", self._do_write, list(batch))

    def _do_write(self, conn: psycopg.Connection[Any], call: _Call, batch: list[Write]) -> list[BaseException | None]:
        results: list[BaseException | None] = [None] * len(batch)
        # rounds of writes with distinct keys, each key's writes in batch order
        rounds: list[list[int]] = []
        seen: dict[str, int] = {}
        for i, w in enumerate(batch):
            n = seen.get(w.key, 0)
            seen[w.key] = n + 1
            if n == len(rounds):
                rounds.append([])
            rounds[n].append(i)
        cur = conn.cursor()
        with conn.transaction():
            for indexes in rounds:
                self._write_round(cur, call, batch, indexes, results)
        return results

    def _write_round(
        self,
        cur: psycopg.Cursor[Any],
        call: _Call,
        batch: list[Write],
        indexes: list[int],
        results: list[BaseException | None],
    ) -> None:
        """Fence-check and apply writes with distinct keys, a few statements for all of them."""
        writes = [batch[i] for i in indexes]
        rows = call.execute(
            cur,
            f"UPDATE {self._sql_servers} AS s SET vsn = w.vsn"
            " FROM unnest(%s::text[], %s::bigint[], %s::integer[]) AS w(key, token, vsn)"
            " WHERE s.key = w.key AND s.token = w.token RETURNING s.key",
            ([w.key for w in writes], [w.token for w in writes], [w.vsn for w in writes]),
        ).fetchall()
        current_keys = {r[0] for r in rows}
        fenced = [(i, w) for i, w in zip(indexes, writes, strict=True) if w.key not in current_keys]
        if fenced:
            rows = call.execute(
                cur,
                f"SELECT key, token FROM {self._sql_servers} WHERE key = ANY(%s::text[])",
                ([w.key for _, w in fenced],),
            ).fetchall()
            tokens = {r[0]: int(r[1]) for r in rows}
            for i, w in fenced:
                results[i] = Fenced(w.key, w.token, tokens.get(w.key))
        applied = [w for w in writes if w.key in current_keys]
        replaced = [w.key for w in applied if w.replace]
        if replaced:
            call.execute(cur, f"DELETE FROM {self._sql_parts} WHERE key = ANY(%s::text[])", (replaced,))
        del_keys = [w.key for w in applied if not w.replace for _ in w.delete_parts]
        if del_keys:
            del_parts = [p for w in applied if not w.replace for p in w.delete_parts]
            call.execute(
                cur,
                f"DELETE FROM {self._sql_parts} AS p USING unnest(%s::text[], %b::bytea[]) AS d(key, part)"
                " WHERE p.key = d.key AND p.part = d.part",
                (del_keys, del_parts),
            )
        set_keys = [w.key for w in applied for _ in w.set_parts]
        if set_keys:
            names = [bytes(p) for w in applied for p in w.set_parts]
            values = [bytes(v) for w in applied for v in w.set_parts.values()]
            call.execute(
                cur,
                f"INSERT INTO {self._sql_parts} (key, part, value)"
                " SELECT * FROM unnest(%s::text[], %b::bytea[], %b::bytea[])"
                " ON CONFLICT (key, part) DO UPDATE SET value = EXCLUDED.value",
                (set_keys, names, values),
            )

    async def delete(self, key: str, token: int) -> None:
        self._check_open()
        await self._run(self._writer, f"delete of key {key!r}", self._do_delete, key, token)

    def _do_delete(self, conn: psycopg.Connection[Any], call: _Call, key: str, token: int) -> None:
        cur = conn.cursor()
        with conn.transaction():
            call.execute(cur, f"UPDATE {self._sql_servers} SET vsn = 0 WHERE key = %s AND token = %s", (key, token))
            if cur.rowcount == 0:
                row = call.execute(cur, f"SELECT token FROM {self._sql_servers} WHERE key = %s", (key,)).fetchone()
                raise Fenced(key, token, None if row is None else int(row[0]))
            call.execute(cur, f"DELETE FROM {self._sql_parts} WHERE key = %s", (key,))
