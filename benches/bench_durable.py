"""Durability benches: durable commits per second and start-up from storage, against raw drivers.

What is measured and why (targets from DESIGN.md, "Durability" and
"Performance targets"):

1. ``sqlite``: acknowledged state changes per second of 1, 10 and 100
   durable servers side by side, under each sync policy: ``"commit"`` (the
   reply leaves after the write is durable), ``"interval"`` (written every
   ``SYNC_EVERY`` = 0.05 s, so a reply is NOT yet durable: the figure is the
   in-memory rate with the background writes competing for the CPU) and
   ``"manual"`` (every call returns ``sync=True``: durable before the reply,
   as ``"commit"``). One task per server calls it in a loop; each call
   changes ONE top-level key of a 10-key dict state to a new 64-character
   string (the record written is 77 bytes). Storage: `tp.storage.SQLite` in
   a temporary directory (WAL, ``synchronous=FULL``). Reference, same run,
   same disk: raw ``sqlite3`` in WAL mode with ``synchronous=FULL``, one
   transaction per write (``BEGIN IMMEDIATE``, an upsert of a 77-byte record,
   ``COMMIT``), sequential. Target: ``"commit"`` with 100 servers ≥ 10 k
   commits/s. Every write changes the stored bytes: SQLite skips writing a
   page whose content did not change, so rewriting the same value would
   measure nothing.
2. ``postgres``: the same on `tp.storage.Postgres`, on a throwaway
   PostgreSQL server started for the bench as the test suite starts it
   (``tests/storage/_pg.py``: ``fsync=on``, default ``synchronous_commit``),
   against raw ``psycopg`` (one autocommit upsert per write, sequential).
   Target: ``"commit"`` with 100 servers ≥ 5 k commits/s. Then start-up from
   storage on PostgreSQL, as in 3, with ``PG_LOAD`` servers (fewer: every
   claim is its own transaction there). If no server can be started, the
   group prints why and is skipped.
3. ``load``: starting durable servers whose state is in storage (SQLite):
   ``LOAD`` = 10 k servers from 100 concurrent tasks calling
   ``start_child`` of one dynamic supervisor (claim + load + ``init`` each),
   the same start from 1 task (``LOAD_SEQ`` servers, one after another), and
   the first boot of 10 k servers into an empty database (claim + the first
   write). References: the same 10 k starts of a plain (preserving,
   non-durable) `GenServer`, and raw ``sqlite3`` reading the 10 k stored
   states one read transaction each. Figures are per server; the notes give
   the total for 10 k. No target in DESIGN.md.

Concurrent variants run for a fixed real time per run (``RUN_SECONDS``,
calibrated at the warm-up), since their speeds span three orders of
magnitude; the figure stays per operation. Each group is an ``async def``
run in its own ``trio.run`` with the real clock, variants interleaved run
by run (see ``_harness``). Nothing is asserted.

A node opens its storage on the first claim; every load variant starts
one server alone before the concurrent ones (see
``tests/storage/test_node_opens_storage_once.py``: concurrent first claims
open the storage several times and the node's close does not stop it).

Usage: ``python benches/bench_durable.py [--quick] [--json PATH] [--runs N] [--only GROUP]``
(groups: sqlite, postgres, load); ``--merge A.json B.json ...`` rebuilds
the table from the samples of earlier runs.
"""

from __future__ import annotations

import importlib.util
import itertools
import math
import os
import sqlite3
import tempfile
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import _harness as h

h.ensure_importable()

import trio  # noqa: E402

import trio_peeper as tp  # noqa: E402
from trio_peeper.storage._codec import encode_record  # noqa: E402

COUNTS = (1, 10, 100)  # concurrent durable servers
POLICIES = ("commit", "interval", "manual")
SYNC_EVERY = 0.05  # seconds, for "interval"
KEYS = [f"k{i}" for i in range(10)]  # top-level keys of each server's state
WIDTH = 64  # characters of each value
LOAD = 10_000  # servers started from storage
LOAD_SEQ = 1_000  # servers started one after another (figure per server)
PG_LOAD = 1_000  # servers started from PostgreSQL storage
STARTERS = 100  # concurrent tasks starting servers
TARGET = {"SQLite": 10_000.0, "PostgreSQL": 5_000.0}  # commit, 100 servers (DESIGN.md)
PG_HELPER = Path(__file__).resolve().parent.parent / "tests" / "storage" / "_pg.py"

INFO: dict[str, Any] = {}  # what a measurement learnt besides its timings (not in --merge)


class Row(h.Row):
    """A row whose rates show in commits per second, to the unit (they span 100/s to 100 k/s)."""

    def cells(self) -> list[str]:
        cells = super().cells()
        if self.unit == h.RATE:
            cells[1] = f"{self.ours:,.0f}/s"
            if self.ref_name is not None and self.ref is not None:
                cells[2] = f"{self.ref_name}: {self.ref:,.0f}/s"
        return cells


def value(n: int) -> str:
    return f"{n:0{WIDTH}d}"


RECORD = len(encode_record(value(0)))  # bytes of one written part


def initial() -> dict[str, str]:
    return {k: value(0) for k in KEYS}


# ------------------------------------------------------------------ servers


class Bumper(tp.DurableServer):
    """A call changes one key of the state to a new value (policy from the start options)."""

    async def handle_call(self, k: str, caller: object, state: dict[str, str]) -> tp.Reply:
        state[k] = value(int(state[k]) + 1)
        return tp.Reply(None, state)


class ManualBumper(Bumper, sync="manual"):
    """The same, durable on request: every call returns ``sync=True``."""

    async def handle_call(self, k: str, caller: object, state: dict[str, str]) -> tp.Reply:
        state[k] = value(int(state[k]) + 1)
        return tp.Reply(None, state, sync=True)


class Plain(tp.GenServer):
    """The load reference: the same state in a plain preserving server, no storage."""

    async def init(self, state: dict[str, str]) -> dict[str, str]:
        return state


def spec(policy: str, key: str) -> tp.ChildSpec:
    if policy == "manual":
        return tp.child(ManualBumper, key=key, initial_state=initial())
    return tp.child(Bumper, key=key, initial_state=initial(), sync=policy, sync_every=SYNC_EVERY)


def run_seconds(rec: h.Recorder) -> float:
    return 0.05 if rec.cfg.quick else 0.25


def timed_for(seconds: float, step: int, run_ops: Callable[[int], Any]) -> h.Variant:
    """A variant doing, each run, as many operations as take about *seconds* (a multiple of *step*).

    ``await run_ops(ops)`` performs *ops* operations and returns their cost
    (ns). The warm-up run (the first) does ``4 * step`` operations, at least
    20, and calibrates the count; the cost returned is scaled to the
    harness's *n*.
    """
    count = 0

    async def run(n: int) -> int:
        nonlocal count
        if not count:
            ops = max(4 * step, math.ceil(20 / step) * step)
            per_op = await run_ops(ops) / ops
            count = max(2 * step, math.ceil(seconds * 1e9 / per_op / step) * step)
            return int(per_op * n)
        return int(await run_ops(count) * n / count)

    return run


def callers(refs: list[tp.ServerRef], drain: float) -> Callable[[int], Any]:
    """``ops`` calls spread over one task per server, each calling its own server in a loop."""
    cycles = [itertools.cycle(KEYS) for _ in refs]

    async def one(ref: tp.ServerRef, keys: itertools.cycle[str], calls: int) -> None:
        call = ref.call
        for k in itertools.islice(keys, calls):
            await call(k)

    async def run_ops(ops: int) -> int:
        per = ops // len(refs)
        t0 = h.now_ns()
        async with trio.open_nursery() as nursery:
            for ref, keys in zip(refs, cycles):
                nursery.start_soon(one, ref, keys, per)
        cost = h.now_ns() - t0
        if drain:
            # not timed: let the interval writes of this run land before the next variant
            await trio.sleep(drain)
        return cost

    return run_ops


# --------------------------------------------------------- raw references


def raw_sqlite(path: str) -> Callable[[int], Any]:
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA journal_mode = WAL")
    conn.execute("PRAGMA synchronous = FULL")
    conn.execute(
        "CREATE TABLE parts (key TEXT NOT NULL, part BLOB NOT NULL, value BLOB NOT NULL,"
        " PRIMARY KEY (key, part)) WITHOUT ROWID"
    )
    parts = [k.encode() for k in KEYS]
    counter = itertools.count(1)

    async def run_ops(ops: int) -> int:
        execute = conn.execute
        t0 = h.now_ns()
        for _ in range(ops):
            n = next(counter)
            execute("BEGIN IMMEDIATE")
            execute(
                "INSERT INTO parts (key, part, value) VALUES (?, ?, ?)"
                " ON CONFLICT (key, part) DO UPDATE SET value = excluded.value",
                ("raw", parts[n % len(parts)], encode_record(value(n))),
            )
            execute("COMMIT")
        cost = h.now_ns() - t0
        await trio.lowlevel.checkpoint()
        return cost

    return run_ops


def raw_postgres(dsn: str, schema: str) -> Callable[[int], Any]:
    import psycopg  # noqa: PLC0415

    conn = psycopg.connect(dsn, autocommit=True)
    conn.execute(f"CREATE SCHEMA {schema}")
    conn.execute(
        f"CREATE TABLE {schema}.parts (key TEXT NOT NULL, part BYTEA NOT NULL, value BYTEA NOT NULL,"
        " PRIMARY KEY (key, part))"
    )
    parts = [k.encode() for k in KEYS]
    counter = itertools.count(1)
    query = (
        f"INSERT INTO {schema}.parts (key, part, value) VALUES (%s, %s, %s)"
        " ON CONFLICT (key, part) DO UPDATE SET value = EXCLUDED.value"
    )

    async def run_ops(ops: int) -> int:
        execute = conn.execute
        t0 = h.now_ns()
        for _ in range(ops):
            n = next(counter)
            execute(query, ("raw", parts[n % len(parts)], encode_record(value(n))))  # one transaction
        cost = h.now_ns() - t0
        await trio.lowlevel.checkpoint()
        return cost

    return run_ops


# ---------------------------------------------------------- 1, 2. commits


def variant_name(policy: str, count: int) -> str:
    return f"{policy}, {count} server{'s' if count > 1 else ''}"


async def measure_commits(rec: h.Recorder, group: str, storage: tp.storage.Storage, raw: Callable[[int], Any]) -> None:
    run = uuid.uuid4().hex[:8]
    async with tp.open_node(storage=storage), tp.open_dynamic_supervisor() as dsup:
        variants: dict[str, h.Variant] = {}
        for policy in POLICIES:
            for count in COUNTS:
                refs = [await dsup.start_child(spec(policy, f"{run}/{policy}/{count}/{i}")) for i in range(count)]
                drain = 3 * SYNC_EVERY if policy == "interval" else 0.0
                variants[variant_name(policy, count)] = timed_for(run_seconds(rec), count, callers(refs, drain))
        variants["raw"] = timed_for(run_seconds(rec), 1, raw)
        await rec.measure(group, variants, 1000, runs=min(rec.cfg.runs, 9), warmup=1000)


def rows_commits(m: h.Medians, backend: str, driver: str) -> list[h.Row]:
    raw = h.rate(m("raw"))
    rows = []
    for policy in POLICIES:
        for count in COUNTS:
            note = ""
            if policy == "commit" and count == 1:
                note = f"each call changes one key to a new {RECORD}-byte record; durable before the reply"
            elif policy == "interval" and count == 1:
                note = f"replies are not durable yet: changes are written every {SYNC_EVERY:g} s"
            elif policy == "manual" and count == 1:
                note = "every call returns sync=True: durable before the reply"
            target = h.at_least(TARGET[backend], h.RATE) if policy == "commit" and count == 100 else None
            rows.append(
                Row(
                    f"{backend}, sync={policy!r}, {count:>3} server{'s' if count > 1 else ' '}",
                    h.rate(m(variant_name(policy, count))),
                    h.RATE,
                    f"raw {driver}, 1 tx/write",
                    raw,
                    target,
                    note=note,
                )
            )
    return rows


async def measure_sqlite(rec: h.Recorder) -> None:
    with tempfile.TemporaryDirectory(prefix="trio_peeper_bench_") as tmp:
        storage = tp.storage.SQLite(os.path.join(tmp, "durable.db"))
        await measure_commits(rec, "sqlite", storage, raw_sqlite(os.path.join(tmp, "raw.db")))


def rows_sqlite(m: h.Medians) -> list[h.Row]:
    return rows_commits(m, "SQLite", "sqlite3 (WAL, FULL)")


# ---------------------------------------------------------------- 3. load


async def start_many(dsup: tp.Supervisor, make: Callable[[int], tp.ChildSpec], count: int, starters: int) -> int:
    """Start ``make(i)`` for i < *count* from *starters* tasks; the time taken (ns)."""

    async def starter(first: int) -> None:
        for i in range(first, count, starters):
            await dsup.start_child(make(i))

    t0 = h.now_ns()
    async with trio.open_nursery() as nursery:
        for s in range(min(starters, count)):
            nursery.start_soon(starter, s)
    return h.now_ns() - t0


def durable_spec(prefix: str) -> Callable[[int], tp.ChildSpec]:
    return lambda i: tp.child(Bumper, key=f"{prefix}/{i}", initial_state=initial())


async def boot(make_storage: Callable[[], tp.storage.Storage], prefix: str, count: int, starters: int) -> int:
    """Open a node, start *count* durable servers (timed), close everything (not timed)."""
    async with tp.open_node(storage=make_storage()), tp.open_dynamic_supervisor() as dsup:
        await dsup.start_child(tp.child(Bumper, key=f"{prefix}/warm", initial_state=initial()))  # opens the storage
        return await start_many(dsup, durable_spec(prefix), count, starters)


def warm_up_with(first: Callable[[], Any] | None, variant: h.Variant) -> h.Variant:
    """*variant*, except that its first call (the harness's warm-up) runs *first* instead, if given."""
    done = False

    async def run(n: int) -> int:
        nonlocal done
        if not done:
            done = True
            if first is not None:
                await first()
            return 0
        return await variant(n)

    return run


def load_variants(make_storage: Callable[[], tp.storage.Storage], count: int, seq: int) -> dict[str, h.Variant]:
    """Starts from storage; the first call of the first variant writes the states (the first boot)."""
    prefix = f"load-{uuid.uuid4().hex[:8]}"

    async def load_concurrent(n: int) -> int:
        return int(await boot(make_storage, prefix, count, STARTERS) * n / count)

    async def load_sequential(n: int) -> int:
        return int(await boot(make_storage, prefix, seq, 1) * n / seq)

    async def populate() -> None:
        await boot(make_storage, prefix, count, STARTERS)

    return {
        "load, 100 starters": warm_up_with(populate, load_concurrent),
        "load, 1 starter": warm_up_with(None, load_sequential),
    }


async def measure_load(rec: h.Recorder) -> None:
    count = rec.cfg.iters(LOAD, 1_000)
    seq = rec.cfg.iters(LOAD_SEQ, 200)
    with tempfile.TemporaryDirectory(prefix="trio_peeper_bench_") as tmp:
        path = os.path.join(tmp, "load.db")
        variants = load_variants(lambda: tp.storage.SQLite(path), count, seq)
        fresh = itertools.count()

        async def first_boot(n: int) -> int:
            # a new database each time: claim + first write of every server
            db = os.path.join(tmp, f"fresh{next(fresh)}.db")
            cost = await boot(lambda: tp.storage.SQLite(db), "fresh", count, STARTERS)
            return int(cost * n / count)

        async def plain(n: int) -> int:
            async with tp.open_dynamic_supervisor() as dsup:
                cost = await start_many(dsup, lambda i: tp.child(Plain, initial()), count, STARTERS)
            return int(cost * n / count)

        async def raw_read(n: int) -> int:
            conn = sqlite3.connect(path, isolation_level=None)
            keys = [k for (k,) in conn.execute("SELECT key FROM servers")][:count]
            execute = conn.execute
            t0 = h.now_ns()
            for key in keys:
                execute("BEGIN")
                execute("SELECT vsn, token FROM servers WHERE key = ?", (key,)).fetchone()
                dict(execute("SELECT part, value FROM parts WHERE key = ?", (key,)).fetchall())
                execute("ROLLBACK")
            cost = h.now_ns() - t0
            conn.close()
            return int(cost * n / len(keys))

        variants = {  # the load variants first: their warm-up writes what the others read
            **variants,
            "first boot, 100 starters": warm_up_with(None, first_boot),
            "GenServer start, 100 starters": warm_up_with(None, plain),
            "raw sqlite3 read": raw_read,
        }
        await rec.measure("load", variants, 1000, runs=min(rec.cfg.runs, 3), warmup=1)
    INFO["load count"], INFO["load seq"] = count, seq


def total(per_op: float, count: int, measured: int | None = None) -> str:
    """The time for *count* servers at *per_op* (extrapolated unless *measured* with that many)."""
    extrapolated = "" if measured == count else " at this rate"
    return f"{per_op * count / 1e9:.2f} s for {count // 1000}k servers{extrapolated}"


def rows_load(m: h.Medians) -> list[h.Row]:
    conc, seq, first = m("load, 100 starters"), m("load, 1 starter"), m("first boot, 100 starters")
    return [
        h.Row(
            "SQLite: start from storage, 100 starters",
            conc,
            h.TIME,
            "GenServer, no storage",
            m("GenServer start, 100 starters"),
            note=f"per server; {total(conc, LOAD, INFO.get('load count'))}",
        ),
        h.Row("  same", conc, h.TIME, "raw sqlite3 read", m("raw sqlite3 read")),
        h.Row(
            "SQLite: start from storage, 1 starter",
            seq,
            h.TIME,
            "100 starters",
            conc,
            note=f"one start_child after another; {total(seq, LOAD)}",
        ),
        h.Row(
            "SQLite: first boot, 100 starters",
            first,
            h.TIME,
            "start from storage",
            conc,
            note=f"claim + first write; {total(first, LOAD, INFO.get('load count'))}",
        ),
    ]


# ------------------------------------------------------------ 2. postgres


def pg_server() -> tuple[Any, str | None]:
    """A started throwaway PostgreSQL server (tests/storage/_pg.py), or None and why not."""
    if not PG_HELPER.exists():
        return None, f"{PG_HELPER} not found"
    try:
        spec = importlib.util.spec_from_file_location("_bench_pg", PG_HELPER)
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        server = module.PostgresServer()
    except BaseException as e:  # pytest.fail raises an OutcomeException (a BaseException)
        if isinstance(e, KeyboardInterrupt):
            raise
        return None, f"{type(e).__name__}: {str(e).strip()[:500]}"
    try:
        server.start()
    except BaseException as e:
        server.stop()
        if isinstance(e, KeyboardInterrupt):
            raise
        return None, f"{type(e).__name__}: {str(e).strip()[:500]}"
    return server, None


async def measure_postgres(rec: h.Recorder) -> None:
    server, why = pg_server()
    if server is None:
        print(f"NOTE: postgres group skipped: cannot start a PostgreSQL server: {why}", flush=True)
        rec.params["postgres"] = {"n": 0, "runs": 0, "warmup": 0, "skipped": why}
        return
    try:
        schema = f"bench_{uuid.uuid4().hex[:8]}"
        storage = tp.storage.Postgres(server.dsn, schema=schema)
        await measure_commits(rec, "postgres", storage, raw_postgres(server.dsn, f"{schema}_raw"))

        count, seq = rec.cfg.iters(PG_LOAD, 200), rec.cfg.iters(PG_LOAD // 5, 50)
        variants = load_variants(lambda: tp.storage.Postgres(server.dsn, schema=schema), count, seq)
        await rec.measure("postgres", variants, 1000, runs=min(rec.cfg.runs, 3), warmup=1)
        INFO["pg load count"], INFO["pg load seq"] = count, seq
    finally:
        server.stop()


def rows_postgres(m: h.Medians) -> list[h.Row]:
    try:
        m("raw")
    except KeyError:
        return []  # skipped (the reason was printed)
    rows = rows_commits(m, "PostgreSQL", "psycopg")
    conc, seq = m("load, 100 starters"), m("load, 1 starter")
    rows += [
        h.Row(
            "PostgreSQL: start from storage, 100 starters",
            conc,
            h.TIME,
            "1 starter",
            seq,
            note=f"per server; {total(conc, LOAD)}",
        ),
    ]
    return rows


GROUPS: dict[str, h.Group] = {
    "sqlite": h.Group(measure_sqlite, rows_sqlite),
    "postgres": h.Group(measure_postgres, rows_postgres),
    "load": h.Group(measure_load, rows_load),
}


if __name__ == "__main__":
    h.main("bench_durable", __doc__, GROUPS, trio.run)
