"""Micro benchmark of ``_fastcore`` TableCore: the compiled core against its twin and a plain dict.

What is measured, and why:

* set ``lookup`` (a hit) against a bound ``dict.get``: the floor for a keyed
  read, and what a server would use without tables (target: at most 1.5x);
* set ``insert`` (replacing the value of a present key) against a bound
  ``dict.__setitem__`` (target: at most 2x);
* set ``delete`` of present keys against ``dict.pop(key, None)``;
* ordered_set against set: ``lookup``, ``insert`` of a present key, and
  ``insert`` of fresh keys in random order (bisect + list insert: what the
  sorted index costs);
* each compiled figure against the pure-Python twin's.

Figures are ns per op, loop overhead included (one Python ``for`` step over a
list of keys, shown on its own row), the median of several runs; variants are
interleaved within each run so drift hits them alike. Lookups and replacing
inserts cycle over 1024 present int keys; deletes touch each of *n* keys
once; fresh inserts fill tables of 10 000 keys in random order (an
ordered_set insert moves half the sorted list on average: O(n) per insert,
so the figure grows with the table size). Run ``python benches/bench_table.py`` (``--quick`` for a
smoke run). Nothing here asserts a time.
"""

from __future__ import annotations

import argparse

import _harness
import platform
import random
import statistics
import sys
import time
from collections.abc import Callable

from _fastcore import _table, _table_py

Bench = Callable[[int], float]
WIDTH = 1024  # present keys for lookups and replacing inserts
FRESH = 10_000  # keys per table in the fresh-insert runs


def _cycling(n: int) -> list[int]:
    return [i % WIDTH for i in range(n)]


def loop_only(n: int) -> float:
    keys = _cycling(n)
    t0 = time.perf_counter_ns()
    for _k in keys:
        pass
    return (time.perf_counter_ns() - t0) / n


def _filled(core: type, kind: str) -> object:
    t = core(kind)
    t.insert_many([(k, k) for k in range(WIDTH)])
    return t


def table_lookup(core: type, kind: str) -> Bench:
    def run(n: int) -> float:
        keys = _cycling(n)
        lookup = _filled(core, kind).lookup  # type: ignore[attr-defined]
        t0 = time.perf_counter_ns()
        for k in keys:
            lookup(k)
        return (time.perf_counter_ns() - t0) / n

    return run


def dict_get(n: int) -> float:
    keys = _cycling(n)
    get = {k: k for k in range(WIDTH)}.get
    t0 = time.perf_counter_ns()
    for k in keys:
        get(k)
    return (time.perf_counter_ns() - t0) / n


def table_insert(core: type, kind: str) -> Bench:
    def run(n: int) -> float:
        keys = _cycling(n)
        insert = _filled(core, kind).insert  # type: ignore[attr-defined]
        t0 = time.perf_counter_ns()
        for k in keys:
            insert(k, k)
        return (time.perf_counter_ns() - t0) / n

    return run


def dict_setitem(n: int) -> float:
    keys = _cycling(n)
    setitem = {k: k for k in range(WIDTH)}.__setitem__
    t0 = time.perf_counter_ns()
    for k in keys:
        setitem(k, k)
    return (time.perf_counter_ns() - t0) / n


def table_insert_fresh(core: type, kind: str) -> Bench:
    def run(n: int) -> float:
        rounds = max(1, n // FRESH)
        rng = random.Random(n)
        batches = [(core(kind).insert, rng.sample(range(FRESH), FRESH)) for _ in range(rounds)]
        t0 = time.perf_counter_ns()
        for insert, keys in batches:
            for k in keys:
                insert(k, k)
        return (time.perf_counter_ns() - t0) / (rounds * FRESH)

    return run


def table_delete(core: type, kind: str) -> Bench:
    def run(n: int) -> float:
        keys = list(range(n))
        t = core(kind)
        t.insert_many([(k, k) for k in keys])
        delete = t.delete
        t0 = time.perf_counter_ns()
        for k in keys:
            delete(k)
        return (time.perf_counter_ns() - t0) / n

    return run


def dict_pop(n: int) -> float:
    keys = list(range(n))
    pop = {k: k for k in keys}.pop
    t0 = time.perf_counter_ns()
    for k in keys:
        pop(k, None)
    return (time.perf_counter_ns() - t0) / n


def measure(benches: dict[str, Bench], n: int, runs: int) -> dict[str, float]:
    return _harness.measure_sync(benches, n, runs)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a smoke run: few ops, few runs")
    args = parser.parse_args()
    n, runs = (20_000, 3) if args.quick else (200_000, 9)

    C, P = _table.TableCore, _table_py.TableCore
    ns = measure(
        {
            "loop": loop_only,
            "get": dict_get,
            "setitem": dict_setitem,
            "pop": dict_pop,
            "lookup_c": table_lookup(C, "set"),
            "lookup_py": table_lookup(P, "set"),
            "lookup_oc": table_lookup(C, "ordered_set"),
            "insert_c": table_insert(C, "set"),
            "insert_py": table_insert(P, "set"),
            "insert_oc": table_insert(C, "ordered_set"),
            "delete_c": table_delete(C, "set"),
            "delete_py": table_delete(P, "set"),
            "fresh_c": table_insert_fresh(C, "set"),
            "fresh_oc": table_insert_fresh(C, "ordered_set"),
            "fresh_opy": table_insert_fresh(P, "ordered_set"),
        },
        n,
        runs,
    )
    rows = [
        ("for-loop step alone", "loop", None, None, None),
        ("set lookup [cython]", "lookup_c", "bound dict.get", "get", 1.5),
        ("set lookup [python twin]", "lookup_py", "bound dict.get", "get", None),
        ("set lookup [cython]", "lookup_c", "set lookup [python twin]", "lookup_py", None),
        ("set insert, key present [cython]", "insert_c", "bound dict.__setitem__", "setitem", 2.0),
        ("set insert, key present [python twin]", "insert_py", "bound dict.__setitem__", "setitem", None),
        ("set insert, key present [cython]", "insert_c", "set insert [python twin]", "insert_py", None),
        ("set delete, key present [cython]", "delete_c", "bound dict.pop(k, None)", "pop", None),
        ("set delete, key present [python twin]", "delete_py", "bound dict.pop(k, None)", "pop", None),
        ("ordered_set lookup [cython]", "lookup_oc", "set lookup [cython]", "lookup_c", None),
        ("ordered_set insert, present [cython]", "insert_oc", "set insert [cython]", "insert_c", None),
        ("ordered_set insert, fresh [cython]", "fresh_oc", "set insert fresh [cython]", "fresh_c", None),
        ("ordered_set insert, fresh [cython]", "fresh_oc", "ordered_set fresh [python]", "fresh_opy", None),
    ]
    print(f"python {platform.python_version()} on {platform.machine()}; {n} ops x {runs} runs (median)")
    print(f"lookups and replacing inserts cycle over {WIDTH} int keys; fresh inserts fill tables of {FRESH} keys")
    head = f"{'op':<40} {'ns/op':>7}  {'reference':<28} {'ns/op':>7} {'ratio':>6} {'target':>7}"
    print(head)
    print("-" * len(head))
    for label, key, ref_label, ref_key, target in rows:
        if ref_key is None or ref_label is None:
            print(f"{label:<40} {ns[key]:>7.1f}")
            continue
        ratio = ns[key] / ns[ref_key]
        goal = "" if target is None else f"<= {target:g}" + (" ok" if ratio <= target else " MISS")
        print(f"{label:<40} {ns[key]:>7.1f}  {ref_label:<28} {ns[ref_key]:>7.1f} {ratio:>6.2f} {goal:>7}")
    sys.stdout.flush()


if __name__ == "__main__":
    main()
