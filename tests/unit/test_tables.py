"""tp.Table: operations, access, ownership, heirs, crashes and names (API.md sections 7 and 10).

Tables here are used from three kinds of callers: the test task itself (a
plain task, outside any server), servers (`Host`, which runs a function in
its ``handle_call`` and answers with its result or its exception), and other
plain tasks (`in_task`). Every trio test runs on the conftest's autojump
MockClock.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

import pytest
import trio
import trio.testing

import trio_peeper as tp
from _shared import Log

KINDS = ["set", "ordered_set", "bag", "duplicate_bag"]
SET_KINDS = ["set", "ordered_set"]
BAG_KINDS = ["bag", "duplicate_bag"]
ACCESS = ["public", "protected", "private"]

# ---------------------------------------------------------------- helpers


class Host(tp.GenServer):
    """State: a `Log` of every ``handle_info`` message.

    ``init(log, setup=None, box=None)`` runs ``setup()`` inside ``init`` and
    stores its result in ``box["made"]``. ``call(("run", fn))`` answers
    ``("ok", fn())`` or ``("err", exception)``; ``call(("crash", fn))`` runs
    ``fn()`` then raises, crashing the server; ``call(("log", None))``
    answers the messages logged so far.
    """

    async def init(self, log: Log, setup: Callable[[], Any] | None = None, box: dict[str, Any] | None = None) -> Log:
        if setup is not None and box is not None:
            box["made"] = setup()
        return log

    async def handle_call(self, request: Any, caller: object, state: Log) -> object:
        op, fn = request
        if op == "log":
            return tp.Reply(list(state), state)
        if op == "crash":
            fn()
            raise RuntimeError("crash after the writes")
        try:
            return tp.Reply(("ok", fn()), state)
        except Exception as exc:  # noqa: BLE001 - handed back to the test
            return tp.Reply(("err", exc), state)

    async def handle_info(self, message: Any, state: Log) -> object:
        state.append(message)
        return tp.NoReply(state)


class FragileHost(Host, keep_tables=False):
    """A `Host` whose tables do not survive its crashes (class keyword)."""


class WritingHeir(Host):
    """Writes ``("inherited", data)`` into a table the moment it receives it."""

    async def handle_info(self, message: Any, state: Log) -> object:
        if isinstance(message, tp.TableTransfer):
            try:
                message.table.insert("inherited", message.data)
                state.append(("wrote", message.table))
            except Exception as exc:  # noqa: BLE001 - recorded for the test
                state.append(("refused", exc))
        return tp.NoReply(state)


async def run_in(ref: tp.ServerRef, fn: Callable[[], Any]) -> Any:
    """``fn()`` inside a callback of *ref*: its result, or its exception raised here."""
    status, value = await ref.call(("run", fn))
    if status == "err":
        raise value
    return value


async def _log_of(ref: tp.ServerRef) -> list[Any]:
    """The ``handle_info`` messages a `Host` received so far (its state)."""
    got: list[Any] = await ref.call(("log", None))
    return got


async def in_task(fn: Callable[[], Any]) -> Any:
    """``fn()`` in a fresh plain task (no server): its result, or its exception raised here."""
    out: dict[str, Any] = {}

    async def body() -> None:
        try:
            out["ok"] = fn()
        except Exception as exc:  # noqa: BLE001 - re-raised below
            out["err"] = exc

    async with trio.open_nursery() as nursery:
        nursery.start_soon(body)
    if "err" in out:
        raise out["err"]
    return out["ok"]


async def crash(ref: tp.ServerRef, fn: Callable[[], Any] = lambda: None) -> None:
    """Crash *ref* in a callback that first runs ``fn()``; wait for its restart."""
    restarts = ref.restarts
    with pytest.raises(tp.ServerExited):
        await ref.call(("crash", fn))
    await trio.testing.wait_all_tasks_blocked()
    assert ref.restarts == restarts + 1
    assert ref.alive


def filled(kind: str, **kwargs: Any) -> tp.Table:
    t = tp.Table(kind, **kwargs)
    t.insert_many([(1, "a"), (2, "b"), (3, "c")])
    return t


# ---------------------------------------------------------------- set / ordered_set mapping


@pytest.mark.parametrize("kind", SET_KINDS)
async def test_mapping_operations(kind: str) -> None:
    t = tp.Table(kind)
    t["b"] = 2
    t["a"] = 1
    t["c"] = 3
    t["b"] = 20  # replaces
    assert t["b"] == 20
    assert t["a"] == 1
    assert "a" in t
    assert "zz" not in t
    assert len(t) == 3
    expected_keys = ["a", "b", "c"] if kind == "ordered_set" else ["b", "a", "c"]
    assert list(t) == expected_keys
    assert t.items() == [(k, {"a": 1, "b": 20, "c": 3}[k]) for k in expected_keys]
    with pytest.raises(KeyError):
        t["zz"]
    assert t.lookup("a") == 1
    assert t.lookup("zz") is None
    assert t.lookup("zz", "dflt") == "dflt"
    del t["a"]
    assert "a" not in t
    assert len(t) == 2
    with pytest.raises(KeyError):
        del t["a"]
    assert len(t) == 2
    with pytest.raises(KeyError):
        t["a"]


@pytest.mark.parametrize("kind", SET_KINDS)
async def test_none_values_are_values(kind: str) -> None:
    t = tp.Table(kind)
    t["k"] = None
    assert "k" in t
    assert t["k"] is None
    assert t.lookup("k", "dflt") is None
    assert t.lookup_all("k") == [None]


@pytest.mark.parametrize("kind", SET_KINDS)
async def test_iteration_is_over_a_snapshot(kind: str) -> None:
    t = filled(kind)
    seen = []
    for k in t:
        seen.append(k)
        t.delete(k)
        t.insert(k + 10, "x")
    assert seen == [1, 2, 3]
    assert sorted(t) == [11, 12, 13]


@pytest.mark.parametrize("kind", BAG_KINDS)
async def test_mapping_item_access_is_for_set_kinds(kind: str) -> None:
    t = filled(kind)
    with pytest.raises(TypeError):
        t[1] = "z"
    with pytest.raises(TypeError):
        t[1]
    with pytest.raises(TypeError):
        t.lookup(1)
    assert t.lookup_all(1) == ["a"]  # t[1] = "z" changed nothing
    # membership, size, keys and objects work on every kind
    assert 1 in t
    assert 9 not in t
    assert len(t) == 3
    assert list(t) == [1, 2, 3]
    assert t.items() == [(1, "a"), (2, "b"), (3, "c")]


# ---------------------------------------------------------------- all kinds


@pytest.mark.parametrize("kind", KINDS)
async def test_insert_per_kind(kind: str) -> None:
    t = tp.Table(kind)
    t.insert("k", 1)
    t.insert("k", 2)
    t.insert("k", 1)
    t.insert("j", 0)
    expected = {
        "set": [1],
        "ordered_set": [1],
        "bag": [1, 2],
        "duplicate_bag": [1, 2, 1],
    }[kind]
    assert t.lookup_all("k") == expected
    assert t.lookup_all("j") == [0]
    assert t.lookup_all("missing") == []
    assert len(t) == len(expected) + 1
    k_objects = [("k", v) for v in expected]
    assert t.items() == ([("j", 0), *k_objects] if kind == "ordered_set" else [*k_objects, ("j", 0)])


@pytest.mark.parametrize("kind", KINDS)
async def test_lookup_all_returns_a_copy(kind: str) -> None:
    t = filled(kind)
    got = t.lookup_all(1)
    got.append("mine")
    assert t.lookup_all(1) == ["a"]


@pytest.mark.parametrize("kind", KINDS)
async def test_insert_many(kind: str) -> None:
    t = tp.Table(kind)
    t.insert("x", 0)
    t.insert_many([("a", 1), ("b", 2), ("a", 3)])
    t.insert_many(iter([("c", 4)]))  # any iterable
    t.insert_many([])
    a_values = [3] if kind in SET_KINDS else [1, 3]
    assert t.lookup_all("a") == a_values
    assert t.lookup_all("b") == [2]
    assert t.lookup_all("c") == [4]
    assert len(t) == 3 + len(a_values)  # x, b, c and the a objects


@pytest.mark.parametrize("kind", KINDS)
async def test_insert_many_is_all_or_nothing(kind: str) -> None:
    t = filled(kind)
    before = t.items()
    with pytest.raises(TypeError, match=re.escape("'oops'")):
        t.insert_many([(7, "x"), (8, "y"), "oops"])
    with pytest.raises(TypeError):
        t.insert_many([(7, "x"), ([], "unhashable")])
    with pytest.raises(TypeError):
        t.insert_many([(7, "x"), (1, 2, 3)])
    assert t.items() == before


@pytest.mark.parametrize("kind", KINDS)
async def test_insert_new(kind: str) -> None:
    t = tp.Table(kind)
    assert t.insert_new("k", 1) is True
    assert t.insert_new("k", 2) is False
    assert t.insert_new("k", 1) is False
    assert t.lookup_all("k") == [1]
    assert len(t) == 1


@pytest.mark.parametrize("kind", KINDS)
async def test_delete(kind: str) -> None:
    t = filled(kind)
    t.insert(2, "bb")
    t.delete(2)
    assert t.lookup_all(2) == []
    assert 2 not in t
    t.delete(2)  # missing: nothing happens
    t.delete("never")
    assert t.items() == [(1, "a"), (3, "c")]
    assert len(t) == 2


@pytest.mark.parametrize("kind", KINDS)
async def test_delete_object(kind: str) -> None:
    t = tp.Table(kind)
    t.insert("k", 1)
    t.insert("k", 2)
    t.insert("k", 1)
    t.delete_object("k", 99)  # no such object: nothing happens
    t.delete_object("nokey", 1)
    before = t.items()
    assert len(t) == len(before)
    if kind in SET_KINDS:
        # the last insert won: the stored object is ("k", 1), ("k", 2) is not in the table
        t.delete_object("k", 2)
        assert t.items() == [("k", 1)] == before
        t.delete_object("k", 1)
        assert t.items() == []
        assert "k" not in t
    else:
        t.delete_object("k", 1)
        # every copy of ("k", 1) goes, ("k", 2) stays
        assert t.items() == [("k", 2)]
        assert len(t) == 1
        t.delete_object("k", 2)
        assert "k" not in t
        assert len(t) == 0


@pytest.mark.parametrize("kind", KINDS)
async def test_take(kind: str) -> None:
    t = filled(kind)
    t.insert(1, "aa")
    expected = ["aa"] if kind in SET_KINDS else ["a", "aa"]
    assert t.take(1) == expected
    assert 1 not in t
    assert t.take(1) == []
    assert t.items() == [(2, "b"), (3, "c")]
    assert len(t) == 2


@pytest.mark.parametrize("kind", SET_KINDS)
async def test_update_counter(kind: str) -> None:
    t = tp.Table(kind)
    assert t.update_counter("n", 1) == 1
    assert t.update_counter("n", 5) == 6
    assert t.update_counter("n", -10) == -4
    assert t["n"] == -4
    assert t.update_counter("m", 2, default=100) == 102
    assert t.update_counter("m", 2, default=100) == 104
    t["s"] = "text"
    with pytest.raises(TypeError, match="'text'"):
        t.update_counter("s", 1)
    assert t["s"] == "text"
    with pytest.raises(TypeError, match=re.escape("1.5")):
        t.update_counter("n", 1.5)
    assert t["n"] == -4
    with pytest.raises(TypeError):
        t.update_counter("fresh", 1, default="zero")
    assert "fresh" not in t


@pytest.mark.parametrize("kind", BAG_KINDS)
async def test_update_counter_is_for_set_kinds(kind: str) -> None:
    t = filled(kind)
    with pytest.raises(TypeError):
        t.update_counter(1, 1)
    with pytest.raises(TypeError):
        t.update_counter("new", 1)
    assert t.items() == [(1, "a"), (2, "b"), (3, "c")]


@pytest.mark.parametrize("kind", KINDS)
async def test_select(kind: str) -> None:
    t = tp.Table(kind)
    for k in range(6):
        t.insert(k, k * 10)
    t.insert(4, 41)
    seen: list[tuple[Any, Any]] = []

    def even_key(key: Any, value: Any) -> bool:
        seen.append((key, value))
        return key % 2 == 0

    got = t.select(even_key)
    objects = t.items()
    assert sorted(seen) == sorted(objects)  # called once per object, as (key, value)
    assert got == [(k, v) for k, v in objects if k % 2 == 0]
    assert all(type(item) is tuple for item in got)
    assert t.select(even_key, limit=2) == got[:2]
    assert t.select(even_key, 0) == []
    assert t.select(even_key, limit=100) == got
    assert t.select(lambda k, v: v == 41) == [(4, 41)]
    with pytest.raises(ValueError, match="-1"):
        t.select(even_key, limit=-1)


@pytest.mark.parametrize("kind", KINDS)
async def test_clear(kind: str) -> None:
    t = filled(kind)
    t.clear()
    assert len(t) == 0
    assert list(t) == []
    assert t.items() == []
    assert 1 not in t
    t.insert(5, "e")  # still usable
    assert t.items() == [(5, "e")]


@pytest.mark.parametrize("kind", KINDS)
async def test_info(kind: str) -> None:
    t = tp.Table(kind, name=("info", kind), access="public")
    t.insert("k", 1)
    t.insert("k", 2)
    info = t.info()
    assert info["kind"] == kind == t.kind
    assert info["name"] == ("info", kind) == t.name
    assert info["size"] == len(t) == (1 if kind in SET_KINDS else 2)
    assert info["access"] == "public"
    assert info["owner"] is trio.lowlevel.current_task()
    assert info["heir"] is None


# ---------------------------------------------------------------- ordered_set


async def test_ordered_set_order_and_navigation() -> None:
    t = tp.Table("ordered_set")
    assert t.first() is None
    assert t.last() is None
    assert t.next(5) is None
    assert t.prev(5) is None
    assert t.range(0, 100) == []
    for k in (30, 10, 50, 20, 40):
        t[k] = str(k)
    assert list(t) == [10, 20, 30, 40, 50]
    assert t.items() == [(k, str(k)) for k in (10, 20, 30, 40, 50)]
    assert t.first() == 10
    assert t.last() == 50
    assert t.next(10) == 20
    assert t.next(15) == 20  # not in the table
    assert t.next(-100) == 10
    assert t.next(50) is None
    assert t.next(99) is None
    assert t.prev(50) == 40
    assert t.prev(45) == 40  # not in the table
    assert t.prev(100) == 50
    assert t.prev(10) is None
    assert t.prev(0) is None
    assert t.range(20, 40) == [(20, "20"), (30, "30")]  # lo <= k < hi
    assert t.range(15, 41) == [(20, "20"), (30, "30"), (40, "40")]
    assert t.range(0, 10) == []
    assert t.range(50, 51) == [(50, "50")]
    assert t.range(40, 20) == []
    assert t.select(lambda k, v: k > 25) == [(30, "30"), (40, "40"), (50, "50")]
    t.delete(10)
    assert t.first() == 20
    t.insert(5, "5")
    assert t.first() == 5
    assert t.take(50) == ["50"]
    assert t.last() == 40


async def test_ordered_set_incomparable_key_is_refused() -> None:
    t = tp.Table("ordered_set")
    t.insert_many([(1, "a"), (2, "b")])
    with pytest.raises(TypeError):
        t.insert("x", "c")
    with pytest.raises(TypeError):
        t.next("x")
    assert t.items() == [(1, "a"), (2, "b")]


@pytest.mark.parametrize("kind", ["set", "bag", "duplicate_bag"])
@pytest.mark.parametrize(
    "op",
    [
        lambda t: t.first(),
        lambda t: t.last(),
        lambda t: t.next(1),
        lambda t: t.prev(1),
        lambda t: t.range(0, 5),
    ],
    ids=["first", "last", "next", "prev", "range"],
)
async def test_ordered_operations_need_an_ordered_set(kind: str, op: Callable[[tp.Table], Any]) -> None:
    t = filled(kind)
    with pytest.raises(TypeError, match="ordered_set"):
        op(t)


# ---------------------------------------------------------------- access

READS: dict[str, Callable[[tp.Table], Any]] = {
    "getitem": lambda t: t[1],
    "contains": lambda t: 1 in t,
    "len": len,
    "iter": list,
    "items": lambda t: t.items(),
    "lookup": lambda t: t.lookup(1),
    "lookup_all": lambda t: t.lookup_all(1),
    "select": lambda t: t.select(lambda k, v: True),
    "first": lambda t: t.first(),
    "last": lambda t: t.last(),
    "next": lambda t: t.next(1),
    "prev": lambda t: t.prev(3),
    "range": lambda t: t.range(1, 3),
    "info": lambda t: t.info(),
}
READ_RESULTS = {
    "getitem": "a",
    "contains": True,
    "len": 3,
    "iter": [1, 2, 3],
    "items": [(1, "a"), (2, "b"), (3, "c")],
    "lookup": "a",
    "lookup_all": ["a"],
    "select": [(1, "a"), (2, "b"), (3, "c")],
    "first": 1,
    "last": 3,
    "next": 2,
    "prev": 2,
    "range": [(1, "a"), (2, "b")],
}
WRITES: dict[str, Callable[[tp.Table], Any]] = {
    "setitem": lambda t: t.__setitem__(1, "z"),
    "delitem": lambda t: t.__delitem__(1),
    "insert": lambda t: t.insert(9, "z"),
    "insert_many": lambda t: t.insert_many([(9, "z")]),
    "insert_new": lambda t: t.insert_new(9, "z"),
    "delete": lambda t: t.delete(1),
    "delete_object": lambda t: t.delete_object(1, "a"),
    "take": lambda t: t.take(1),
    "update_counter": lambda t: t.update_counter(8, 1),
    "clear": lambda t: t.clear(),
}
# the contents of a `filled` ordered_set after every write but the last (clear), in order
AFTER_WRITES = [(2, "b"), (3, "c"), (8, 1), (9, "z")]


async def apply_writes(runner: Callable[[Callable[[], Any]], Any], t: tp.Table) -> None:
    """Every write in order through *runner*; checks their effect on a `filled` ordered_set."""
    *most, (_, clear) = WRITES.items()
    for _, op in most:
        await runner(lambda op=op: op(t))
    assert await runner(lambda: t.items()) == AFTER_WRITES
    await runner(lambda: clear(t))
    assert await runner(lambda: t.items()) == []


OWNER_ONLY: dict[str, Callable[[tp.Table], Any]] = {
    "give_away": lambda t: t.give_away(t.heir),  # the heir: a running server
    "set_heir": lambda t: t.set_heir(None),
}


@pytest.fixture
async def servers(nursery: trio.Nursery) -> tuple[tp.ServerRef, tp.ServerRef, tp.ServerRef]:
    """Three running `Host` servers: an owner, an outsider and a spare (used as heir)."""
    return (
        await tp.start_server(nursery, Host, Log()),
        await tp.start_server(nursery, Host, Log()),
        await tp.start_server(nursery, Host, Log()),
    )


async def _as(who: str, outsider: tp.ServerRef, fn: Callable[[], Any]) -> Any:
    return await (run_in(outsider, fn) if who == "server" else in_task(fn))


async def _make(owner: str, a: tp.ServerRef, make: Callable[[], tp.Table]) -> tp.Table:
    """A table made by server *a*, or by the test task itself."""
    return await (run_in(a, make) if owner == "server" else _direct(make))


async def _direct(fn: Callable[[], Any]) -> Any:
    return fn()


@pytest.mark.parametrize("owner", ["server", "test task"])
@pytest.mark.parametrize("access", ACCESS)
async def test_owner_may_do_everything(servers: Any, owner: str, access: str) -> None:
    a, _, spare = servers
    t = await _make(owner, a, lambda: filled("ordered_set", access=access, heir=spare))
    runner = (lambda fn: run_in(a, fn)) if owner == "server" else _direct
    for name, op in READS.items():
        if name in READ_RESULTS:
            assert await runner(lambda op=op: op(t)) == READ_RESULTS[name], name
    assert (await runner(lambda: t.info()))["size"] == 3
    await apply_writes(runner, t)
    await runner(lambda: t.set_heir(spare, "data"))
    assert t.heir is spare
    await runner(lambda: t.give_away(spare, "gift"))
    assert t.owner is spare
    await trio.testing.wait_all_tasks_blocked()
    from_ref = a if owner == "server" else None  # a task giver has no ref
    assert await _log_of(spare) == [tp.TableTransfer(t, from_ref, "gift")]
    assert await run_in(spare, lambda: t.insert_new("new owner", 1)) is True


@pytest.mark.parametrize("owner", ["server", "test task"])
@pytest.mark.parametrize("other", ["server", "task"])
@pytest.mark.parametrize("access", ACCESS)
async def test_access_of_others(servers: Any, owner: str, other: str, access: str) -> None:
    a, b, spare = servers
    t = await _make(owner, a, lambda: filled("ordered_set", access=access, heir=spare))
    expected_owner = a if owner == "server" else trio.lowlevel.current_task()
    assert t.owner is expected_owner
    for name, op in READS.items():
        if access == "private":
            with pytest.raises(tp.AccessError):
                await _as(other, b, lambda op=op: op(t))
        elif name in READ_RESULTS:
            assert await _as(other, b, lambda op=op: op(t)) == READ_RESULTS[name], name
        else:
            await _as(other, b, lambda op=op: op(t))
    for name, op in OWNER_ONLY.items():  # only the owner, whatever the access
        with pytest.raises(tp.AccessError):
            await _as(other, b, lambda op=op: op(t))
        assert t.owner is expected_owner, name
        assert t.heir is spare, name
    if access == "public":
        await _as(other, b, lambda: t.insert(9, "z"))
        assert t.items() == [(1, "a"), (2, "b"), (3, "c"), (9, "z")]
        await _as(other, b, lambda: t.delete(9))
        await apply_writes(lambda fn: _as(other, b, fn), t)
        return
    for name, op in WRITES.items():
        with pytest.raises(tp.AccessError) as info:
            await _as(other, b, lambda op=op: op(t))
        assert isinstance(info.value, PermissionError), name
        assert isinstance(info.value, tp.PeeperError), name
    with pytest.raises(tp.AccessError):
        await _as(other, b, lambda: t.delete_table())
    # nothing changed
    runner = (lambda fn: run_in(a, fn)) if owner == "server" else _direct
    assert await runner(lambda: t.items()) == [(1, "a"), (2, "b"), (3, "c")]
    assert await runner(lambda: t.info()["size"]) == 3


async def test_refused_delitem_of_a_missing_key_is_an_access_error(servers: Any) -> None:
    """A write refused for access: the refusal wins over the missing key (suspected: KeyError first)."""
    a, b, _ = servers
    t = await run_in(a, lambda: filled("set"))
    with pytest.raises(tp.AccessError):
        await run_in(b, lambda: t.__delitem__("missing"))
    with pytest.raises(tp.AccessError):
        await in_task(lambda: t.__delitem__("missing"))


async def test_access_error_message_names_the_table_and_the_operation(servers: Any) -> None:
    a, b, _ = servers
    t = await run_in(a, lambda: tp.Table("set", name="ledger", access="protected"))
    with pytest.raises(tp.AccessError, match=r"'ledger'.*insert|insert.*'ledger'"):
        await run_in(b, lambda: t.insert(1, 2))
    p = await run_in(a, lambda: tp.Table("set", name="secret", access="private"))
    with pytest.raises(tp.AccessError, match="'secret'"):
        await in_task(lambda: p.lookup(1))
    assert issubclass(tp.AccessError, PermissionError)


async def test_default_access_is_protected(servers: Any) -> None:
    a, b, _ = servers
    t = await run_in(a, lambda: tp.Table())
    assert t.kind == "set"
    assert t.info()["access"] == "protected"
    await run_in(a, lambda: t.insert(1, 2))
    assert await run_in(b, lambda: t[1]) == 2
    with pytest.raises(tp.AccessError):
        await run_in(b, lambda: t.insert(1, 3))


# ---------------------------------------------------------------- owner


async def test_owner_is_the_creating_server_or_task(nursery: trio.Nursery) -> None:
    log, box = Log(), {}
    ref = await tp.start_server(nursery, Host, log, lambda: tp.Table("set", access="private"), box)
    in_init = box["made"]
    assert in_init.owner is ref  # made in init: current_server works there
    assert in_init.heir is None
    in_call = await run_in(ref, lambda: tp.Table("bag"))
    assert in_call.owner is ref
    here = tp.Table("set")
    assert here.owner is trio.lowlevel.current_task()
    made_by_task: list[Any] = []

    async def maker() -> None:
        made_by_task.append((tp.Table("set"), trio.lowlevel.current_task()))

    async with trio.open_nursery() as n:
        n.start_soon(maker)
    other_table, other_task = made_by_task[0]
    assert other_table.owner is other_task
    assert other_task is not trio.lowlevel.current_task()
    # the owner server uses its private table from any callback, after restarts too
    await run_in(ref, lambda: in_init.insert("k", 1))
    await crash(ref)
    assert in_init.owner is ref
    assert await run_in(ref, lambda: in_init.lookup("k")) == 1
    # a table made by another task is that task's, even after it ended: the test task may not write
    with pytest.raises(tp.AccessError):
        other_table.insert(1, 2)


# ---------------------------------------------------------------- give_away


async def test_give_away_between_servers(servers: Any) -> None:
    a, b, _ = servers
    t = await run_in(a, lambda: filled("set"))
    await run_in(a, lambda: t.give_away(b, {"gift": 1}))
    assert t.owner is b
    await trio.testing.wait_all_tasks_blocked()
    # b got handle_info(TableTransfer(table, from_ref, data))
    log_b = await _log_of(b)
    assert log_b == [tp.TableTransfer(t, a, {"gift": 1})]
    msg = log_b[0]
    assert msg.table is t
    assert msg.from_ref is a
    assert msg.data == {"gift": 1}
    # b can write now, a cannot
    await run_in(b, lambda: t.insert(4, "d"))
    with pytest.raises(tp.AccessError):
        await run_in(a, lambda: t.insert(5, "e"))
    with pytest.raises(tp.AccessError):
        await run_in(a, lambda: t.give_away(a))
    assert t.items() == [(1, "a"), (2, "b"), (3, "c"), (4, "d")]
    assert await _log_of(a) == []


async def test_new_owner_writes_while_handling_the_transfer(nursery: trio.Nursery) -> None:
    a = await tp.start_server(nursery, Host, Log())
    log = Log()
    heir = await tp.start_server(nursery, WritingHeir, log)
    t = await run_in(a, lambda: tp.Table("set"))
    await run_in(a, lambda: t.give_away(heir, "g"))
    await trio.testing.wait_all_tasks_blocked()
    assert log == [("wrote", t)]
    assert t.items() == [("inherited", "g")]


async def test_give_away_from_a_task(servers: Any) -> None:
    _, b, _ = servers
    t = filled("ordered_set")
    t.give_away(b)
    await trio.testing.wait_all_tasks_blocked()
    [msg] = await _log_of(b)
    assert isinstance(msg, tp.TableTransfer)
    assert msg.table is t
    assert msg.from_ref is None  # the giver was a task, not a server
    assert msg.data is None
    with pytest.raises(tp.AccessError):
        t.insert(1, "x")
    await run_in(b, lambda: t.insert(1, "x"))
    assert t[1] == "x"


async def test_give_away_bad_targets(servers: Any, nursery: trio.Nursery) -> None:
    a, b, _ = servers
    t = filled("set", access="public")
    with pytest.raises(ValueError, match="'bob'"):
        t.give_away("bob")
    with pytest.raises(ValueError, match="None"):
        t.give_away(None)
    stopped = await tp.start_server(nursery, Host, Log())
    await stopped.stop()
    with pytest.raises(ValueError):
        t.give_away(stopped)
    assert t.owner is trio.lowlevel.current_task()
    t2 = await run_in(a, lambda: tp.Table("set"))
    with pytest.raises(ValueError):
        await run_in(a, lambda: t2.give_away(a))
    assert t2.owner is a
    assert await _log_of(a) == []
    assert await _log_of(b) == []


# ---------------------------------------------------------------- heir


async def test_heir_inherits_when_the_owner_stops(servers: Any) -> None:
    a, b, _ = servers
    t = await run_in(a, lambda: filled("bag", name="inherit-me"))
    assert t.heir is None
    await run_in(a, lambda: t.set_heir(b, "heir-data"))
    assert t.heir is b
    assert t.info()["heir"] is b
    await a.stop()
    await trio.testing.wait_all_tasks_blocked()
    assert await _log_of(b) == [tp.TableTransfer(t, a, "heir-data")]
    assert t.owner is b
    assert t.items() == [(1, "a"), (2, "b"), (3, "c")]
    assert tp.whereis_table("inherit-me") is t  # the name goes with the table
    await run_in(b, lambda: t.insert(1, "z"))
    assert t.lookup_all(1) == ["a", "z"]


async def test_heir_given_at_creation(servers: Any) -> None:
    a, b, _ = servers
    t = await run_in(a, lambda: filled("set", heir=b))
    assert t.heir is b
    await a.stop()
    await trio.testing.wait_all_tasks_blocked()
    assert await _log_of(b) == [tp.TableTransfer(t, a, None)]
    assert t.owner is b
    assert len(t) == 3


async def test_heir_of_a_table_owned_by_a_supervised_child(nursery: trio.Nursery) -> None:
    heir = await tp.start_server(nursery, Host, Log())
    async with tp.open_dynamic_supervisor() as dsup:
        ref = await dsup.start_child(tp.child(Host, Log()))
        t = await run_in(ref, lambda: filled("set", heir=heir))
        await dsup.terminate_child(ref)
    await trio.testing.wait_all_tasks_blocked()
    assert await _log_of(heir) == [tp.TableTransfer(t, ref, None)]
    assert t.owner is heir


async def test_set_heir_none_removes_the_heir(servers: Any) -> None:
    a, b, _ = servers
    t = await run_in(a, lambda: filled("set", heir=b))
    await run_in(a, lambda: t.set_heir(None))
    assert t.heir is None
    await a.stop()
    await trio.testing.wait_all_tasks_blocked()
    assert await _log_of(b) == []
    with pytest.raises(tp.TableDeleted):
        len(t)


async def test_stopped_heir_does_not_inherit(servers: Any) -> None:
    a, b, _ = servers
    t = await run_in(a, lambda: filled("set", heir=b, name="orphan"))
    await b.stop()
    await a.stop()
    await trio.testing.wait_all_tasks_blocked()
    with pytest.raises(tp.TableDeleted):
        t.items()
    assert tp.whereis_table("orphan") is None


async def test_set_heir_bad_value(servers: Any) -> None:
    a, _, _ = servers
    t = await run_in(a, lambda: tp.Table("set"))
    with pytest.raises(TypeError, match="'bob'"):
        await run_in(a, lambda: t.set_heir("bob"))
    assert t.heir is None


# ---------------------------------------------------------------- deletion

DELETED_USES: dict[str, Callable[[tp.Table], Any]] = {
    **READS,
    **WRITES,
    "delete_table": lambda t: t.delete_table(),
    "set_heir": lambda t: t.set_heir(None),
}


def assert_deleted(t: tp.Table) -> None:
    """Every use raises TableDeleted (t[k] = v on a bag may stay the TypeError it always is)."""
    for name, use in DELETED_USES.items():
        if name == "setitem" and t.kind in BAG_KINDS:
            with pytest.raises((TypeError, tp.TableDeleted)):
                use(t)
            continue
        with pytest.raises(tp.TableDeleted):
            use(t)
            pytest.fail(f"{name} worked on a deleted table")


async def test_owner_stops_without_heir_deletes_the_table(servers: Any) -> None:
    a, b, _ = servers
    t = await run_in(a, lambda: filled("ordered_set", name="gone", access="public"))
    await a.stop()
    await trio.testing.wait_all_tasks_blocked()
    assert_deleted(t)
    with pytest.raises(tp.TableDeleted):
        await run_in(b, lambda: t.insert(1, 2))
    with pytest.raises(tp.TableDeleted):
        await in_task(lambda: list(t))
    assert tp.whereis_table("gone") is None
    again = tp.Table("set", name="gone")  # the name is free
    assert tp.whereis_table("gone") is again
    assert issubclass(tp.TableDeleted, tp.PeeperError)


@pytest.mark.parametrize("kind", KINDS)
async def test_delete_table(kind: str) -> None:
    t = filled(kind, name=("del", kind))
    t.delete_table()
    assert_deleted(t)
    assert tp.whereis_table(("del", kind)) is None
    with pytest.raises(tp.TableDeleted, match=re.escape(repr(("del", kind)))):
        t.insert(1, 1)


async def test_delete_table_by_others(servers: Any) -> None:
    a, b, _ = servers
    protected = await run_in(a, lambda: filled("set"))
    with pytest.raises(tp.AccessError):
        await run_in(b, lambda: protected.delete_table())
    assert len(protected) == 3
    await run_in(a, lambda: protected.delete_table())
    with pytest.raises(tp.TableDeleted):
        len(protected)
    # a public table: anyone may write, so anyone may delete it
    public = await run_in(a, lambda: filled("set", access="public"))
    await run_in(b, lambda: public.delete_table())
    with pytest.raises(tp.TableDeleted):
        await run_in(a, lambda: public.insert(1, 1))


async def test_deleted_table_is_no_longer_owned(servers: Any) -> None:
    """A server that deleted its table and then stops hands nothing to the heir."""
    a, b, _ = servers
    t = await run_in(a, lambda: filled("set", heir=b))
    await run_in(a, lambda: t.delete_table())
    await a.stop()
    await trio.testing.wait_all_tasks_blocked()
    assert await _log_of(b) == []


# ---------------------------------------------------------------- crashes


@pytest.mark.parametrize("how", ["raise", "kill"])
async def test_keep_tables_crash_keeps_table_and_contents(servers: Any, how: str) -> None:
    a, b, _ = servers
    t = await run_in(a, lambda: filled("set", name="kept", heir=b, access="private"))

    def writes() -> None:
        t.insert(4, "written by the crashing callback")
        t.delete(1)

    if how == "raise":
        await crash(a, writes)
    else:
        await run_in(a, writes)
        a.kill()
        await trio.testing.wait_all_tasks_blocked()
        assert a.restarts == 1
    assert t.owner is a
    assert tp.whereis_table("kept") is t
    # tables are not transactional: the crashing callback's writes stay
    assert await run_in(a, lambda: t.items()) == [(2, "b"), (3, "c"), (4, "written by the crashing callback")]
    await run_in(a, lambda: t.insert(5, "after the restart"))
    assert await run_in(a, lambda: len(t)) == 4
    assert await _log_of(b) == []  # the heir got nothing


async def test_group_restart_keeps_the_tables_of_bystanders() -> None:
    async with tp.open_supervisor(
        tp.child(Host, Log(), id="owner"),
        tp.child(Host, Log(), id="crasher"),
        strategy="one_for_all",
    ) as sup:
        refs = {info.id: info.ref for info in sup.which_children()}
        owner, crasher = refs["owner"], refs["crasher"]
        t = await run_in(owner, lambda: filled("set", access="private"))
        await crash(crasher)
        await trio.testing.wait_all_tasks_blocked()
        assert owner.restarts == 1
        assert t.owner is owner
        assert await run_in(owner, lambda: t.items()) == [(1, "a"), (2, "b"), (3, "c")]
        await run_in(owner, lambda: t.insert(4, "d"))


async def test_keep_tables_false_crash_hands_the_table_to_the_heir(nursery: trio.Nursery) -> None:
    heir = await tp.start_server(nursery, Host, Log())
    a = await tp.start_server(nursery, FragileHost, Log())
    t = await run_in(a, lambda: filled("set", name="fragile"))
    await run_in(a, lambda: t.set_heir(heir, "on-crash"))
    await crash(a, lambda: t.insert(4, "d"))
    await trio.testing.wait_all_tasks_blocked()
    assert await _log_of(heir) == [tp.TableTransfer(t, a, "on-crash")]
    assert t.owner is heir
    assert t.items() == [(1, "a"), (2, "b"), (3, "c"), (4, "d")]  # writes of the crash stay
    assert tp.whereis_table("fragile") is t
    with pytest.raises(tp.AccessError):
        await run_in(a, lambda: t.insert(5, "e"))
    await run_in(heir, lambda: t.insert(5, "e"))
    assert len(t) == 5


async def test_keep_tables_false_crash_without_heir_deletes(nursery: trio.Nursery) -> None:
    a = await tp.start_server(nursery, Host, Log(), keep_tables=False)  # as a start option
    t = await run_in(a, lambda: filled("duplicate_bag", name="dropped", access="public"))
    await crash(a, lambda: t.insert(4, "d"))
    assert_deleted(t)
    assert tp.whereis_table("dropped") is None
    # the restarted server may make a table of the same name
    again = await run_in(a, lambda: tp.Table("set", name="dropped"))
    assert tp.whereis_table("dropped") is again
    assert again.owner is a


async def test_keep_tables_false_kill_deletes(nursery: trio.Nursery) -> None:
    a = await tp.start_server(nursery, FragileHost, Log())
    t = await run_in(a, lambda: filled("set"))
    a.kill()
    await trio.testing.wait_all_tasks_blocked()
    assert a.restarts == 1
    with pytest.raises(tp.TableDeleted):
        len(t)
    # the restarted server makes tables again
    t2 = await run_in(a, lambda: filled("set"))
    assert t2.owner is a


async def test_given_away_table_does_not_follow_its_old_owner(nursery: trio.Nursery) -> None:
    a = await tp.start_server(nursery, FragileHost, Log())
    b = await tp.start_server(nursery, Host, Log())
    t = await run_in(a, lambda: filled("set"))
    await run_in(a, lambda: t.give_away(b))
    await crash(a)
    await a.stop()
    assert t.owner is b
    assert len(t) == 3


# ---------------------------------------------------------------- names


async def test_named_tables() -> None:
    assert tp.whereis_table("nope") is None
    t = tp.Table("set", name="users")
    assert t.name == "users"
    assert tp.whereis_table("users") is t
    with pytest.raises(ValueError, match="'users'"):
        tp.Table("bag", name="users")
    assert tp.whereis_table("users") is t
    assert tp.Table("set").name is None
    assert tp.whereis_table(None) is None
    other = tp.Table("set", name=("users", 2))  # any hashable
    assert tp.whereis_table(("users", 2)) is other
    with pytest.raises(TypeError, match=re.escape("['un', 'hashable']")):
        tp.Table("set", name=["un", "hashable"])
    t.delete_table()
    assert tp.whereis_table("users") is None
    t2 = tp.Table("ordered_set", name="users")
    assert tp.whereis_table("users") is t2


async def test_named_table_is_found_from_servers_and_tasks(servers: Any) -> None:
    a, b, _ = servers
    t = await run_in(a, lambda: tp.Table("set", name="shared", access="public"))
    assert await in_task(lambda: tp.whereis_table("shared")) is t
    found = await run_in(b, lambda: tp.whereis_table("shared"))
    assert found is t
    await run_in(b, lambda: found.insert("k", "from b"))
    assert t["k"] == "from b"
    with pytest.raises(ValueError, match="'shared'"):
        await run_in(b, lambda: tp.Table("set", name="shared"))


# ---------------------------------------------------------------- bad input


async def test_bad_kind() -> None:
    with pytest.raises(ValueError, match="'sett'"):
        tp.Table("sett")
    with pytest.raises(ValueError, match="3"):
        tp.Table(3)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="'sett'"):
        tp.Table("sett", name="bad-kind")
    assert tp.whereis_table("bad-kind") is None


async def test_bad_access() -> None:
    with pytest.raises(ValueError, match="'open'"):
        tp.Table("set", access="open")
    with pytest.raises(ValueError, match="'open'"):
        tp.Table("set", access="open", name="bad-access")
    assert tp.whereis_table("bad-access") is None


async def test_bad_heir() -> None:
    with pytest.raises(TypeError, match="'bob'"):
        tp.Table("set", heir="bob")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="heir"):
        tp.Table("set", heir=trio.lowlevel.current_task(), name="bad-heir")  # type: ignore[arg-type]
    assert tp.whereis_table("bad-heir") is None


async def test_table_is_not_an_attribute_bag() -> None:
    t = tp.Table("set")
    with pytest.raises(AttributeError):
        t.anything = 1  # type: ignore[attr-defined]
    assert "set" in repr(t)
