"""Micro benchmark of ``_fastcore._cow``: the compiled twin against the Python twin and builtins.

What is measured, and why:

* ``begin()`` + ``commit()`` with nothing recorded: every message a preserving
  server handles opens and closes a transaction, whatever the callback does.
* ``TDict.__setitem__`` on an existing key inside a transaction (the usual
  "update a counter" change: an undo record plus a changed path) against a
  plain dict ``__setitem__``, the floor.
* ``TList.append`` inside a transaction (the list is saved whole once, then each
  append marks its path) against ``list.append``.
* a transaction of one change rolled back (``begin``, one ``__setitem__``,
  ``rollback``: the crash path) next to the same transaction committed, so the
  difference is the rollback's replay.
* ``detach`` of a scalar: every reply of a preserving server goes through it.

Figures are ns per op (or per transaction), loop overhead included (one Python
``for`` step, shown on its own row), the median of several runs; variants are
interleaved within each run so drift hits them alike. The cyclic GC is off
while a variant runs (as in `timeit`): a long transaction keeps one undo
record per write alive, and collections of those would be charged to
whichever variant triggered them. The last column is the
compiled twin's figure over the Python twin's (or over the builtin, for the
builtin rows). Run ``python benches/bench_cow.py`` (``--quick`` for a smoke
run). Nothing here asserts a time.
"""

from __future__ import annotations

import argparse
import gc
import platform
import statistics
import sys
import time
from collections.abc import Callable
from types import ModuleType

from _fastcore import _cow, _cow_py

Bench = Callable[[int], float]
TWINS: dict[str, ModuleType] = {"cython": _cow, "python": _cow_py}


def loop_only(n: int) -> float:
    t0 = time.perf_counter_ns()
    for _ in range(n):
        pass
    return (time.perf_counter_ns() - t0) / n


def begin_commit(mod: ModuleType) -> Bench:
    def run(n: int) -> float:
        j = mod.Journal("bench")
        j.adopt_root({"count": 0})
        begin, commit = j.begin, j.commit
        t0 = time.perf_counter_ns()
        for _ in range(n):
            begin()
            commit()
        return (time.perf_counter_ns() - t0) / n

    return run


def tdict_setitem(mod: ModuleType) -> Bench:
    def run(n: int) -> float:
        j = mod.Journal("bench")
        state = j.adopt_root({"count": 0, "other": "x"})
        j.begin()
        t0 = time.perf_counter_ns()
        for i in range(n):
            state["count"] = i
        elapsed = time.perf_counter_ns() - t0
        j.commit()
        return elapsed / n

    return run


def dict_setitem(n: int) -> float:
    state = {"count": 0, "other": "x"}
    t0 = time.perf_counter_ns()
    for i in range(n):
        state["count"] = i
    return (time.perf_counter_ns() - t0) / n


def tlist_append(mod: ModuleType) -> Bench:
    def run(n: int) -> float:
        j = mod.Journal("bench")
        items = j.adopt_root({"items": []})["items"]
        j.begin()
        append = items.append
        t0 = time.perf_counter_ns()
        for i in range(n):
            append(i)
        elapsed = time.perf_counter_ns() - t0
        j.commit()
        return elapsed / n

    return run


def list_append(n: int) -> float:
    items: list[int] = []
    append = items.append
    t0 = time.perf_counter_ns()
    for i in range(n):
        append(i)
    return (time.perf_counter_ns() - t0) / n


def one_change(mod: ModuleType, *, undo: bool) -> Bench:
    def run(n: int) -> float:
        j = mod.Journal("bench")
        state = j.adopt_root({"count": 0, "other": "x"})
        begin, end = j.begin, (j.rollback if undo else j.commit)
        t0 = time.perf_counter_ns()
        for i in range(n):
            begin()
            state["count"] = i
            end()
        return (time.perf_counter_ns() - t0) / n

    return run


def detach_scalar(mod: ModuleType) -> Bench:
    def run(n: int) -> float:
        detach = mod.detach
        t0 = time.perf_counter_ns()
        for i in range(n):
            detach(i)
        return (time.perf_counter_ns() - t0) / n

    return run


def measure(benches: dict[str, Bench], n: int, runs: int) -> dict[str, float]:
    samples: dict[str, list[float]] = {name: [] for name in benches}
    names = list(benches)
    for r in range(runs):
        order = names if r % 2 == 0 else names[::-1]  # interleaved, alternating order
        for name in order:
            gc.collect()
            gc.disable()
            try:
                samples[name].append(benches[name](n))
            finally:
                gc.enable()
    return {name: statistics.median(values) for name, values in samples.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a smoke run: few ops, few runs")
    args = parser.parse_args()
    n, runs = (20_000, 3) if args.quick else (300_000, 9)

    benches: dict[str, Bench] = {"loop": loop_only, "dict": dict_setitem, "list": list_append}
    for twin, mod in TWINS.items():
        benches[f"bc_{twin}"] = begin_commit(mod)
        benches[f"set_{twin}"] = tdict_setitem(mod)
        benches[f"app_{twin}"] = tlist_append(mod)
        benches[f"commit1_{twin}"] = one_change(mod, undo=False)
        benches[f"rollback1_{twin}"] = one_change(mod, undo=True)
        benches[f"detach_{twin}"] = detach_scalar(mod)
    ns = measure(benches, n, runs)

    rows = [
        ("begin() + commit(), nothing recorded", "bc"),
        ("TDict[k] = v, existing key, in a transaction", "set"),
        ("TList.append(v), in a transaction", "app"),
        ("begin + TDict[k] = v + commit", "commit1"),
        ("begin + TDict[k] = v + rollback", "rollback1"),
        ("detach(scalar)", "detach"),
    ]
    print(f"python {platform.python_version()} on {platform.machine()}; {n} ops x {runs} runs (median)")
    print("ns per op, loop included; ratio = cython / python (builtin rows: cython / builtin)")
    head = f"{'op':<46} {'cython':>8} {'python':>8} {'ratio':>6}"
    print(head)
    print("-" * len(head))
    print(f"{'for-loop step alone':<46} {ns['loop']:>8.1f}")
    for label, key in rows:
        c, p = ns[f"{key}_cython"], ns[f"{key}_python"]
        print(f"{label:<46} {c:>8.1f} {p:>8.1f} {c / p:>6.2f}")
    for label, key, builtin in (
        ("  vs plain dict[k] = v", "set", "dict"),
        ("  vs list.append(v)", "app", "list"),
    ):
        print(f"{label:<46} {ns[f'{key}_cython']:>8.1f} {ns[builtin]:>8.1f} {ns[f'{key}_cython'] / ns[builtin]:>6.2f}")
    replay_c = ns["rollback1_cython"] - ns["commit1_cython"]
    replay_p = ns["rollback1_python"] - ns["commit1_python"]
    print(f"{'rollback of 1 change (rollback row - commit row)':<46} {replay_c:>8.1f} {replay_p:>8.1f}")
    sys.stdout.flush()


if __name__ == "__main__":
    main()
