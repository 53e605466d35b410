"""`_fastcore` Ring: both twins against a deque model, against each other, and on edge cases.

Every test runs once per twin (the ``ring`` fixture imports the module by name:
a missing extension is an error, never a skip).
"""

from __future__ import annotations

import gc
import importlib
import os
import subprocess
import sys
import weakref
from collections import deque
from types import ModuleType
from typing import Any

import pytest
from _twins import Poison, twin_fixture, twins
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)

TWINS = twins("ring")
ring = twin_fixture("ring")


# ---- model-based: a Ring behaves as a deque (identity of every item) ----


class RingMachine(RuleBasedStateMachine):
    def __init__(self, ring: ModuleType) -> None:
        super().__init__()
        self.module = ring
        self.model: deque[Poison] = deque()
        self.counter = 0

    @initialize(capacity=st.integers(1, 20))
    def create(self, capacity: int) -> None:
        self.ring = self.module.Ring(capacity)

    def fresh(self) -> Poison:
        self.counter += 1
        return Poison(self.counter)

    @rule()
    def push(self) -> None:
        item = self.fresh()
        self.ring.push(item)
        self.model.append(item)

    @rule()
    def push_front(self) -> None:
        item = self.fresh()
        self.ring.push_front(item)
        self.model.appendleft(item)

    @precondition(lambda self: self.model)
    @rule()
    def pop(self) -> None:
        assert self.ring.pop() is self.model.popleft()

    @precondition(lambda self: not self.model)
    @rule()
    def pop_empty(self) -> None:
        with pytest.raises(IndexError, match=r"^pop from an empty ring$"):
            self.ring.pop()
        with pytest.raises(IndexError, match=r"^peek at an empty ring$"):
            self.ring.peek()

    @precondition(lambda self: self.model)
    @rule()
    def peek(self) -> None:
        assert self.ring.peek() is self.model[0]

    @rule(n=st.integers(-3, 25) | st.just(10**30))
    def drain(self, n: int) -> None:
        count = len(self.model) if n < 0 else min(n, len(self.model))
        expected = [self.model.popleft() for _ in range(count)]
        got = self.ring.drain(n)
        assert type(got) is list
        assert len(expected) == len(got)
        assert all(a is b for a, b in zip(expected, got, strict=True))

    @rule()
    def clear(self) -> None:
        assert self.ring.clear() is None
        self.model.clear()

    @invariant()
    def same_contents(self) -> None:
        assert len(self.model) == len(self.ring)
        assert bool(self.model) is bool(self.ring)
        assert all(a is b for a, b in zip(self.model, self.ring, strict=True))
        assert f"Ring(len={len(self.model)})" == repr(self.ring)


def test_ring_behaves_as_deque(ring: ModuleType) -> None:
    run_state_machine_as_test(
        lambda: RingMachine(ring),
        settings=settings(max_examples=100, stateful_step_count=50, deadline=None),
    )


# ---- differential: the same operations give the same results on both twins ----

_OPS = st.lists(
    st.one_of(
        st.tuples(st.just("push"), st.integers(-5, 5)),
        st.tuples(st.just("push_front"), st.integers(-5, 5)),
        st.tuples(st.just("pop")),
        st.tuples(st.just("peek")),
        st.tuples(
            st.just("drain"),
            st.integers(-2, 12) | st.sampled_from([10**30, -(10**30), 1.0, True, None, "3"]),
        ),
        st.tuples(st.just("drain_all")),
        st.tuples(st.just("clear")),
        st.tuples(st.just("iter")),
        st.tuples(st.just("len")),
        st.tuples(st.just("bool")),
        st.tuples(st.just("repr")),
    ),
    max_size=80,
)


def _apply(r: Any, op: tuple[Any, ...]) -> object:
    name, *args = op
    try:
        if name == "drain_all":
            return r.drain()
        if name == "iter":
            return list(r)
        if name in ("len", "bool", "repr"):
            return {"len": len, "bool": bool, "repr": repr}[name](r)
        return getattr(r, name)(*args)
    except Exception as exc:  # the exception is the result to compare
        return (type(exc), str(exc))


def _make(ring_class: Any, capacity: object) -> object:
    try:
        return ring_class(capacity)
    except Exception as exc:
        return (type(exc), str(exc))


@settings(max_examples=200, deadline=None)
@given(
    capacity=st.integers(1, 9) | st.sampled_from([0, -1, 1.0, True, None, "8"]),
    ops=_OPS,
)
def test_twins_agree(capacity: object, ops: list[tuple[Any, ...]]) -> None:
    compiled = importlib.import_module(TWINS["cython"]).Ring
    twin = importlib.import_module(TWINS["python"]).Ring
    a, b = _make(compiled, capacity), _make(twin, capacity)
    if isinstance(b, tuple):  # invalid capacity: the same error
        assert b == a
        return
    for op in ops:
        assert _apply(b, op) == _apply(a, op), op


# ---- unit tests ----


@pytest.mark.parametrize(
    ("capacity", "shown"),
    [(0, "0"), (-8, "-8"), (2.0, "2.0"), (True, "True"), (None, "None"), ("8", "'8'")],
)
def test_capacity_validation(ring: ModuleType, capacity: object, shown: str) -> None:
    with pytest.raises(ValueError, match=rf"^capacity must be a positive int, got {shown}$"):
        ring.Ring(capacity)


@pytest.mark.parametrize(("n", "shown"), [(1.0, "1.0"), (None, "None"), ("2", "'2'"), (False, "False")])
def test_drain_validation(ring: ModuleType, n: object, shown: str) -> None:
    r = ring.Ring()
    r.push(1)
    with pytest.raises(TypeError, match=rf"^n must be an int, got {shown}$"):
        r.drain(n)
    assert len(r) == 1


def test_empty_errors(ring: ModuleType) -> None:
    r = ring.Ring()
    with pytest.raises(IndexError, match=r"^pop from an empty ring$"):
        r.pop()
    with pytest.raises(IndexError, match=r"^peek at an empty ring$"):
        r.peek()
    assert [] == r.drain()
    assert [] == r.drain(5)
    assert not r
    assert "Ring(len=0)" == repr(r)


def test_grows_past_capacity(ring: ModuleType) -> None:
    r = ring.Ring(3)
    for i in range(5):  # move the head off slot 0 before growing
        r.push(i)
    assert [0, 1] == r.drain(2)
    for i in range(5, 1000):
        r.push(i)
    assert 998 == len(r)
    assert list(range(2, 1000)) == list(r)
    assert list(range(2, 1000)) == r.drain()


def test_push_front_wraps_around(ring: ModuleType) -> None:
    r = ring.Ring(4)
    model: deque[int] = deque()
    for i in range(40):
        if i % 3:
            r.push_front(i)
            model.appendleft(i)
        else:
            r.push(i)
            model.append(i)
        if i % 5 == 4:
            assert model.popleft() == r.pop()
        assert list(model) == list(r)
    assert list(model) == r.drain()


def test_iter_is_a_snapshot(ring: ModuleType) -> None:
    r = ring.Ring(2)
    r.push("a")
    r.push("b")
    it = iter(r)
    r.pop()
    r.push("c")
    r.push("d")
    assert ["a", "b"] == list(it)


def test_keywords_as_twin(ring: ModuleType) -> None:
    r = ring.Ring(capacity=2)
    r.push(item=1)
    r.push_front(item=0)
    assert [0] == r.drain(n=1)


def test_drain_huge_and_negative_counts(ring: ModuleType) -> None:
    r = ring.Ring()
    for i in range(5):
        r.push(i)
    assert [0, 1] == r.drain(2)
    assert [2, 3, 4] == r.drain(10**30)
    r.push(5)
    assert [5] == r.drain(-(10**30))


def test_never_compares_or_hashes_items(ring: ModuleType) -> None:
    r = ring.Ring(2)
    items = [Poison(i) for i in range(9)]
    for item in items[:5]:
        r.push(item)
    r.push_front(items[5])
    assert r.peek() is items[5]
    assert r.pop() is items[5]
    assert all(a is b for a, b in zip(items[:5], r, strict=True))
    assert all(a is b for a, b in zip(items[:2], r.drain(2), strict=True))
    r.clear()
    assert not r


def test_releases_popped_items(ring: ModuleType) -> None:
    r = ring.Ring(2)
    items = [Poison(i) for i in range(6)]
    refs = [weakref.ref(item) for item in items]
    for item in items:
        r.push(item)
    del item
    r.pop()
    r.drain(2)
    items.clear()
    assert [None, None, None] == [ref() for ref in refs[:3]]
    assert all(ref() is not None for ref in refs[3:])
    r.clear()
    assert all(ref() is None for ref in refs)


def test_cycles_through_a_ring_are_collected(ring: ModuleType) -> None:
    class Holder:
        pass

    holder = Holder()
    holder.ring = ring.Ring()  # type: ignore[attr-defined]
    holder.ring.push(holder)  # type: ignore[attr-defined]
    ref = weakref.ref(holder)
    del holder
    gc.collect()
    assert ref() is None


def test_reinit_resets(ring: ModuleType) -> None:
    r = ring.Ring(2)
    for i in range(5):
        r.push(i)
    r.__init__(4)  # type: ignore[misc]
    assert 0 == len(r)
    r.push(9)
    assert [9] == list(r)


# ---- which core _fastcore picks ----


@pytest.mark.parametrize("wanted", ["cython", "python"])
def test_implementation_follows_env(wanted: str) -> None:
    env = {**os.environ, "TRIO_PEEPER_FASTCORE": wanted}
    code = (
        "import _fastcore\n"
        "print(_fastcore.IMPLEMENTATION, _fastcore.Ring.__module__, _fastcore.TimerWheel.__module__)"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True
    ).stdout.split()
    suffix = "" if wanted == "cython" else "_py"
    assert [wanted, f"_fastcore._ring{suffix}", f"_fastcore._wheel{suffix}"] == out


def test_implementation_rejects_unknown_choice() -> None:
    env = {**os.environ, "TRIO_PEEPER_FASTCORE": "fortran"}
    proc = subprocess.run(
        [sys.executable, "-c", "import _fastcore"], env=env, capture_output=True, text=True
    )
    assert 0 != proc.returncode
    assert (
        "ImportError: TRIO_PEEPER_FASTCORE must be 'auto', 'cython' or 'python', got 'fortran'"
        == proc.stderr.strip().splitlines()[-1]
    )
