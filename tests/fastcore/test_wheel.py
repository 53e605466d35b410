"""`_fastcore` TimerWheel: both twins against a dict model, against each other, and on edge cases.

Every test runs once per twin (the ``wheel`` fixture imports the module by name:
a missing extension is an error, never a skip).
"""

from __future__ import annotations

import importlib
import math
import random
import weakref
from types import ModuleType
from typing import Any

import pytest
from _twins import Poison, twin_fixture, twins
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    Bundle,
    RuleBasedStateMachine,
    initialize,
    invariant,
    rule,
    run_state_machine_as_test,
)

TWINS = twins("wheel")
wheel = twin_fixture("wheel")


def _earliest(pending: dict[int, tuple[float, Poison]]) -> float:
    """The model's next deadline: the smallest, the first inserted among equals."""
    if not pending:
        return math.inf
    return min(pending.items(), key=lambda kv: (kv[1][0], kv[0]))[1][0]


# ---- model-based: a TimerWheel behaves as a dict of pending entries ----


class WheelMachine(RuleBasedStateMachine):
    handles = Bundle("handles")

    def __init__(self, wheel: ModuleType) -> None:
        super().__init__()
        self.module = wheel
        self.pending: dict[int, tuple[float, Poison]] = {}  # {handle: (deadline, item)}
        self.issued = 0

    @initialize(
        resolution=st.sampled_from([0.01, 1.0, 0.25, 3.0, 1e-9]),
        slots=st.sampled_from([2, 4, 16, 1024]),
        now=st.sampled_from([0.0, 5.5, -7.25, 1e6]),
    )
    def create(self, resolution: float, slots: int, now: float) -> None:
        self.wheel = self.module.TimerWheel(resolution, slots, now)
        self.res, self.span, self.now = resolution, resolution * slots, now

    @rule(
        target=handles,
        revolutions=st.integers(-1, 3),
        ticks=st.integers(-3, 40),
        frac=st.sampled_from([0.0, 0.5, 0.999]),
        kind=st.sampled_from(["float"] * 6 + ["int", "now", "huge", "-huge"]),
    )
    def insert(self, revolutions: int, ticks: int, frac: float, kind: str) -> int:
        deadline: float
        if kind == "float":
            deadline = self.now + revolutions * self.span + (ticks + frac) * self.res
        elif kind == "int":
            deadline = math.floor(self.now) + ticks
        elif kind == "now":
            deadline = self.now
        else:
            deadline = (1e300 if kind == "huge" else -1e300) * (1 + ticks)
        self.issued += 1
        item = Poison(self.issued)
        assert self.issued == self.wheel.insert(deadline, item)
        self.pending[self.issued] = (deadline, item)
        return self.issued

    @rule(handle=handles)
    def cancel(self, handle: int) -> None:
        expected = self.pending.pop(handle, None) is not None
        assert expected is self.wheel.cancel(handle)

    @rule(handle=st.sampled_from([0, -1, 10**30, 2**63]) | st.builds(object))
    def cancel_unknown(self, handle: object) -> None:
        assert self.wheel.cancel(handle) is False

    @rule()
    def cancel_future(self) -> None:
        assert self.wheel.cancel(self.issued + 1) is False

    @rule(
        revolutions=st.integers(-1, 3),
        ticks=st.integers(-5, 60),
        frac=st.sampled_from([0.0, 0.5, 0.999]),
    )
    def expire(self, revolutions: int, ticks: int, frac: float) -> None:
        now = self.now + revolutions * self.span + (ticks + frac) * self.res
        self.expire_at(now)
        self.now = now

    @rule(now=st.sampled_from([1e300, 5e300, -1e300, 1.7976931348623157e308]))
    def expire_extreme(self, now: float) -> None:
        self.expire_at(now)

    def expire_at(self, now: float) -> None:
        due = sorted((d, h) for h, (d, _) in self.pending.items() if d <= now)
        expected = [self.pending.pop(h)[1] for _, h in due]
        got = self.wheel.expire(now)
        assert type(got) is list
        assert [item.n for item in expected] == [item.n for item in got]
        assert all(a is b for a, b in zip(expected, got, strict=True))

    @invariant()
    def next_deadline_is_the_minimum(self) -> None:
        expected = _earliest(self.pending)
        got = self.wheel.next_deadline()
        assert expected == got
        assert type(expected) is type(got)

    @invariant()
    def counts(self) -> None:
        assert len(self.pending) == len(self.wheel)
        assert f"TimerWheel(pending={len(self.pending)})" == repr(self.wheel)


def test_wheel_behaves_as_dict_of_pending(wheel: ModuleType) -> None:
    run_state_machine_as_test(
        lambda: WheelMachine(wheel),
        settings=settings(max_examples=100, stateful_step_count=50, deadline=None),
    )


# ---- differential: the same operations give the same results on both twins ----

_DEADLINES = (
    st.floats(-1e6, 1e6)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.integers(-1000, 1000)
    | st.sampled_from([1e300, -1e300, 0.0, -0.0, 5e-324, True, 10**400, "1", None, 1.5, 1.505])
)
_HANDLES = st.integers(-2, 40) | st.sampled_from([True, 1.0, 2.5, "1", None, 10**30, 2**64, []])
_OPS = st.lists(
    st.one_of(
        st.tuples(st.just("insert"), _DEADLINES),
        st.tuples(st.just("cancel"), _HANDLES),
        st.tuples(st.just("expire"), _DEADLINES),
        st.tuples(st.just("next_deadline")),
        st.tuples(st.just("len")),
        st.tuples(st.just("repr")),
    ),
    max_size=60,
)


def _apply(w: Any, op: tuple[Any, ...], item: int) -> object:
    name, *args = op
    try:
        if name == "insert":
            return w.insert(args[0], item)
        if name == "len":
            return len(w)
        if name == "repr":
            return repr(w)
        result = getattr(w, name)(*args)
    except Exception as exc:  # the exception is the result to compare
        return (type(exc), str(exc))
    if name == "next_deadline":
        return (type(result), result)
    return result


def _make(wheel_class: Any, args: tuple[Any, ...]) -> object:
    try:
        return wheel_class(*args)
    except Exception as exc:
        return (type(exc), str(exc))


@settings(max_examples=300, deadline=None)
@given(
    args=st.tuples(
        st.sampled_from([0.01, 1.0, 0.3, 1e-9, 1e9, 5e-324, 0, -1.0, math.inf, math.nan, "1", True]),
        st.sampled_from([2, 4, 8, 1024, 3, 0, 2.0, True]),
        st.floats(-1e6, 1e6) | st.sampled_from([-1e308, 1e308, math.nan, math.inf, "2.5", None]),
    ),
    ops=_OPS,
)
def test_twins_agree(args: tuple[Any, ...], ops: list[tuple[Any, ...]]) -> None:
    a = _make(importlib.import_module(TWINS["cython"]).TimerWheel, args)
    b = _make(importlib.import_module(TWINS["python"]).TimerWheel, args)
    if isinstance(b, tuple):  # invalid arguments: the same error
        assert b == a
        return
    for i, op in enumerate(ops):
        expected, got = _apply(b, op, i), _apply(a, op, i)
        assert expected == got, op
        if isinstance(expected, float) and math.isnan(expected):
            assert isinstance(got, float)
            assert math.isnan(got)


# ---- unit tests ----


@pytest.mark.parametrize(
    ("resolution", "shown"),
    [(0, "0"), (-1.0, "-1.0"), (math.inf, "inf"), (math.nan, "nan"), ("1", "'1'"), (None, "None")],
)
def test_resolution_validation(wheel: ModuleType, resolution: object, shown: str) -> None:
    with pytest.raises(ValueError, match=rf"^resolution must be a positive finite number, got {shown}$"):
        wheel.TimerWheel(resolution)


@pytest.mark.parametrize(
    ("slots", "shown"), [(3, "3"), (1, "1"), (0, "0"), (-2, "-2"), (1000, "1000"), (4.0, "4.0"), (True, "True")]
)
def test_slots_validation(wheel: ModuleType, slots: object, shown: str) -> None:
    with pytest.raises(ValueError, match=rf"^slots must be a power of two >= 2, got {shown}$"):
        wheel.TimerWheel(0.01, slots)


@pytest.mark.parametrize(("value", "shown"), [(math.nan, "nan"), (math.inf, "inf"), (-math.inf, "-inf")])
def test_deadline_validation(wheel: ModuleType, value: float, shown: str) -> None:
    message = rf"^deadline must be a finite number, got {shown}$"
    with pytest.raises(ValueError, match=message):
        wheel.TimerWheel(now=value)
    w = wheel.TimerWheel()
    with pytest.raises(ValueError, match=message):
        w.insert(value, "x")
    with pytest.raises(ValueError, match=message):
        w.expire(value)
    assert 0 == len(w)
    assert 1 == w.insert(1.0, "x")  # a refused insert used no handle


def test_deadline_type_errors(wheel: ModuleType) -> None:
    w = wheel.TimerWheel()
    with pytest.raises(TypeError, match=r"^'<' not supported between instances of 'float' and 'str'$"):
        w.insert("1", "x")
    with pytest.raises(TypeError, match=r"^'<' not supported between instances of 'float' and 'NoneType'$"):
        w.expire(None)
    with pytest.raises(OverflowError, match=r"^int too large to convert to float$"):
        w.insert(10**400, "x")


def test_handles_count_from_one_and_are_never_reused(wheel: ModuleType) -> None:
    w = wheel.TimerWheel(resolution=1.0, slots=4)
    assert [1, 2, 3] == [w.insert(float(d), d) for d in range(3)]
    assert w.cancel(2)
    assert 4 == w.insert(1.0, "again")
    assert [0, "again", 2] == w.expire(10.0)
    assert [5, 6] == [w.insert(20.0, "a"), w.insert(20.0, "b")]


def test_stale_and_foreign_handles(wheel: ModuleType) -> None:
    w = wheel.TimerWheel(resolution=1.0)
    h1, h2, h3 = (w.insert(float(i), i) for i in (1, 2, 3))
    assert w.cancel(h2)
    assert not w.cancel(h2)  # cancelled already
    assert [1] == w.expire(1.0)
    assert not w.cancel(h1)  # fired already
    for foreign in (0, -1, 4, 10**30, 2**63, 2**64, "3", None, 3.5, object()):
        assert not w.cancel(foreign)
    with pytest.raises(TypeError, match=r"^unhashable type: 'list'$"):
        w.cancel([h3])
    assert w.cancel(3.0)  # equal and of equal hash, as a dict key
    h4 = w.insert(9.0, 9)
    assert 1 == len(w)
    assert w.cancel(True) is False  # True == 1, long gone
    assert w.cancel(h4)
    assert w.cancel([h4]) is False  # an empty dict does not hash what it pops


def test_expire_across_revolutions(wheel: ModuleType) -> None:
    w = wheel.TimerWheel(resolution=1.0, slots=4)
    deadlines = [17.0, 1.5, 9.5, 3.0, 100.0, 6.0, 3.0, 4.75]
    for d in deadlines:
        w.insert(d, d)
    assert [1.5, 3.0, 3.0, 4.75] == w.expire(5.0)
    assert 6.0 == w.next_deadline()
    assert [6.0, 9.5, 17.0] == w.expire(20.0)  # four revolutions at once
    assert 100.0 == w.next_deadline()
    assert [] == w.expire(99.99)
    assert [100.0] == w.expire(100.0)
    assert math.inf == w.next_deadline()
    assert [] == w.expire(1e9)


def test_order_is_deadline_then_insertion(wheel: ModuleType) -> None:
    w = wheel.TimerWheel(resolution=10.0, slots=2)
    for i, d in enumerate([5.0, 3.0, 5.0, 1.0, 3.0, 25.0, 5.0]):
        w.insert(d, (d, i))
    assert [(1.0, 3), (3.0, 1), (3.0, 4), (5.0, 0), (5.0, 2), (5.0, 6)] == w.expire(9.0)


def test_many_fire_at_once(wheel: ModuleType) -> None:
    w = wheel.TimerWheel(resolution=0.5, slots=8)
    rng = random.Random(7)
    deadlines = [rng.choice([1.0, 1.25, 2.0]) for _ in range(1500)]
    for i, d in enumerate(deadlines):
        w.insert(d, i)
    for i in range(0, 1500, 3):
        assert w.cancel(i + 1)
    expected = sorted((d, i) for i, d in enumerate(deadlines) if i % 3)
    assert [i for _, i in expected] == w.expire(2.0)
    assert 0 == len(w)


def test_huge_deadlines(wheel: ModuleType) -> None:
    w = wheel.TimerWheel(resolution=0.01)
    for d in (2e300, 1e300, 1.7976931348623157e308, 1.5e300, 5.0):
        w.insert(d, d)
    assert 5.0 == w.next_deadline()
    assert [5.0] == w.expire(1e6)
    assert 1e300 == w.next_deadline()
    assert [] == w.expire(9e299)
    assert [1e300, 1.5e300] == w.expire(1.6e300)
    assert [2e300, 1.7976931348623157e308] == w.expire(1.7976931348623157e308)
    assert 0 == len(w)


def test_negative_deadlines(wheel: ModuleType) -> None:
    w = wheel.TimerWheel(resolution=0.001, now=0.0)
    for d in (-2.5, -1e300, -5.0, -1.7976931348623157e308):
        w.insert(d, d)
    assert -1.7976931348623157e308 == w.next_deadline()
    # earlier than the wheel's own now: entries raised to its cursor still fire
    assert [-1.7976931348623157e308, -1e300, -5.0] == w.expire(-3.0)
    assert -2.5 == w.next_deadline()
    assert [-2.5] == w.expire(0.0)
    far = wheel.TimerWheel(resolution=1e-3, now=-1e308)
    far.insert(-9e307, "a")
    far.insert(-1e308, "b")
    assert ["b"] == far.expire(-1e308)
    assert ["a"] == far.expire(0.0)


def test_int_deadlines_keep_their_type(wheel: ModuleType) -> None:
    w = wheel.TimerWheel(resolution=1.0)
    w.insert(5, "int")
    w.insert(5.0, "float")
    w.insert(7, "seven")
    assert 5 == w.next_deadline()
    assert type(w.next_deadline()) is int
    assert w.cancel(1)
    assert type(w.next_deadline()) is float
    assert ["float"] == w.expire(6)
    assert type(w.next_deadline()) is int
    assert ["seven"] == w.expire(7.0)


def test_never_compares_or_hashes_items(wheel: ModuleType) -> None:
    w = wheel.TimerWheel(resolution=1.0, slots=4)
    items = [Poison(i) for i in range(6)]
    handles = [w.insert(float(i % 3), item) for i, item in enumerate(items)]
    assert w.cancel(handles[4])
    fired = w.expire(1.0)
    assert [0, 3, 1] == [item.n for item in fired]
    assert all(a is b for a, b in zip([items[0], items[3], items[1]], fired, strict=True))
    assert 2 == len(w)


def test_releases_cancelled_and_fired_items(wheel: ModuleType) -> None:
    w = wheel.TimerWheel(resolution=1.0)
    items = [Poison(i) for i in range(4)]
    refs = [weakref.ref(item) for item in items]
    handles = [w.insert(float(i), item) for i, item in enumerate(items)]
    items.clear()
    w.cancel(handles[3])
    assert refs[3]() is None
    fired = w.expire(1.0)
    assert [refs[0](), refs[1]()] == fired
    del fired
    assert [None, None, None] == [refs[0](), refs[1](), refs[3]()]
    assert refs[2]() is not None


def test_reinit_resets(wheel: ModuleType) -> None:
    w = wheel.TimerWheel()
    w.insert(1.0, "a")
    w.__init__(1.0, 2)  # type: ignore[misc]
    assert 0 == len(w)
    assert 1 == w.insert(3.0, "b")
    assert ["b"] == w.expire(3.0)
