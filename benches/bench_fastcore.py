"""Micro benchmark of ``_fastcore``: each compiled core against its twin and a stdlib reference.

What is measured, and why:

* Ring ``push`` + ``pop`` (one message through an empty mailbox: the hot path's
  enqueue/dequeue) against ``collections.deque`` ``append`` + ``popleft``, the
  floor for a FIFO of Python objects.
* TimerWheel ``insert`` + ``cancel`` (a call's timeout set and cleared before it
  fires, as most are) against ``heapq`` push with lazy deletion (the heapq docs'
  pattern: cancel marks the entry dead and drops it from a handle map; dead
  entries stay in the heap until popped, which is why the wheel exists).

Figures are ns per op pair, loop overhead included (one Python ``for`` step,
shown on its own row), the median of several runs; variants are interleaved
within each run so drift hits them alike. Run ``python benches/bench_fastcore.py``
(``--quick`` for a smoke run). Nothing here asserts a time.
"""

from __future__ import annotations

import argparse

import _harness
import heapq
import itertools
import platform
import statistics
import sys
import time
from collections import deque
from collections.abc import Callable

from _fastcore import _ring, _ring_py, _wheel, _wheel_py

Bench = Callable[[int], float]


def loop_only(n: int) -> float:
    t0 = time.perf_counter_ns()
    for _ in range(n):
        pass
    return (time.perf_counter_ns() - t0) / n


def ring_push_pop(ring_class: type) -> Bench:
    def run(n: int) -> float:
        ring = ring_class()
        push, pop = ring.push, ring.pop
        t0 = time.perf_counter_ns()
        for i in range(n):
            push(i)
            pop()
        return (time.perf_counter_ns() - t0) / n

    return run


def deque_append_popleft(n: int) -> float:
    q: deque[int] = deque()
    append, popleft = q.append, q.popleft
    t0 = time.perf_counter_ns()
    for i in range(n):
        append(i)
        popleft()
    return (time.perf_counter_ns() - t0) / n


def wheel_insert_cancel(wheel_class: type, backlog: int) -> Bench:
    def run(n: int) -> float:
        wheel = wheel_class(resolution=0.01, slots=1024, now=0.0)
        for i in range(backlog):  # long timers that stay pending meanwhile
            wheel.insert(1000.0 + i, i)
        insert, cancel = wheel.insert, wheel.cancel
        item = object()
        t0 = time.perf_counter_ns()
        for i in range(n):
            cancel(insert(5.0 + i * 1e-6, item))
        return (time.perf_counter_ns() - t0) / n

    return run


def heapq_push_lazy_delete(backlog: int) -> Bench:
    def run(n: int) -> float:
        heap: list[list[object]] = []
        entries: dict[int, list[object]] = {}  # {handle: [deadline, handle, item]}
        counter = itertools.count(1)
        push = heapq.heappush
        for i in range(backlog):
            h = next(counter)
            entry: list[object] = [1000.0 + i, h, i]
            entries[h] = entry
            push(heap, entry)
        item = object()
        t0 = time.perf_counter_ns()
        for i in range(n):
            h = next(counter)  # insert
            entry = [5.0 + i * 1e-6, h, item]
            entries[h] = entry
            push(heap, entry)
            dead = entries.pop(h, None)  # cancel
            if dead is not None:
                dead[2] = None
        return (time.perf_counter_ns() - t0) / n

    return run


def measure(benches: dict[str, Bench], n: int, runs: int) -> dict[str, float]:
    return _harness.measure_sync(benches, n, runs)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a smoke run: few ops, few runs")
    args = parser.parse_args()
    n, runs = (20_000, 3) if args.quick else (400_000, 9)
    backlog = 1000

    ns = measure(
        {
            "loop": loop_only,
            "ring_c": ring_push_pop(_ring.Ring),
            "ring_py": ring_push_pop(_ring_py.Ring),
            "deque": deque_append_popleft,
            "wheel_c": wheel_insert_cancel(_wheel.TimerWheel, backlog),
            "wheel_py": wheel_insert_cancel(_wheel_py.TimerWheel, backlog),
            "heapq": heapq_push_lazy_delete(backlog),
        },
        n,
        runs,
    )
    rows = [
        ("for-loop step alone", "loop", None, None),
        ("Ring push+pop [cython]", "ring_c", "deque append+popleft", "deque"),
        ("Ring push+pop [python twin]", "ring_py", "deque append+popleft", "deque"),
        ("Ring push+pop [cython]", "ring_c", "Ring push+pop [python twin]", "ring_py"),
        ("TimerWheel insert+cancel [cffi]", "wheel_c", "heapq push+lazy delete", "heapq"),
        ("TimerWheel insert+cancel [python twin]", "wheel_py", "heapq push+lazy delete", "heapq"),
        ("TimerWheel insert+cancel [cffi]", "wheel_c", "TimerWheel [python twin]", "wheel_py"),
    ]
    print(f"python {platform.python_version()} on {platform.machine()}; {n} op pairs x {runs} runs (median)")
    print(f"TimerWheel runs keep {backlog} other entries pending; ns per op pair, loop included")
    head = f"{'op':<40} {'ns/op':>8}  {'reference':<28} {'ns/op':>8} {'ratio':>6}"
    print(head)
    print("-" * len(head))
    for label, key, ref_label, ref_key in rows:
        if ref_key is None:
            print(f"{label:<40} {ns[key]:>8.1f}")
            continue
        ratio = ns[key] / ns[ref_key]
        print(f"{label:<40} {ns[key]:>8.1f}  {ref_label:<28} {ns[ref_key]:>8.1f} {ratio:>6.2f}")
    sys.stdout.flush()


if __name__ == "__main__":
    main()
