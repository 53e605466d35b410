"""Preservation benches: what keeping state across crashes costs, against same-run references.

What is measured and why (targets from DESIGN.md, "The keeper and transactional
state" and "Performance targets"):

1. ``state``: a call that changes ONE key of a dict state of N keys (N = 10,
   1k, 100k, 1M; ``v = state[k] + 1; state[k] = v``, k cycling over all the
   keys, the reply is the small int v), for a preserving server (the
   default: a tracked state tree, each callback a transaction) and for the
   same server with ``preserve=False`` (a plain dict, nothing kept). The
   state is built in ``init``, once per server, outside the clock; all eight
   servers live side by side and are interleaved run by run. Targets:
   preserving at 1M keys ≤ 1.10 × preserving at 10 keys (commits cost
   O(changes), never O(state)); preserving ≤ 1.10 × ``preserve=False`` at
   every N.
2. ``naive``: the baseline a tracked tree replaces: a ``preserve=False``
   server that keeps ``copy.deepcopy(state)`` after every message (what
   Peeper does: the state goes to a keeper process after each callback), at
   N = 10, 1k and 100k. Not at 1M: one copy takes about 0.5 s, per message.
   Preserving servers of the same sizes run in the same group as its
   reference. Its figures are orders of magnitude above ours, so each
   variant makes ``reps`` × the group's few calls (100 × for the preserving
   ones, 100 / 10 / 1 × for the copying ones as N grows; the figure stays
   per call), and the group runs at most 11 times.
3. ``restart``: crash → serving again with a 1M-key state against a 10-key
   state, as bench_server's restart group does it (a cast that raises, then
   a call; the time to the reply minus a normal call's), for a standalone
   server and for a one_for_one supervised child. The crashing cast first
   changes one key, so the rollback has something to undo. Target: ≤ 100 µs
   at any size. A standalone server may restart only 3 times in 5 s: bench_server
   starts a fresh one every 3 crashes; a 1M-key state takes about a second
   to build, so here the bench clears the standalone server's restart window
   (``ref._intensity``) every 3 crashes instead, outside the clock.
4. ``table``: `tp.Table` operations as user code writes them, on tables
   created in the bench task (so owned by it): ``t.lookup(k)`` and
   ``t.insert(k, v)`` on a public set table, ``t.insert`` on a protected
   one by its owner (an owner-checking wrapper), ``t.delete(k)`` of present
   keys; against a bound ``dict.get`` / ``dict.__setitem__`` /
   ``dict.pop(k, None)``. Keys cycle over 1024 present ints (deletes take
   each of n fresh keys once); every figure includes one step of a Python
   ``for`` loop (its own row). Targets: lookup ≤ 1.5 ×, insert ≤ 2 ×.
5. ``memory``: a 1M-key int→int preserving state against the same plain
   dict kept by a ``preserve=False`` server (tracemalloc, retained bytes
   after the start, server included, shown per key), the peak while a
   preserving server starts (``init``'s plain dict and its tracked copy
   coexist), and a 100k-key state of small dicts (where tracking shows: each
   inner dict is tracked). Measured in run_all's first round only.
6. ``gc``: one full collection (``gc.collect()``) with a 1M-key preserving
   server in the heap, against the same server with ``preserve=False`` and
   a 10-key preserving one (each variant starts its own server, outside the
   clock): a cost the process pays whenever the collector runs a full pass.

Each group is an ``async def`` run in its own ``trio.run`` with the real
clock; variants of a group share that run and are interleaved run by run
(see ``_harness``). No figure here is asserted on.

Usage: ``python benches/bench_preserve.py [--quick] [--json PATH] [--runs N] [--only GROUP]``
(groups: state, naive, restart, table, memory, gc); ``--merge A.json B.json ...``
rebuilds the table from the samples of earlier runs.
"""

from __future__ import annotations

import copy
import gc
import itertools
import math
import tracemalloc
from collections.abc import Iterator

import _harness as h

h.ensure_importable()

import trio  # noqa: E402
import trio.testing  # noqa: E402

import _fastcore  # noqa: E402
import trio_peeper as tp  # noqa: E402

SIZES = (10, 1_000, 100_000, 1_000_000)
NAIVE_SIZES = (10, 1_000, 100_000)  # a deepcopy of 1M keys per message: ~0.5 s each
NAIVE_REPS = {10: 100, 1_000: 10, 100_000: 1}  # calls per n, so no variant runs too short
PRESERVING_REPS = 100  # the preserving servers these are compared with, in the same group
BIG = 1_000_000
SMALL = 10
NESTED = 100_000  # keys of the nested memory state
WIDTH = 1024  # present keys of the table lookups and replacing inserts
STATE_TREE = getattr(_fastcore.Journal, "__module__", "?")  # which cow twin runs


def label(n: int) -> str:
    return {10: "10", 1_000: "1k", 100_000: "100k", 1_000_000: "1M"}.get(n, str(n))


# ------------------------------------------------------------------ servers


def build(n: int, nested: bool = False) -> dict[int, object]:
    if nested:
        return {i: {"v": i} for i in range(n)}
    return {i: i for i in range(n)}


class Counters(tp.GenServer):
    """A dict of *n* int counters; a call increments one and replies its new value."""

    async def init(self, n: int, nested: bool = False) -> dict[int, object]:
        return build(n, nested)  # built here: once per server, outside every clock

    async def handle_call(self, k: int, caller: object, state: dict[int, int]) -> tp.Reply:
        v = state[k] + 1
        state[k] = v
        return tp.Reply(v, state)


class DeepcopyKeeper(Counters, preserve=False):
    """The naive keeper: a full copy of the state after every message (Peeper's way)."""

    kept: object = None

    async def handle_call(self, k: int, caller: object, state: dict[int, int]) -> tp.Reply:
        v = state[k] + 1
        state[k] = v
        self.kept = copy.deepcopy(state)
        return tp.Reply(v, state)


class Crashy(Counters):
    """A cast changes one key, then crashes (the restart bench)."""

    async def handle_cast(self, k: int, state: dict[int, int]) -> tp.NoReply:
        state[k] = -1
        raise RuntimeError("boom")


def cycling(n: int) -> Iterator[int]:
    """The keys of an n-key state, round and round (kept across runs: every key has its turn)."""
    return itertools.cycle(range(n))


async def start(
    nursery: trio.Nursery, cls: type[tp.GenServer], n: int, **options: object
) -> tp.ServerRef:
    # no start timeout: a 1M-key init (build + adoption) takes about a second, more traced
    ref: tp.ServerRef = await tp.start_server(nursery, cls, n, timeout=math.inf, **options)
    return ref


# ------------------------------------------------------------------ 1. state


def caller(ref: tp.ServerRef, n_keys: int) -> h.Variant:
    keys = cycling(n_keys)

    async def run(n: int) -> int:
        t0 = h.now_ns()
        for k in itertools.islice(keys, n):
            await ref.call(k)
        return h.now_ns() - t0

    return run


async def measure_state(rec: h.Recorder) -> None:
    async with trio.open_nursery() as nursery:
        variants: dict[str, h.Variant] = {}
        for n_keys in SIZES:
            ref = await start(nursery, Counters, n_keys)
            ref_np = await start(nursery, Counters, n_keys, preserve=False)
            variants[f"preserving {label(n_keys)}"] = caller(ref, n_keys)
            variants[f"preserve=False {label(n_keys)}"] = caller(ref_np, n_keys)
        await rec.measure("state", variants, rec.cfg.iters(2000, 300))
        nursery.cancel_scope.cancel()


def rows_state(m: h.Medians) -> list[h.Row]:
    small = m(f"preserving {label(SMALL)}")
    rows = []
    for n_keys in SIZES:
        ours = m(f"preserving {label(n_keys)}")
        rows.append(
            h.Row(
                f"call, 1 key changed, {label(n_keys)}-key state",
                ours,
                h.TIME,
                "preserve=False",
                m(f"preserve=False {label(n_keys)}"),
                h.ratio_at_most(1.1),
                note=f"state tree from {STATE_TREE}" if n_keys == SMALL else "",
            )
        )
        if n_keys != SMALL:
            rows.append(
                h.Row(
                    "  same",
                    ours,
                    h.TIME,
                    f"{label(SMALL)}-key state",
                    small,
                    h.ratio_at_most(1.1) if n_keys == BIG else None,
                )
            )
    return rows


# ------------------------------------------------------------------ 2. naive


def scaled_caller(ref: tp.ServerRef, n_keys: int, reps: int) -> h.Variant:
    """*n* × *reps* calls, reported as the cost of *n* (the figure stays per call)."""
    keys = cycling(n_keys)

    async def run(n: int) -> int:
        t0 = h.now_ns()
        for k in itertools.islice(keys, n * reps):
            await ref.call(k)
        return (h.now_ns() - t0) // reps

    return run


async def measure_naive(rec: h.Recorder) -> None:
    async with trio.open_nursery() as nursery:
        variants: dict[str, h.Variant] = {}
        for n_keys in NAIVE_SIZES:
            naive = await start(nursery, DeepcopyKeeper, n_keys, preserve=False)
            ref = await start(nursery, Counters, n_keys)
            variants[f"deepcopy keeper {label(n_keys)}"] = scaled_caller(
                naive, n_keys, NAIVE_REPS[n_keys]
            )
            variants[f"preserving {label(n_keys)}"] = scaled_caller(ref, n_keys, PRESERVING_REPS)
        await rec.measure(
            "naive", variants, rec.cfg.iters(10, 3), runs=min(rec.cfg.runs, 11), warmup=1
        )
        nursery.cancel_scope.cancel()


def rows_naive(m: h.Medians) -> list[h.Row]:
    rows = []
    for n_keys in NAIVE_SIZES:
        note = ""
        if n_keys == NAIVE_SIZES[-1]:
            note = "not measured at 1M keys: one deepcopy of 1M keys takes ~0.5 s, per message"
        rows.append(
            h.Row(
                f"deepcopy keeper (Peeper-like), {label(n_keys)} keys",
                m(f"deepcopy keeper {label(n_keys)}"),
                h.TIME,
                "preserving",
                m(f"preserving {label(n_keys)}"),
                note=note,
            )
        )
    return rows


# ---------------------------------------------------------------- 3. restart


def crash_variant(ref: tp.ServerRef, n_keys: int, standalone: bool) -> h.Variant:
    keys = cycling(n_keys)
    crashes = [0]

    async def run(n: int) -> int:
        total = 0
        for k in itertools.islice(keys, n):
            if standalone:
                if crashes[0] == 3:
                    # a fresh restart window, as bench_server's fresh server every 3 crashes
                    ref._intensity = None  # type: ignore[attr-defined]
                    crashes[0] = 0
                crashes[0] += 1
            t0 = h.now_ns()
            ref.cast_nowait(k)
            await ref.call(k)
            total += h.now_ns() - t0
        return total

    return run


async def measure_restart(rec: h.Recorder) -> None:
    async with trio.open_nursery() as nursery:
        alone = {n: await start(nursery, Crashy, n) for n in (SMALL, BIG)}
        async with tp.open_supervisor(
            tp.child(Crashy, SMALL, id=SMALL),
            tp.child(Crashy, BIG, id=BIG),
            max_restarts=1_000_000,
            max_seconds=1.0,
        ) as sup:
            supervised = {info.id: info.ref for info in sup.which_children()}
            variants: dict[str, h.Variant] = {}
            for kind, refs in (("standalone", alone), ("supervised", supervised)):
                for n_keys in (SMALL, BIG):
                    ref = refs[n_keys]
                    variants[f"{kind} {label(n_keys)} crash+call"] = crash_variant(
                        ref, n_keys, kind == "standalone"
                    )
                    variants[f"{kind} {label(n_keys)} call"] = caller(ref, n_keys)
            await rec.measure("restart", variants, rec.cfg.iters(200, 30))
        nursery.cancel_scope.cancel()


def rows_restart(m: h.Medians) -> list[h.Row]:
    rows = []
    for kind in ("standalone", "supervised"):

        def latency(n_keys: int, kind: str = kind) -> float:
            return m(f"{kind} {label(n_keys)} crash+call") - m(f"{kind} {label(n_keys)} call")

        small, big = latency(SMALL), latency(BIG)
        rows.append(
            h.Row(
                f"crash → serving, {kind}, {label(BIG)}-key state",
                big,
                h.TIME,
                f"{label(SMALL)}-key state",
                small,
                h.at_most(100_000, h.TIME, "≤ 100 µs"),
            )
        )
        rows.append(
            h.Row(
                f"crash → serving, {kind}, {label(SMALL)}-key state",
                small,
                h.TIME,
                "normal call",
                m(f"{kind} {label(SMALL)} call"),
                h.at_most(100_000, h.TIME, "≤ 100 µs"),
            )
        )
    return rows


# ------------------------------------------------------------------ 4. table


async def measure_table(rec: h.Recorder) -> None:
    public = tp.Table("set", access="public")  # owned by this task
    protected = tp.Table("set", access="protected")
    doomed = tp.Table("set", access="public")  # filled before each timed delete run
    d = {k: k for k in range(WIDTH)}
    public.insert_many([(k, k) for k in range(WIDTH)])
    protected.insert_many([(k, k) for k in range(WIDTH)])

    def keys_for(n: int) -> list[int]:
        return [i % WIDTH for i in range(n)]

    async def loop_only(n: int) -> int:
        keys = keys_for(n)
        t0 = h.now_ns()
        for _k in keys:
            pass
        return h.now_ns() - t0

    async def dict_get_bound(n: int) -> int:
        keys = keys_for(n)
        get = d.get
        t0 = h.now_ns()
        for k in keys:
            get(k)
        return h.now_ns() - t0

    async def dict_get(n: int) -> int:
        keys = keys_for(n)
        t0 = h.now_ns()
        for k in keys:
            d.get(k)
        return h.now_ns() - t0

    async def t_lookup(n: int) -> int:
        keys = keys_for(n)
        t = public
        t0 = h.now_ns()
        for k in keys:
            t.lookup(k)
        return h.now_ns() - t0

    async def t_lookup_bound(n: int) -> int:
        keys = keys_for(n)
        lookup = public.lookup
        t0 = h.now_ns()
        for k in keys:
            lookup(k)
        return h.now_ns() - t0

    async def dict_set_bound(n: int) -> int:
        keys = keys_for(n)
        setitem = d.__setitem__
        t0 = h.now_ns()
        for k in keys:
            setitem(k, k)
        return h.now_ns() - t0

    async def t_insert(n: int) -> int:
        keys = keys_for(n)
        t = public
        t0 = h.now_ns()
        for k in keys:
            t.insert(k, k)
        return h.now_ns() - t0

    async def t_insert_protected(n: int) -> int:
        keys = keys_for(n)
        t = protected
        t0 = h.now_ns()
        for k in keys:
            t.insert(k, k)
        return h.now_ns() - t0

    async def dict_pop_bound(n: int) -> int:
        keys = list(range(n))
        victim = dict.fromkeys(keys, 0)
        pop = victim.pop
        t0 = h.now_ns()
        for k in keys:
            pop(k, None)
        return h.now_ns() - t0

    async def t_delete(n: int) -> int:
        keys = list(range(n))
        t = doomed
        t.insert_many([(k, 0) for k in keys])
        t0 = h.now_ns()
        for k in keys:
            t.delete(k)
        return h.now_ns() - t0

    await rec.measure(
        "table",
        {
            "loop only": loop_only,
            "bound dict.get": dict_get_bound,
            "d.get(k)": dict_get,
            "t.lookup(k) public": t_lookup,
            "bound t.lookup, public": t_lookup_bound,
            "bound dict.__setitem__": dict_set_bound,
            "t.insert(k, v) public": t_insert,
            "t.insert(k, v) protected, owner": t_insert_protected,
            "bound dict.pop(k, None)": dict_pop_bound,
            "t.delete(k) public": t_delete,
        },
        rec.cfg.iters(100_000, 20_000),
    )
    for t in (public, protected, doomed):
        t.delete_table()


def rows_table(m: h.Medians) -> list[h.Row]:
    get = m("bound dict.get")
    setitem = m("bound dict.__setitem__")
    lookup = m("t.lookup(k) public")
    return [
        h.Row(
            "t.lookup(k), public set", lookup, h.TIME, "bound dict.get", get, h.ratio_at_most(1.5)
        ),
        h.Row("  same", lookup, h.TIME, "d.get(k)", m("d.get(k)")),
        h.Row(
            "bound lookup = t.lookup",
            m("bound t.lookup, public"),
            h.TIME,
            "bound dict.get",
            get,
            h.ratio_at_most(1.5),
        ),
        h.Row(
            "t.insert(k, v), public set",
            m("t.insert(k, v) public"),
            h.TIME,
            "bound dict.__setitem__",
            setitem,
            h.ratio_at_most(2.0),
        ),
        h.Row(
            "t.insert(k, v), protected, by owner",
            m("t.insert(k, v) protected, owner"),
            h.TIME,
            "bound dict.__setitem__",
            setitem,
            h.ratio_at_most(2.0),
        ),
        h.Row(
            "t.delete(k), present keys",
            m("t.delete(k) public"),
            h.TIME,
            "bound dict.pop(k, None)",
            m("bound dict.pop(k, None)"),
        ),
        h.Row("loop step alone (in every figure above)", m("loop only"), h.TIME),
    ]


# ----------------------------------------------------------------- 5. memory


def state_bytes(n_keys: int, preserve: bool, nested: bool, peak: bool) -> h.Variant:
    async def run(n: int) -> int:
        if n == 0:
            return 0  # the warm-up: memory is deterministic, and a 1M-key start is slow traced
        async with trio.open_nursery() as nursery:
            gc.collect()
            tracemalloc.start()
            try:
                before = tracemalloc.get_traced_memory()[0]
                await tp.start_server(
                    nursery, Counters, n_keys, nested, preserve=preserve, timeout=math.inf
                )
                await trio.testing.wait_all_tasks_blocked()
                gc.collect()
                after, top = tracemalloc.get_traced_memory()
            finally:
                tracemalloc.stop()
            nursery.cancel_scope.cancel()
        return ((top if peak else after) - before) * n  # figure: bytes of the whole state

    return run


async def measure_memory(rec: h.Recorder) -> None:
    await rec.measure(
        "memory",
        {
            "1M flat, preserving": state_bytes(BIG, True, False, False),
            "1M flat, preserve=False": state_bytes(BIG, False, False, False),
            "1M flat, preserving, peak at start": state_bytes(BIG, True, False, True),
            "100k nested, preserving": state_bytes(NESTED, True, True, False),
            "100k nested, preserve=False": state_bytes(NESTED, False, True, False),
        },
        1,
        runs=1 if rec.cfg.quick else 2,  # deterministic up to allocator noise, and slow traced
        warmup=0,
    )


def rows_memory(m: h.Medians) -> list[h.Row]:
    pres, plain = m("1M flat, preserving"), m("1M flat, preserve=False")
    peak = m("1M flat, preserving, peak at start")
    npres, nplain = m("100k nested, preserving"), m("100k nested, preserve=False")
    mb = 1e6
    return [
        h.Row(
            "memory per key, 1M-key int→int state, preserving",
            pres / BIG,
            h.BYTES,
            "plain dict",
            plain / BIG,
            note=f"whole state, server included: {pres / mb:.1f} MB vs {plain / mb:.1f} MB",
        ),
        h.Row(
            "  peak while it starts",
            peak / BIG,
            h.BYTES,
            "plain dict",
            plain / BIG,
            note=f"{peak / mb:.1f} MB: init's plain dict and its tracked copy coexist",
        ),
        h.Row(
            "memory per key, 100k keys of {'v': i}, preserving",
            npres / NESTED,
            h.BYTES,
            "plain dicts",
            nplain / NESTED,
            note=f"{npres / mb:.1f} MB vs {nplain / mb:.1f} MB; every inner dict is tracked",
        ),
    ]


# --------------------------------------------------------------------- 6. gc


def collect_with(n_keys: int, preserve: bool) -> h.Variant:
    async def run(n: int) -> int:
        if n == 0:
            return 0  # the warm-up: nothing to warm, and a 1M-key start is slow
        async with trio.open_nursery() as nursery:
            await start(nursery, Counters, n_keys, preserve=preserve)
            gc.collect()
            t0 = h.now_ns()
            for _ in range(n):
                gc.collect()
            cost = h.now_ns() - t0
            nursery.cancel_scope.cancel()
        return cost

    return run


async def measure_gc(rec: h.Recorder) -> None:
    await rec.measure(
        "gc",
        {
            "gc.collect, 1M preserving": collect_with(BIG, True),
            "gc.collect, 1M preserve=False": collect_with(BIG, False),
            "gc.collect, 10 preserving": collect_with(SMALL, True),
        },
        rec.cfg.iters(5, 2),
        runs=min(rec.cfg.runs, 3),  # each run starts three servers, two of 1M keys
        warmup=0,
    )


def rows_gc(m: h.Medians) -> list[h.Row]:
    big = m("gc.collect, 1M preserving")
    return [
        h.Row(
            "full GC pass, 1M-key preserving state",
            big,
            h.TIME,
            "preserve=False",
            m("gc.collect, 1M preserve=False"),
            note="the compiled core untracks a tracked dict of atomic values, as CPython does for a "
            "plain dict (the twin's stay tracked and are walked by every full collection)",
        ),
        h.Row("  same", big, h.TIME, "10-key preserving", m("gc.collect, 10 preserving")),
    ]


GROUPS: dict[str, h.Group] = {
    "state": h.Group(measure_state, rows_state),
    "naive": h.Group(measure_naive, rows_naive),
    "restart": h.Group(measure_restart, rows_restart),
    "table": h.Group(measure_table, rows_table),
    "memory": h.Group(measure_memory, rows_memory),
    "gc": h.Group(measure_gc, rows_gc),
}


if __name__ == "__main__":
    h.main("bench_preserve", __doc__, GROUPS, trio.run)
