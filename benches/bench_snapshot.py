"""Snapshotted objects: what they cost per callback in a preserving server's state.

A preserving server's state is transactional. Exact dicts, lists and sets are
tracked containers: a callback costs O(what it changed). Snapshotted objects
(mutable dataclasses, ``@tp.snapshotted`` classes, subclasses of dict, list and
set such as ``Counter`` and ``defaultdict``, ``deque``, ``bytearray``,
``array.array``; see ``_fastcore._objects``) are saved (shallow) when each
callback begins and compared with that copy at its commit: O(their size) per
callback, whether they changed or not. This bench measures that cost.

Every server has the same root, ``{"n": counters, "x": extra}``, and every
call makes one small change: ``v = counters[k] + 1; counters[k] = v``, k
cycling over the N keys, the reply the small int v. The shapes:

- (a) ``counters`` a plain dict of N ints, no extra: tracked, O(changes); the
  reference;
- (b) (a) plus one mutable dataclass of 10 int fields (``x``), never changed;
- (c) ``counters`` a ``collections.Counter`` of N keys instead of the dict
  (snapshotted, and the one changed);
- (d) (a) plus a ``deque`` of N ints, never changed;
- (e) (a) plus a dict of 100 small dataclass instances (3 fields each), never
  changed.

Each shape runs at N = 10, 1k and 100k keys (one group per N: ``n10``,
``n1k``, ``n100k``), as a preserving server and as the same server with
``preserve=False``; the ten servers of a group live side by side, are built in
``init`` (outside every clock) and are interleaved run by run (see
``_harness``). Rows: each shape against (a) preserving at the same N (what the
snapshotted objects add), and against its own ``preserve=False`` twin (what
preservation costs in all). No combination is skipped: the slowest, a 100k-key
Counter, takes 50 to 70 ms per call, so its runs make a single call each.

The shapes cost from ~20 µs to ~100 ms per call, so a run cannot make the same
number of calls for all: before measuring, each variant is timed on a few calls
and given ``reps`` calls per run (recorded in the JSON ``params``) so that its
run lasts about ``TARGET_MS`` (at least one call); the figure is per call.

Usage: ``python benches/bench_snapshot.py [--quick] [--json PATH] [--runs N] [--only GROUP]``
(groups: n10, n1k, n100k); ``--merge A.json B.json ...`` rebuilds the table
from the samples of earlier runs. Run under ``TRIO_PEEPER_FASTCORE=cython``
and ``=python`` for both journals (``run_all.py`` does).
"""

from __future__ import annotations

import collections
import dataclasses
import itertools
import math
from collections.abc import Iterator
from typing import Any

import _harness as h

h.ensure_importable()

import trio  # noqa: E402

import _fastcore  # noqa: E402
import trio_peeper as tp  # noqa: E402

SIZES = (10, 1_000, 100_000)
SHAPES = ("a", "b", "c", "d", "e")
DESCRIPTION = {
    "a": "(a) dict of N ints",
    "b": "(b) dict + 1 dataclass of 10 fields",
    "c": "(c) Counter of N keys",
    "d": "(d) dict + deque of N ints",
    "e": "(e) dict + 100 dataclasses of 3 fields",
}
SMALL_OBJECTS = 100  # dataclass instances of shape (e)
TARGET_MS = {False: 20.0, True: 5.0}  # per variant per run: full, --quick
CALIBRATION_NS = 5_000_000  # time a variant on at least this long (or MAX_CALIBRATION calls)
MAX_CALIBRATION = 200
STATE_TREE = getattr(_fastcore.Journal, "__module__", "?")  # which cow twin runs


def label(n: int) -> str:
    return {10: "10", 1_000: "1k", 100_000: "100k"}.get(n, str(n))


def group_name(n: int) -> str:
    return f"n{label(n)}"


# ------------------------------------------------------------------ servers


@dataclasses.dataclass
class Ten:
    """A mutable dataclass of 10 fields: snapshotted."""

    f0: int = 0
    f1: int = 1
    f2: int = 2
    f3: int = 3
    f4: int = 4
    f5: int = 5
    f6: int = 6
    f7: int = 7
    f8: int = 8
    f9: int = 9


@dataclasses.dataclass
class Item:
    """A small mutable dataclass: snapshotted."""

    qty: int
    name: str
    price: float


def build(shape: str, n: int) -> dict[str, Any]:
    counters: dict[int, int] = {i: i for i in range(n)}
    extra: object = None
    if shape == "b":
        extra = Ten()
    elif shape == "c":
        counters = collections.Counter(counters)
    elif shape == "d":
        extra = collections.deque(range(n))
    elif shape == "e":
        extra = {i: Item(i, f"item{i}", i / 2) for i in range(SMALL_OBJECTS)}
    elif shape != "a":
        raise ValueError(shape)
    return {"n": counters, "x": extra}


class Shaped(tp.GenServer):
    """State ``{"n": counters, "x": extra}`` of one shape; a call increments one counter."""

    async def init(self, shape: str, n: int) -> dict[str, Any]:
        return build(shape, n)  # built here: once per server, outside every clock

    async def handle_call(self, k: int, caller: object, state: dict[str, Any]) -> tp.Reply:
        counters = state["n"]
        v = counters[k] + 1
        counters[k] = v
        return tp.Reply(v, state)


async def start(nursery: trio.Nursery, shape: str, n: int, preserve: bool) -> tp.ServerRef:
    # no start timeout: adopting a 100k-key state takes a while, more under the twin
    ref: tp.ServerRef = await tp.start_server(
        nursery, Shaped, shape, n, preserve=preserve, timeout=math.inf
    )
    return ref


# ---------------------------------------------------------------- measuring


class Caller:
    """A variant: *n* × ``reps`` calls, reported as the cost of *n* (the figure stays per call)."""

    def __init__(self, ref: tp.ServerRef, n_keys: int) -> None:
        self.ref = ref
        self.keys: Iterator[int] = itertools.cycle(range(n_keys))  # every key has its turn
        self.reps = 1

    async def calls(self, count: int) -> int:
        t0 = h.now_ns()
        for k in itertools.islice(self.keys, count):
            await self.ref.call(k)
        return h.now_ns() - t0

    async def calibrate(self, target_ns: float) -> None:
        """Set ``reps`` so that a run lasts about *target_ns* (at least one call)."""
        await self.calls(1)  # the first call after the start pays for cold caches
        spent, count = 0, 0
        while spent < CALIBRATION_NS and count < MAX_CALIBRATION:
            spent += await self.calls(1)
            count += 1
        self.reps = max(1, round(target_ns / (spent / count)))

    async def __call__(self, n: int) -> int:
        return await self.calls(n * self.reps) // self.reps


def variant(shape: str, preserve: bool) -> str:
    return f"{shape} {'preserving' if preserve else 'preserve=False'}"


def measure_size(n_keys: int) -> Any:
    async def measure(rec: h.Recorder) -> None:
        group = group_name(n_keys)
        async with trio.open_nursery() as nursery:
            callers: dict[str, Caller] = {}
            for shape in SHAPES:
                for preserve in (True, False):
                    ref = await start(nursery, shape, n_keys, preserve)
                    callers[variant(shape, preserve)] = Caller(ref, n_keys)
            target = TARGET_MS[rec.cfg.quick] * 1e6
            for c in callers.values():
                await c.calibrate(target)
            await rec.measure(group, dict(callers), 1, warmup=1)
            rec.params[group]["reps"] = {name: c.reps for name, c in callers.items()}
            nursery.cancel_scope.cancel()

    return measure


def extra_items(shape: str, n_keys: int) -> int:
    """How many values the snapshotted objects of *shape* hold (saved and compared per call)."""
    return {"a": 0, "b": 10, "c": n_keys, "d": n_keys, "e": SMALL_OBJECTS * 3}[shape]


def rows_size(n_keys: int) -> Any:
    def rows(m: h.Medians) -> list[h.Row]:
        base = m(variant("a", True))
        out = []
        for shape in SHAPES:
            ours = m(variant(shape, True))
            what = f"call, {DESCRIPTION[shape]}, N={label(n_keys)}"
            plain = m(variant(shape, False))
            if shape == "a":
                note = f"state tree from {STATE_TREE}" if n_keys == SIZES[0] else ""
                out.append(h.Row(what, ours, h.TIME, "preserve=False", plain, note=note))
                continue
            added = ours - base
            items = extra_items(shape, n_keys)
            note = (
                f"+{h.fmt(added, h.TIME)} per call over (a): "
                f"{added / items:.0f} ns per snapshotted value"
            )
            if shape == "e":
                note += f", {h.fmt(added / SMALL_OBJECTS, h.TIME)} per instance"
            out.append(h.Row(what, ours, h.TIME, "(a) preserving", base, note=note))
            out.append(h.Row("  same", ours, h.TIME, "preserve=False", plain))
        return out

    return rows


GROUPS: dict[str, h.Group] = {
    group_name(n): h.Group(measure_size(n), rows_size(n)) for n in SIZES
}


if __name__ == "__main__":
    h.main("bench_snapshot", __doc__, GROUPS, trio.run)
