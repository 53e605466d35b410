"""Property: a `tp.Table` behaves like a small Python model, for each kind (API.md sections 7 and 10).

Each example makes one table, owned either by the driving task itself or by a
server (`Owner`, which runs functions inside its ``handle_call``), and runs a
random sequence of commands through the public facade, checking every result
and the whole contents after each step against a model:

- set: a dict in insertion order; ordered_set: the same dict read in key
  order; bag / duplicate_bag: a dict of value lists, oldest first (a bag
  holds no two equal objects, a duplicate_bag does);
- an operation the model rejects (``KeyError`` for a missing ``t[k]``,
  ``TypeError`` for an operation the kind does not have or a non-int counter)
  is rejected by the table too, and changes nothing;
- hostile keys whose ``__hash__`` raises, or whose ``__eq__`` raises (hashing
  like a key already present, so the comparison is forced), and hostile values
  whose ``__eq__`` raises, make the operation raise that very exception and
  leave ``items()`` exactly as before (``insert_many`` included: all or
  nothing);
- a server owner's crash (``keep_tables=True``, the default) keeps the table,
  its ownership and its contents, the crashing callback's writes included.

When a server owns the table, writes go through the server; reads go through
it too for a private table and are made by the driving task otherwise.

Each example is its own ``trio.run`` on a fresh autojump ``MockClock``
(STYLE.md S8.3); the tests are sync and get no conftest clock.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
import trio
import trio.testing
from hypothesis import event, given, settings
from hypothesis import strategies as st

import trio_peeper as tp

KINDS = ["set", "ordered_set", "bag", "duplicate_bag"]
SET_KINDS = ("set", "ordered_set")

KEYS = st.integers(0, 7)
PROBES = st.integers(-1, 9)  # keys for next/prev/range: present or not
VALUES = st.one_of(st.integers(0, 3), st.sampled_from(["x", "y"]))
PAIRS = st.lists(st.tuples(KEYS, VALUES), max_size=5)

COMMANDS = st.sampled_from(
    [
        "insert",
        "insert",
        "insert",
        "insert_many",
        "insert_new",
        "setitem",
        "delitem",
        "getitem",
        "lookup",
        "lookup_all",
        "contains",
        "delete",
        "delete_object",
        "take",
        "update_counter",
        "select",
        "len",
        "iter",
        "first",
        "last",
        "next",
        "prev",
        "range",
        "clear",
        "hostile",
        "hostile",
        "hostile",
        "crash",
    ]
)
# operations that hash their key before anything else (the hostile-key targets)
HOSTILE_OPS = [
    "insert",
    "insert_new",
    "insert_many",
    "setitem",
    "delitem",
    "getitem",
    "lookup",
    "lookup_all",
    "contains",
    "delete",
    "delete_object",
    "take",
    "update_counter",
]


class Boom(Exception):
    """Raised by hostile keys and values."""


class HashBoom:
    """A key whose ``__hash__`` raises."""

    def __hash__(self) -> int:
        raise Boom("hash")

    def __repr__(self) -> str:
        return "HashBoom()"


class EqBoom:
    """Hashes like the int *h*; any ``==`` raises (so meeting key *h* in a dict raises)."""

    def __init__(self, h: int) -> None:
        self.h = h

    def __hash__(self) -> int:
        return hash(self.h)

    def __eq__(self, other: object) -> bool:
        raise Boom("eq")

    def __repr__(self) -> str:
        return f"EqBoom({self.h})"


class Owner(tp.GenServer):
    """``call(("run", fn))`` answers ``("ok", fn())`` or ``("err", exc)``; ``("crash", fn)`` runs fn then raises."""

    async def handle_call(self, request: Any, caller: object, state: None) -> object:
        op, fn = request
        if op == "crash":
            fn()
            raise RuntimeError("crash after a table write")
        try:
            return tp.Reply(("ok", fn()), state)
        except Exception as exc:  # noqa: BLE001 - handed back to the driver
            return tp.Reply(("err", exc), state)


# ---------------------------------------------------------------- the model


class Model:
    """The objects of a table: ``{key: [value, ...]}`` (one value per key for the set kinds)."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self.sets = kind in SET_KINDS
        self.data: dict[Any, list[Any]] = {}

    def _need_sets(self) -> None:
        if not self.sets:
            raise TypeError(self.kind)

    def _need_ordered(self) -> None:
        if self.kind != "ordered_set":
            raise TypeError(self.kind)

    def keys(self) -> list[Any]:
        return sorted(self.data) if self.kind == "ordered_set" else list(self.data)

    def items(self) -> list[tuple[Any, Any]]:
        return [(k, v) for k in self.keys() for v in self.data[k]]

    def __len__(self) -> int:
        return sum(len(vs) for vs in self.data.values())

    def insert(self, key: Any, value: Any) -> None:
        values = self.data.get(key)
        if self.sets or values is None:
            self.data[key] = [value]
        elif self.kind == "duplicate_bag" or value not in values:
            values.append(value)

    def insert_many(self, pairs: list[tuple[Any, Any]]) -> None:
        for key, value in pairs:
            self.insert(key, value)

    def insert_new(self, key: Any, value: Any) -> bool:
        if key in self.data:
            return False
        self.data[key] = [value]
        return True

    def setitem(self, key: Any, value: Any) -> None:
        self._need_sets()
        self.insert(key, value)

    def delitem(self, key: Any) -> None:
        if key not in self.data:
            raise KeyError(key)
        del self.data[key]

    def getitem(self, key: Any) -> Any:
        self._need_sets()
        if key not in self.data:
            raise KeyError(key)
        return self.data[key][0]

    def lookup(self, key: Any, default: Any = None) -> Any:
        self._need_sets()
        return self.data[key][0] if key in self.data else default

    def lookup_all(self, key: Any) -> list[Any]:
        return list(self.data.get(key, []))

    def contains(self, key: Any) -> bool:
        return key in self.data

    def delete(self, key: Any) -> None:
        self.data.pop(key, None)

    def delete_object(self, key: Any, value: Any) -> None:
        if key in self.data:
            kept = [v for v in self.data[key] if v != value]
            if kept:
                self.data[key] = kept
            else:
                del self.data[key]

    def take(self, key: Any) -> list[Any]:
        return self.data.pop(key, [])

    def update_counter(self, key: Any, incr: int, default: int = 0) -> int:
        self._need_sets()
        if key in self.data:
            old = self.data[key][0]
            if type(old) is not int:
                raise TypeError(old)
            new = old + incr
        else:
            new = default + incr
        self.data[key] = [new]
        return new

    def select(self, predicate: Callable[[Any, Any], bool], limit: int | None) -> list[tuple[Any, Any]]:
        found = [(k, v) for k, v in self.items() if predicate(k, v)]
        return found if limit is None else found[:limit]

    def clear(self) -> None:
        self.data.clear()

    def first(self) -> Any:
        self._need_ordered()
        keys = self.keys()
        return keys[0] if keys else None

    def last(self) -> Any:
        self._need_ordered()
        keys = self.keys()
        return keys[-1] if keys else None

    def next(self, key: Any) -> Any:
        self._need_ordered()
        return next((k for k in self.keys() if k > key), None)

    def prev(self, key: Any) -> Any:
        self._need_ordered()
        return next((k for k in reversed(self.keys()) if k < key), None)

    def range(self, lo: Any, hi: Any) -> list[tuple[Any, Any]]:
        self._need_ordered()
        return [(k, v) for k, v in self.items() if lo <= k < hi]


# ---------------------------------------------------------------- driving


class Driver:
    """Runs table operations as the owner (writes) or as a reader, and checks them against the model."""

    def __init__(self, t: tp.Table, model: Model, ref: tp.ServerRef | None, read_directly: bool) -> None:
        self.t = t
        self.model = model
        self.ref = ref
        self.read_directly = read_directly

    async def run(self, fn: Callable[[], Any], *, write: bool) -> tuple[str, Any]:
        if self.ref is None or (self.read_directly and not write):
            try:
                return ("ok", fn())
            except Exception as exc:  # noqa: BLE001 - compared below
                return ("err", exc)
        outcome: tuple[str, Any] = await self.ref.call(("run", fn))
        return outcome

    async def items(self) -> list[tuple[Any, Any]]:
        status, got = await self.run(self.t.items, write=False)
        assert status == "ok", got
        return list(got)

    async def check(self, op: str, table_fn: Callable[[], Any], model_fn: Callable[[], Any], *, write: bool) -> None:
        """Run both; same result, or the same exception type with nothing changed."""
        before = self.model.items()
        try:
            expected: tuple[str, Any] = ("ok", model_fn())
        except (KeyError, TypeError) as exc:
            expected = ("err", type(exc))
            assert self.model.items() == before  # the model itself is atomic
        status, got = await self.run(table_fn, write=write)
        if expected[0] == "ok":
            assert status == "ok", (op, got)
            assert got == expected[1], op
        else:
            event(f"{op} refused with {expected[1].__name__}")
            assert status == "err", (op, got)
            assert isinstance(got, expected[1]), (op, got)
            assert await self.items() == before, op

    async def hostile(self, op: str, key: Any, value: Any, expected: type[Exception], *, may_pass: bool = False) -> None:
        """*op* with a hostile key or value raises *expected* and changes nothing.

        With *may_pass*, it may instead return as for an absent key (a removal
        from an empty table need not hash the key: ``dict.pop`` does not).
        """
        t = self.t
        calls: dict[str, Callable[[], Any]] = {
            "insert": lambda: t.insert(key, value),
            "insert_new": lambda: t.insert_new(key, value),
            "insert_many": lambda: t.insert_many([(0, "x"), (key, value), (1, "y")]),
            "setitem": lambda: t.__setitem__(key, value),
            "delitem": lambda: t.__delitem__(key),
            "getitem": lambda: t[key],
            "lookup": lambda: t.lookup(key),
            "lookup_all": lambda: t.lookup_all(key),
            "contains": lambda: key in t,
            "delete": lambda: t.delete(key),
            "delete_object": lambda: t.delete_object(key, value),
            "take": lambda: t.take(key),
            "update_counter": lambda: t.update_counter(key, 1),
        }
        before = await self.items()
        assert before == self.model.items()
        write = op not in ("getitem", "lookup", "lookup_all", "contains")
        status, got = await self.run(calls[op], write=write)
        if may_pass and status == "ok":
            event(f"hostile {op} on an empty table passed")
            assert got == ([] if op == "take" else None), (op, got)
        else:
            event(f"hostile {op}: {expected.__name__}")
            assert status == "err", (op, key, value, got)
            assert type(got) is expected, (op, key, value, got)
        assert await self.items() == before, (op, key, value)


def bag_refuses(kind: str, op: str) -> bool:
    """The operation does not exist for this kind: TypeError before the key is looked at."""
    return kind not in SET_KINDS and op in ("setitem", "getitem", "lookup", "update_counter")


async def _drive(data: st.DataObject, kind: str) -> None:
    owner = data.draw(st.sampled_from(["task", "server"]), label="owner")
    access = data.draw(st.sampled_from(["public", "protected", "private"]), label="access")
    model = Model(kind)
    async with trio.open_nursery() as nursery:
        ref: tp.ServerRef | None = None
        if owner == "server":
            ref = await tp.start_server(nursery, Owner)
            status, t = await ref.call(("run", lambda: tp.Table(kind, access=access)))
            assert status == "ok", t
            assert t.owner is ref
        else:
            t = tp.Table(kind, access=access)
            assert t.owner is trio.lowlevel.current_task()
        d = Driver(t, model, ref, read_directly=access != "private")
        for _ in range(data.draw(st.integers(1, 20), label="steps")):
            await _step(data, d, kind, t, model, ref)
            status, got = await d.run(lambda: (t.items(), len(t)), write=False)
            assert (status, got) == ("ok", (model.items(), len(model)))
        status, info = await d.run(t.info, write=False)
        assert status == "ok", info
        assert (info["kind"], info["size"], info["access"]) == (kind, len(model), access)
        if ref is not None:
            if access == "private":
                with pytest.raises(tp.AccessError):
                    t.items()
            assert t.owner is ref
            nursery.cancel_scope.cancel()


async def _step(data: st.DataObject, d: Driver, kind: str, t: tp.Table, model: Model, ref: tp.ServerRef | None) -> None:
    op = data.draw(COMMANDS, label="op")
    if op in ("insert", "insert_new", "setitem"):
        k, v = data.draw(KEYS, label="key"), data.draw(VALUES, label="value")
        fns: dict[str, tuple[Callable[[], Any], Callable[[], Any]]] = {
            "insert": (lambda: t.insert(k, v), lambda: model.insert(k, v)),
            "insert_new": (lambda: t.insert_new(k, v), lambda: model.insert_new(k, v)),
            "setitem": (lambda: t.__setitem__(k, v), lambda: model.setitem(k, v)),
        }
        await d.check(op, *fns[op], write=True)
    elif op == "insert_many":
        pairs = data.draw(PAIRS, label="pairs")
        await d.check(op, lambda: t.insert_many(pairs), lambda: model.insert_many(pairs), write=True)
    elif op in ("delitem", "delete", "take", "getitem", "lookup_all", "contains"):
        if op == "delitem" and kind not in SET_KINDS:
            return  # ``del t[k]`` is contracted for set and ordered_set only
        k = data.draw(KEYS, label="key")
        table_fns: dict[str, Callable[[], Any]] = {
            "delitem": lambda: t.__delitem__(k),
            "delete": lambda: t.delete(k),
            "take": lambda: t.take(k),
            "getitem": lambda: t[k],
            "lookup_all": lambda: t.lookup_all(k),
            "contains": lambda: k in t,
        }
        write = op in ("delitem", "delete", "take")
        await d.check(op, table_fns[op], lambda: getattr(model, op)(k), write=write)
    elif op == "lookup":
        k = data.draw(KEYS, label="key")
        default = data.draw(st.sampled_from([None, "dflt"]), label="default")
        await d.check(op, lambda: t.lookup(k, default), lambda: model.lookup(k, default), write=False)
    elif op == "delete_object":
        k, v = data.draw(KEYS, label="key"), data.draw(VALUES, label="value")
        await d.check(op, lambda: t.delete_object(k, v), lambda: model.delete_object(k, v), write=True)
    elif op == "update_counter":
        k = data.draw(KEYS, label="key")
        incr = data.draw(st.integers(-3, 3), label="incr")
        default = data.draw(st.integers(0, 5), label="default")
        await d.check(op, lambda: t.update_counter(k, incr, default), lambda: model.update_counter(k, incr, default), write=True)
    elif op == "select":
        m = data.draw(st.integers(1, 3), label="modulus")
        r = data.draw(st.integers(0, 2), label="residue")
        limit = data.draw(st.one_of(st.none(), st.integers(0, 4)), label="limit")

        def predicate(key: Any, value: Any) -> bool:
            return (key + (value if isinstance(value, int) else len(value))) % m == r

        await d.check(op, lambda: t.select(predicate, limit), lambda: model.select(predicate, limit), write=False)
    elif op == "len":
        await d.check(op, lambda: len(t), lambda: len(model), write=False)
    elif op == "iter":
        await d.check(op, lambda: list(t), model.keys, write=False)
    elif op in ("first", "last"):
        await d.check(op, getattr(t, op), getattr(model, op), write=False)
    elif op in ("next", "prev"):
        k = data.draw(PROBES, label="probe")
        await d.check(op, lambda: getattr(t, op)(k), lambda: getattr(model, op)(k), write=False)
    elif op == "range":
        lo, hi = data.draw(PROBES, label="lo"), data.draw(PROBES, label="hi")
        await d.check(op, lambda: t.range(lo, hi), lambda: model.range(lo, hi), write=False)
    elif op == "clear":
        await d.check(op, t.clear, model.clear, write=True)
    elif op == "hostile":
        await _hostile(data, d, kind, model)
    elif op == "crash":
        if ref is None:
            return
        k, v = data.draw(KEYS, label="key"), data.draw(VALUES, label="value")
        restarts = ref.restarts
        await trio.sleep(6)  # virtual time: keeps the standalone server within its restart intensity
        with pytest.raises(tp.ServerExited):
            await ref.call(("crash", lambda: t.insert(k, v)))
        model.insert(k, v)  # the crashing callback's write stays: tables are not transactional
        await trio.testing.wait_all_tasks_blocked()
        assert ref.restarts == restarts + 1
        assert t.owner is ref
        event("owner crashed")


async def _hostile(data: st.DataObject, d: Driver, kind: str, model: Model) -> None:
    what = data.draw(st.sampled_from(["hash", "eq", "value"]), label="hostile")
    present = model.keys()
    if what == "hash":
        op = data.draw(st.sampled_from(HOSTILE_OPS), label="hostile op")
        if op == "delitem" and kind not in SET_KINDS:
            return
        expected = TypeError if bag_refuses(kind, op) else Boom
        empty_removal = not present and op in ("delete", "take")
        await d.hostile(op, HashBoom(), "v", expected, may_pass=empty_removal)
    elif what == "eq":
        if not present:
            return  # nothing to collide with: the comparison would not happen
        h = data.draw(st.sampled_from(present), label="collides with")
        op = data.draw(st.sampled_from(HOSTILE_OPS), label="hostile op")
        if op == "delitem" and kind not in SET_KINDS:
            return
        expected = TypeError if bag_refuses(kind, op) else Boom
        await d.hostile(op, EqBoom(h), "v", expected)
    else:
        # a hostile value meets the stored values of a present key: delete_object
        # compares with them on every kind, a bag's insert checks for duplicates
        if not present:
            return
        k = data.draw(st.sampled_from(present), label="key")
        ops = ["delete_object", "insert"] if kind == "bag" else ["delete_object"]
        op = data.draw(st.sampled_from(ops), label="hostile op")
        await d.hostile(op, k, EqBoom(-1000), Boom)


@pytest.mark.parametrize("kind", KINDS)
@settings(deadline=None, max_examples=100)
@given(st.data())
def test_table_matches_model(kind: str, data: st.DataObject) -> None:
    trio.run(_drive, data, kind, clock=trio.testing.MockClock(autojump_threshold=0))
