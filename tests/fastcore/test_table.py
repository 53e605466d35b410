"""`_fastcore` TableCore: both twins against a dict model, against each other, and under hostile input.

Every test runs once per twin (the ``table`` fixture imports the module by name:
a missing extension is an error, never a skip).
"""

from __future__ import annotations

import ast
import gc
import importlib
import math
import os
import re
import subprocess
import sys
import weakref
from collections.abc import Callable, Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from _twins import twin_fixture, twins
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    rule,
    run_state_machine_as_test,
)

TWINS = twins("table")
table = twin_fixture("table")

KINDS = ["set", "ordered_set", "bag", "duplicate_bag"]
SET_KINDS = ("set", "ordered_set")


def typed(obj: object) -> object:
    """*obj* with every leaf tagged by its type, so 1, 1.0 and True differ when compared."""
    if isinstance(obj, list):
        return [typed(x) for x in obj]
    if isinstance(obj, tuple):
        return tuple(typed(x) for x in obj)
    return (type(obj).__name__, repr(obj))


def same(a: object, b: object) -> bool:
    return typed(a) == typed(b)


def need_sets(name: str, kind: str) -> str:
    return re.escape(f"{name}() needs a set or ordered_set table, got a {kind!r} table")


def need_ordered(name: str, kind: str) -> str:
    return re.escape(f"{name}() needs an ordered_set table, got a {kind!r} table")


# ---- model-based: a TableCore behaves as a dict of value lists ----

# 1, 1.0 and True are one key (as in a dict); values mix ints with equal floats/bools
KEYS = st.sampled_from([0, 1, 2, 3, 4, 5, 6, 7, -3, 1.0, 2.5, True])
VALUES = st.sampled_from([0, 1, 2, 3, 1.0, True, "a", None])
PREDICATES: list[Callable[[Any, Any], object]] = [
    lambda k, v: k > 2,
    lambda k, v: v in (0, 1),
    lambda k, v: None,
]


class TableMachine(RuleBasedStateMachine):
    """Every rule runs on every kind; the model says what each kind must return or raise."""

    def __init__(self, module: ModuleType, kind: str) -> None:
        super().__init__()
        self.module, self.kind = module, kind
        self.model: dict[Any, list[Any]] = {}  # {key: [value, ...]}: one value for set kinds

    @initialize()
    def create(self) -> None:
        self.t = self.module.TableCore(self.kind)
        assert self.kind == self.t.kind

    # model helpers

    def model_insert(self, key: object, value: object) -> None:
        values = self.model.get(key)
        if values is None:
            self.model[key] = [value]
        elif self.kind in SET_KINDS:
            values[0] = value
        elif self.kind == "duplicate_bag" or not any(x is value or x == value for x in values):
            values.append(value)

    def model_keys(self) -> list[Any]:
        return sorted(self.model) if self.kind == "ordered_set" else list(self.model)

    def model_items(self) -> list[tuple[Any, Any]]:
        return [(k, v) for k in self.model_keys() for v in self.model[k]]

    # writes

    @rule(key=KEYS, value=VALUES)
    def insert(self, key: object, value: object) -> None:
        assert self.t.insert(key, value) is None
        self.model_insert(key, value)

    @rule(pairs=st.lists(st.tuples(KEYS, VALUES), max_size=6), bad=st.none() | st.sampled_from([(1, 2, 3), [1, 2], 7]))
    def insert_many(self, pairs: list[tuple[Any, Any]], bad: object) -> None:
        if bad is None:
            assert self.t.insert_many(iter(pairs)) is None
            for key, value in pairs:
                self.model_insert(key, value)
        else:
            msg = re.escape(f"insert_many takes (key, value) 2-tuples, got {bad!r}")
            with pytest.raises(TypeError, match=f"^{msg}$"):
                self.t.insert_many([*pairs, bad])

    @rule(key=KEYS, value=VALUES)
    def insert_new(self, key: object, value: object) -> None:
        expected = key not in self.model
        assert expected is self.t.insert_new(key, value)
        if expected:
            self.model[key] = [value]

    @rule(key=KEYS)
    def delete(self, key: object) -> None:
        assert self.t.delete(key) is None
        self.model.pop(key, None)

    @rule(key=KEYS, value=VALUES)
    def delete_object(self, key: object, value: object) -> None:
        assert self.t.delete_object(key, value) is None
        if key in self.model:
            kept = [v for v in self.model[key] if not (v is value or v == value)]
            if kept:
                self.model[key] = kept
            else:
                del self.model[key]

    @rule(key=KEYS)
    def take(self, key: object) -> None:
        assert same(self.model.pop(key, []), self.t.take(key))

    @rule()
    def clear(self) -> None:
        assert self.t.clear() is None
        self.model.clear()

    @rule(
        key=KEYS,
        incr=st.integers(-3, 3) | st.sampled_from([True, 1.0, None]),
        default=st.integers(-3, 3) | st.sampled_from([False, 2.0]),
    )
    def update_counter(self, key: object, incr: object, default: object) -> None:
        if self.kind not in SET_KINDS:
            with pytest.raises(TypeError, match=f"^{need_sets('update_counter', self.kind)}$"):
                self.t.update_counter(key, incr, default)
            return
        if type(incr) is not int:
            with pytest.raises(TypeError, match=f"^{re.escape(f'incr must be an int, got {incr!r}')}$"):
                self.t.update_counter(key, incr, default)
            return
        if type(default) is not int:
            with pytest.raises(TypeError, match=f"^{re.escape(f'default must be an int, got {default!r}')}$"):
                self.t.update_counter(key, incr, default)
            return
        old = self.model[key][0] if key in self.model else default
        if type(old) is not int:
            msg = re.escape(f"update_counter() needs an int value at key {key!r}, got {old!r}")
            with pytest.raises(TypeError, match=f"^{msg}$"):
                self.t.update_counter(key, incr, default)
            return
        assert same(old + incr, self.t.update_counter(key, incr, default))
        self.model_insert(key, old + incr)

    # reads

    @rule(key=KEYS)
    def lookup_all(self, key: object) -> None:
        got = self.t.lookup_all(key)
        assert same(self.model.get(key, []), got)
        got.append("not the table's list")  # a copy
        assert same(self.model.get(key, []), self.t.lookup_all(key))

    @rule(key=KEYS, default=st.sampled_from([None, "dflt"]))
    def lookup_and_getitem(self, key: object, default: object) -> None:
        if self.kind not in SET_KINDS:
            for name in ("lookup", "getitem"):
                msg = need_sets(name, self.kind) + re.escape("; use lookup_all()")
                with pytest.raises(TypeError, match=f"^{msg}$"):
                    getattr(self.t, name)(key)
            return
        if key in self.model:
            assert same(self.model[key][0], self.t.lookup(key, default))
            assert same(self.model[key][0], self.t.getitem(key))
        else:
            assert default is self.t.lookup(key, default)
            assert self.t.lookup(key) is None
            with pytest.raises(KeyError) as info:
                self.t.getitem(key)
            assert same((key,), info.value.args)

    @rule(key=KEYS)
    def contains(self, key: object) -> None:
        assert (key in self.model) is self.t.contains(key)

    @rule(which=st.integers(0, len(PREDICATES) - 1), limit=st.none() | st.integers(0, 4))
    def select(self, which: int, limit: int | None) -> None:
        predicate = PREDICATES[which]
        expected = [item for item in self.model_items() if predicate(*item)]
        if limit is not None:
            expected = expected[:limit]
        assert same(expected, self.t.select(predicate, limit))

    @rule(key=KEYS, hi=KEYS)
    def ordered_reads(self, key: Any, hi: Any) -> None:
        if self.kind != "ordered_set":
            for name, args in [("first", ()), ("last", ()), ("next", (key,)), ("prev", (key,)), ("range", (key, hi))]:
                with pytest.raises(TypeError, match=f"^{need_ordered(name, self.kind)}$"):
                    getattr(self.t, name)(*args)
            return
        keys = self.model_keys()
        assert same(keys[0] if keys else None, self.t.first())
        assert same(keys[-1] if keys else None, self.t.last())
        assert same(next((k for k in keys if k > key), None), self.t.next(key))
        assert same(next((k for k in reversed(keys) if k < key), None), self.t.prev(key))
        expected = [(k, self.model[k][0]) for k in keys if key <= k < hi]
        assert same(expected, self.t.range(key, hi))

    @invariant()
    def same_contents(self) -> None:
        assert sum(map(len, self.model.values())) == len(self.t)
        assert same(self.model_keys(), self.t.keys())
        assert same(self.model_keys(), list(self.t))
        assert same(self.model_items(), self.t.items())


@pytest.mark.parametrize("kind", KINDS)
def test_table_behaves_as_model(table: ModuleType, kind: str) -> None:
    run_state_machine_as_test(
        lambda: TableMachine(table, kind),
        settings=settings(max_examples=40, stateful_step_count=40, deadline=None),
    )


# ---- differential: the same operations give the same results on both twins ----

_NAN = math.nan
_ANY = st.sampled_from([0, 1, 2, 3, 5, 1.0, True, 2.5, "a", (1,), None, _NAN, [1]])
_INT = st.integers(-2, 2) | st.sampled_from([True, 1.0, None])
_OPS = st.lists(
    st.one_of(
        st.tuples(st.just("insert"), _ANY, _ANY),
        st.tuples(st.just("insert_many"), st.lists(st.tuples(_ANY, _ANY) | _ANY, max_size=4)),
        st.tuples(st.just("insert_new"), _ANY, _ANY),
        st.tuples(st.sampled_from(["lookup_all", "lookup", "getitem", "contains", "delete", "take"]), _ANY),
        st.tuples(st.just("delete_object"), _ANY, _ANY),
        st.tuples(st.just("update_counter"), _ANY, _INT, _INT),
        st.tuples(st.just("select"), st.integers(-1, 3) | st.sampled_from([None, True, 1.5])),
        st.tuples(st.sampled_from(["clear", "keys", "items", "len", "iter", "first", "last"])),
        st.tuples(st.sampled_from(["next", "prev"]), _ANY),
        st.tuples(st.just("range"), _ANY, _ANY),
    ),
    max_size=60,
)


def _apply(t: Any, op: tuple[Any, ...]) -> object:
    name, *args = op
    try:
        if name == "len":
            return len(t)
        if name == "iter":
            return list(t)
        if name == "select":
            return t.select(lambda k, v: v != 0, args[0])
        return getattr(t, name)(*args)
    except Exception as exc:  # the exception is the result to compare
        return (type(exc), str(exc))


@settings(max_examples=150, deadline=None)
@given(kind=st.sampled_from([*KINDS, "sets", 1, None]), ops=_OPS)
def test_twins_agree(kind: Any, ops: list[tuple[Any, ...]]) -> None:
    made = []
    for name in ("cython", "python"):
        try:
            made.append(importlib.import_module(TWINS[name]).TableCore(kind))
        except Exception as exc:
            made.append((type(exc), str(exc)))
    a, b = made
    if isinstance(b, tuple):  # invalid kind: the same error
        assert b == a
        return
    for op in ops:
        assert typed(_apply(b, op)) == typed(_apply(a, op)), op
        assert typed(b.items()) == typed(a.items()), op
        assert len(b) == len(a)


# ---- hostile input: whatever raises, the table is exactly as before ----


class Boom(Exception):
    pass


class Hostile:
    """Hashes, compares and orders as ``v``, but raises `Boom` once *budget* calls are spent."""

    def __init__(self, v: object, budget: int) -> None:
        self.v, self.budget = v, budget

    def _spend(self) -> None:
        if self.budget == 0:
            raise Boom
        self.budget -= 1

    @staticmethod
    def _unwrap(other: object) -> object:
        return other.v if isinstance(other, Hostile) else other

    def __hash__(self) -> int:
        self._spend()
        return hash(self.v)

    def __eq__(self, other: object) -> bool:
        self._spend()
        return bool(self.v == self._unwrap(other))

    def __lt__(self, other: object) -> bool:
        self._spend()
        return bool(self.v < self._unwrap(other))  # type: ignore[operator]

    def __gt__(self, other: object) -> bool:
        self._spend()
        return bool(self.v > self._unwrap(other))  # type: ignore[operator]

    def __repr__(self) -> str:
        return f"Hostile({self.v!r})"


def _prefilled(module: ModuleType, kind: str) -> Any:
    t = module.TableCore(kind)
    for k in range(7):
        t.insert(k, k * 10)
        t.insert(k, k * 10 + 1)  # bags: two values per key
    t.insert(3, 30)  # duplicate_bag: an exact duplicate
    t.insert(8, 80)  # a key with one value
    return t


def _snapshot(t: Any) -> tuple[object, ...]:
    # identities only: neither hashes nor compares anything stored
    return len(t), [id(k) for k in t.keys()], [(id(k), id(v)) for k, v in t.items()]


def _consistent(t: Any) -> None:
    items, keys = t.items(), t.keys()
    assert len(items) == len(t)
    assert [id(k) for k in keys] == list(dict.fromkeys(id(k) for k, _ in items))
    if t.kind == "ordered_set":
        plain = [k.v if isinstance(k, Hostile) else k for k in keys]
        assert plain == sorted(plain)


def _raising_iter(budget: int) -> Iterator[tuple[int, str]]:
    for i in range(budget):
        yield (100 + i, "x")
    raise Boom


_ENTRY_POINTS: list[tuple[str, Callable[[Any, Hostile], object]]] = [
    ("insert key", lambda t, h: t.insert(h, 0)),
    ("insert value", lambda t, h: t.insert(3, h)),
    ("insert_many key", lambda t, h: t.insert_many([(50, "a"), (h, 1), (-5, "b")])),
    ("insert_many value", lambda t, h: t.insert_many([(50, "a"), (3, h), (3, h)])),
    ("insert_many after update", lambda t, h: t.insert_many([(2, "new"), (8, "new"), (h, 1)])),
    ("insert_new", lambda t, h: t.insert_new(h, 0)),
    ("lookup_all", lambda t, h: t.lookup_all(h)),
    ("lookup", lambda t, h: t.lookup(h)),
    ("getitem", lambda t, h: t.getitem(h)),
    ("contains", lambda t, h: t.contains(h)),
    ("delete", lambda t, h: t.delete(h)),
    ("delete_object key", lambda t, h: t.delete_object(h, h.v * 10)),
    ("delete_object value", lambda t, h: t.delete_object(3, h)),
    ("take", lambda t, h: t.take(h)),
    ("update_counter", lambda t, h: t.update_counter(h, 1)),
    ("next", lambda t, h: t.next(h)),
    ("prev", lambda t, h: t.prev(h)),
    ("range lo", lambda t, h: t.range(h, 5)),
    ("range hi", lambda t, h: t.range(1, h)),
    ("select", lambda t, h: t.select(lambda k, v: h == k)),
]


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize(("label", "op"), _ENTRY_POINTS, ids=[label for label, _ in _ENTRY_POINTS])
@pytest.mark.parametrize("base", [3, 8, 30, 100], ids=["present", "single", "present-value", "absent"])
def test_hostile_input_leaves_table_unchanged(
    table: ModuleType, kind: str, label: str, op: Callable[[Any, Hostile], object], base: int
) -> None:
    for budget in range(60):  # raise at the 1st, 2nd, ... user call until the op completes
        t = _prefilled(table, kind)
        before = _snapshot(t)
        h = Hostile(base, budget)
        try:
            op(t, h)
        except Boom as exc:
            assert type(exc) is Boom  # propagated unchanged
            assert before == _snapshot(t), (label, budget)
        except (TypeError, KeyError):  # the kind's own refusal, or a missing key
            assert before == _snapshot(t), (label, budget)
            break
        else:
            h.budget = -1  # never raises again
            _consistent(t)
            break
    else:
        pytest.fail(f"{label} never completed")


@pytest.mark.parametrize("kind", KINDS)
def test_insert_many_iterator_raising_leaves_table_unchanged(table: ModuleType, kind: str) -> None:
    t = _prefilled(table, kind)
    before = _snapshot(t)
    for n in range(4):
        with pytest.raises(Boom):
            t.insert_many(_raising_iter(n))
        assert before == _snapshot(t)


@pytest.mark.parametrize("kind", KINDS)
def test_unhashable_keys_leave_table_unchanged(table: ModuleType, kind: str) -> None:
    t = _prefilled(table, kind)
    before = _snapshot(t)
    ops: list[Callable[[], object]] = [
        lambda: t.insert([1], 0),
        lambda: t.insert_many([(9, 0), ([1], 0)]),
        lambda: t.insert_new([1], 0),
        lambda: t.lookup_all([1]),
        lambda: t.delete([1]),
        lambda: t.delete_object([1], 0),
        lambda: t.take([1]),
        lambda: t.contains([1]),
    ]
    for op in ops:
        with pytest.raises(TypeError, match=r"^unhashable type: 'list'$"):
            op()
        assert before == _snapshot(t)


# ---- validation messages ----


@pytest.mark.parametrize(
    ("kind", "shown"),
    [("sets", "'sets'"), ("", "''"), (None, "None"), (1, "1"), (["set"], "['set']")],
)
def test_kind_validation(table: ModuleType, kind: object, shown: str) -> None:
    msg = re.escape(f"kind must be 'set', 'ordered_set', 'bag' or 'duplicate_bag', got {shown}")
    with pytest.raises(ValueError, match=f"^{msg}$"):
        table.TableCore(kind)


def test_kind_is_read_only(table: ModuleType) -> None:
    t = table.TableCore("bag")
    with pytest.raises(AttributeError):
        t.kind = "set"
    assert "bag" == t.kind


@pytest.mark.parametrize(("limit", "shown"), [(-1, "-1"), (1.0, "1.0"), (True, "True"), ("2", "'2'")])
def test_select_limit_validation(table: ModuleType, limit: object, shown: str) -> None:
    t = table.TableCore("set")
    t.insert(1, 1)
    with pytest.raises(ValueError, match=rf"^limit must be None or an int >= 0, got {re.escape(shown)}$"):
        t.select(lambda k, v: True, limit)


def test_select_limit_zero_calls_nothing(table: ModuleType) -> None:
    t = table.TableCore("set")
    t.insert(1, 1)
    assert [] == t.select(lambda k, v: 1 / 0, 0)


@pytest.mark.parametrize("kind", SET_KINDS)
def test_update_counter_validation(table: ModuleType, kind: str) -> None:
    t = table.TableCore(kind)
    t.insert("s", "text")
    t.insert("b", True)
    with pytest.raises(TypeError, match=r"^incr must be an int, got True$"):
        t.update_counter("n", True)
    with pytest.raises(TypeError, match=r"^default must be an int, got 0\.0$"):
        t.update_counter("n", 1, 0.0)
    with pytest.raises(TypeError, match=r"^update_counter\(\) needs an int value at key 's', got 'text'$"):
        t.update_counter("s", 1)
    with pytest.raises(TypeError, match=r"^update_counter\(\) needs an int value at key 'b', got True$"):
        t.update_counter("b", 1)
    assert [("s", "text"), ("b", True)] == sorted(t.items(), reverse=True)
    assert 12 == t.update_counter("n", 2, 10)
    assert 9 == t.update_counter("n", -3)
    assert 9 == t.lookup("n")


@pytest.mark.parametrize("kind", ["bag", "duplicate_bag"])
def test_set_only_operations_refuse_bags(table: ModuleType, kind: str) -> None:
    t = table.TableCore(kind)
    t.insert(1, 1)
    refusal = rf"needs a set or ordered_set table, got a '{kind}' table"
    with pytest.raises(TypeError, match=rf"^lookup\(\) {refusal}; use lookup_all\(\)$"):
        t.lookup(1)
    with pytest.raises(TypeError, match=rf"^getitem\(\) {refusal}; use lookup_all\(\)$"):
        t.getitem(1)
    with pytest.raises(TypeError, match=rf"^update_counter\(\) {refusal}$"):
        t.update_counter(1, 1)


@pytest.mark.parametrize("kind", ["set", "bag", "duplicate_bag"])
def test_ordered_operations_refuse_other_kinds(table: ModuleType, kind: str) -> None:
    t = table.TableCore(kind)
    for name, args in [("first", ()), ("last", ()), ("next", (1,)), ("prev", (1,)), ("range", (0, 9))]:
        with pytest.raises(TypeError, match=rf"^{name}\(\) needs an ordered_set table, got a '{kind}' table$"):
            getattr(t, name)(*args)


def test_incomparable_keys_leave_ordered_set_unchanged(table: ModuleType) -> None:
    t = table.TableCore("ordered_set")
    t.insert_many([(1, "a"), (2, "b"), (3, "c")])
    before = t.items()
    ops: list[Callable[[], object]] = [
        lambda: t.insert("x", 0),
        lambda: t.insert_new("x", 0),
        lambda: t.update_counter("x", 1),
        lambda: t.insert_many([(5, 0), ("x", 0)]),
        lambda: t.next("x"),
        lambda: t.prev("x"),
        lambda: t.range("x", 2),
    ]
    for op in ops:
        with pytest.raises(TypeError, match=r"^ordered_set keys must be mutually comparable, got 'x'$") as info:
            op()
        assert isinstance(info.value.__cause__, TypeError)
        assert before == t.items()
    with pytest.raises(TypeError, match=r"^ordered_set keys must be mutually comparable, got \(1,\)$"):
        t.insert_many([(9, 0), ((1,), 0)])  # incomparable with the batch, not only the table
    assert before == t.items()
    t.delete("x")  # absent: never compared
    assert [] == t.take("x")
    assert before == t.items()


@pytest.mark.parametrize("kind", KINDS)
def test_insert_many_is_all_or_nothing(table: ModuleType, kind: str) -> None:
    t = _prefilled(table, kind)
    before = _snapshot(t)
    with pytest.raises(TypeError, match=r"^insert_many takes \(key, value\) 2-tuples, got \(1, 2, 3\)$"):
        t.insert_many([(20, 0), (1, 2, 3)])
    with pytest.raises(TypeError, match=r"^'int' object is not iterable$"):
        t.insert_many(5)
    assert before == _snapshot(t)


# ---- semantics worth spelling out ----


def test_insert_many_later_pairs_win(table: ModuleType) -> None:
    for kind in SET_KINDS:
        t = table.TableCore(kind)
        t.insert(1, "old")
        t.insert_many([(2, "a"), (1.0, "x"), (2.0, "b"), (True, "y")])
        assert same([(1, "y"), (2, "b")], t.items())


def test_insert_many_bag_dedupes_within_the_batch(table: ModuleType) -> None:
    t = table.TableCore("bag")
    t.insert("k", 1)
    alias = t.lookup_all("k")
    t.insert_many([("k", 1.0), ("k", 2), ("j", 3), ("k", 2), ("j", 3)])
    assert [("k", 1), ("k", 2), ("j", 3)] == t.items()
    assert 3 == len(t)
    assert [1] == alias
    d = table.TableCore("duplicate_bag")
    d.insert_many([("k", 1), ("k", 1), ("j", 1)])
    assert [("k", 1), ("k", 1), ("j", 1)] == d.items()


def test_bag_order_and_delete_object(table: ModuleType) -> None:
    d = table.TableCore("duplicate_bag")
    for key, value in [("b", 1), ("a", 2), ("b", 1), ("b", 3), ("a", 2)]:
        d.insert(key, value)
    assert [("b", 1), ("b", 1), ("b", 3), ("a", 2), ("a", 2)] == d.items()
    d.delete_object("b", 1.0)  # every duplicate, equal under ==
    assert [("b", 3), ("a", 2), ("a", 2)] == d.items()
    d.delete_object("b", 4)
    d.delete_object("zz", 4)
    assert 3 == len(d)
    d.delete_object("b", 3)  # the last value: the key goes, and comes back last
    d.insert("b", 5)
    assert ["a", "b"] == d.keys()
    assert [2, 2] == d.take("a")
    assert [("b", 5)] == d.items()


def test_ordered_set_navigation_with_absent_keys(table: ModuleType) -> None:
    t = table.TableCore("ordered_set")
    assert (None, None, None, None, []) == (t.first(), t.last(), t.next(0), t.prev(0), t.range(0, 9))
    t.insert_many([(k, str(k)) for k in (10, 30, 20, 40)])
    assert (10, 40) == (t.first(), t.last())
    assert 10 == t.next(-5)
    assert 20 == t.next(10)
    assert 30 == t.next(25)
    assert None is t.next(40)
    assert None is t.next(99)
    assert None is t.prev(10)
    assert 10 == t.prev(15)
    assert 30 == t.prev(40)
    assert 40 == t.prev(1e9)
    assert [(20, "20"), (30, "30")] == t.range(15, 40)
    assert [(10, "10"), (20, "20")] == t.range(10, 25)
    assert [] == t.range(25, 30)
    assert [] == t.range(40, 10)
    assert [(10, "10"), (20, "20"), (30, "30"), (40, "40")] == t.range(-math.inf, math.inf)


def test_equal_keys_are_one_key(table: ModuleType) -> None:
    for kind in KINDS:
        t = table.TableCore(kind)
        t.insert(1, "a")
        t.insert(1.0, "b")
        t.insert(True, "c")
        assert same([1], t.keys()), kind
        assert t.contains(1.0)
        if kind in SET_KINDS:
            assert "c" == t.getitem(True)


@pytest.mark.parametrize("kind", KINDS)
def test_select_with_a_mutating_predicate(table: ModuleType, kind: str) -> None:
    t = table.TableCore(kind)
    for k in range(6):
        t.insert(k, k)
    seen = []

    def predicate(key: int, value: int) -> bool:
        seen.append(key)
        t.delete(key + 1)  # the snapshot still yields it
        t.insert(100 + key, key)  # never seen by this select
        if key == 4:
            t.clear()
        return key % 2 == 0

    assert [(0, 0), (2, 2)] == t.select(predicate, limit=2)
    assert [0, 1, 2] == seen
    seen.clear()
    t.clear()
    for k in range(6):
        t.insert(k, k)
    assert [(0, 0), (2, 2), (4, 4)] == t.select(predicate)
    assert [0, 1, 2, 3, 4, 5] == seen
    assert [(105, 5)] == t.items()


def test_iter_is_a_snapshot(table: ModuleType) -> None:
    t = table.TableCore("ordered_set")
    t.insert_many([(2, 0), (1, 0)])
    it = iter(t)
    t.insert(0, 0)
    t.delete(2)
    assert [1, 2] == list(it)


def test_nan_keys_keep_the_table_consistent(table: ModuleType) -> None:
    # "<" on NaN is no order: deleting finds the cell by identity, never the wrong one
    t = table.TableCore("ordered_set")
    nan = math.nan
    for key in (1, 2, nan, 0.5):
        t.insert(key, repr(key))
    assert 4 == len(t)
    t.delete(nan)
    assert 3 == len(t)
    assert not t.contains(nan)
    assert sorted(t.keys()) == t.keys()
    assert [(0.5, "0.5"), (1, "1"), (2, "2")] == t.items()


def test_comparison_that_deletes_its_own_key(table: ModuleType) -> None:
    t = table.TableCore("ordered_set")

    class Sneaky:  # smaller than every other key; once armed, deletes itself when compared
        armed = False

        def __lt__(self, other: object) -> bool:
            return other is not self

        def __gt__(self, other: object) -> bool:
            if self.armed:
                self.armed = False
                t.delete(self)
            return False

        __hash__ = object.__hash__

    s = Sneaky()
    t.insert_many([(1, "a"), (s, "s"), (2, "b")])
    assert s is t.first()
    s.armed = True
    with pytest.raises(RuntimeError, match=r"^ordered_set changed during a key comparison$"):
        t.delete(s)
    assert not t.contains(s)
    assert 2 == len(t) == len(t.items())


@pytest.mark.parametrize("kind", KINDS)
def test_cycles_through_a_table_are_collected(table: ModuleType, kind: str) -> None:
    class Holder:
        pass

    holder = Holder()
    holder.t = table.TableCore(kind)  # type: ignore[attr-defined]
    holder.t.insert("self", holder)  # type: ignore[attr-defined]
    ref = weakref.ref(holder)
    del holder
    gc.collect()
    assert ref() is None


def test_reinit_resets(table: ModuleType) -> None:
    t = table.TableCore("bag")
    t.insert(1, 1)
    t.insert(1, 2)
    t.__init__("ordered_set")  # type: ignore[misc]
    assert (0, "ordered_set", []) == (len(t), t.kind, t.items())
    t.insert(2, 0)
    assert 2 == t.first()


def test_keywords_as_twin(table: ModuleType) -> None:
    t = table.TableCore(kind="set")
    t.insert(key=1, value=2)
    assert 2 == t.lookup(key=1, default=None)
    assert 5 == t.update_counter(key=1, incr=3, default=0)
    assert [(1, 5)] == t.select(predicate=lambda k, v: True, limit=None)


# ---- the stub, the twin and the compiled class expose the same names ----


def test_stub_matches_both_twins() -> None:
    stub = Path(importlib.import_module(TWINS["python"]).__file__ or "").with_name("_table.pyi")
    tree = ast.parse(stub.read_text())
    [cls] = [node for node in tree.body if isinstance(node, ast.ClassDef) and node.name == "TableCore"]
    stubbed = {node.name for node in cls.body if isinstance(node, ast.FunctionDef)}
    for name in TWINS.values():
        core = importlib.import_module(name).TableCore
        public = {n for n in dir(core) if not n.startswith("_")}
        assert stubbed - {"__init__", "__len__", "__iter__"} == public, name
        assert all(hasattr(core, n) for n in stubbed)


# ---- which core _fastcore picks ----


@pytest.mark.parametrize("wanted", ["cython", "python"])
def test_implementation_follows_env(wanted: str) -> None:
    env = {**os.environ, "TRIO_PEEPER_FASTCORE": wanted}
    code = "import _fastcore\nprint(_fastcore.IMPLEMENTATION, _fastcore.TableCore.__module__)"
    out = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True
    ).stdout.split()
    suffix = "" if wanted == "cython" else "_py"
    assert [wanted, f"_fastcore._table{suffix}"] == out


def test_write_guard_lets_only_the_owner_write(table: Any) -> None:
    import contextvars

    var: contextvars.ContextVar[object] = contextvars.ContextVar("who", default=None)
    owner, refused = object(), []

    def refuse(op: str) -> None:
        refused.append(op)
        raise PermissionError(op)

    t = table.TableCore("set")
    t.insert("k", 1)
    t.set_write_guard(var, owner, refuse)
    for write in (
        lambda: t.insert("k", 2),
        lambda: t.insert_many([("k", 2)]),
        lambda: t.insert_new("n", 1),
        lambda: t.delete("k"),
        lambda: t.delete_object("k", 1),
        lambda: t.take("k"),
        lambda: t.clear(),
        lambda: t.update_counter("c", 1),
    ):
        with pytest.raises(PermissionError):
            write()
    assert refused == ["insert", "insert_many", "insert_new", "delete", "delete_object", "take", "clear", "update_counter"]
    assert t.items() == [("k", 1)] and t.lookup("k") == 1  # nothing written; reads are not guarded
    token = var.set(owner)
    t.insert("k", 3)
    assert t.update_counter("c", 2) == 2
    var.reset(token)
    t.set_write_guard(None, None, None)
    t.insert("k", 4)
    assert t.lookup("k") == 4
