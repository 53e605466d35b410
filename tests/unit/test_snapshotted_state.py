"""Snapshotted objects in a preserving server's state (API.md section 6 "Preservation").

A state holding a ``deque``, a ``Counter``, a ``defaultdict(list)`` and an
instance of a ``@tp.snapshotted`` class: a callback that changes them all in
place and then fails leaves exactly the last committed values (the same
objects); a callback that returns commits them; listeners and callers get
independent copies. And a property (STYLE.md S8.3): for random sequences of
adds, crashes and reads, the preserved deque + Counter state is always the
model that applies only the operations whose callbacks returned.

Every async test runs on an autojump MockClock (tests/conftest.py); the
property test runs its own ``trio.run`` on a fresh one per example.
"""

from __future__ import annotations

import collections
from typing import Any

import pytest
import trio
import trio.testing
from hypothesis import given, settings
from hypothesis import strategies as st

import trio_peeper as tp

settle = trio.testing.wait_all_tasks_blocked


@tp.snapshotted
class Quota:
    """A plain class of the user's, snapshotted by its attributes."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.used = 0
        self.history: list[str] = []

    def __eq__(self, other: object) -> bool:
        return type(other) is Quota and vars(self) == vars(other)

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"Quota({vars(self)!r})"


def initial() -> dict[str, Any]:
    """A fresh state (objects given to a server become its state: never share them)."""
    return {
        "recent": collections.deque(["boot"], maxlen=3),
        "hits": collections.Counter(boot=1),
        "groups": collections.defaultdict(list, boot=[0]),
        "quota": Quota(10),
    }


def mutate(state: dict[str, Any], tag: str) -> None:
    """Change every snapshotted object of *state* in place (the server and the model run this)."""
    state["recent"].append(tag)
    state["hits"][tag] += 1
    state["groups"][tag].append(len(state["recent"]))  # the factory's list, then appended to
    quota = state["quota"]
    quota.used += 1
    quota.history.append(tag)
    quota.last = tag  # an attribute added


def picture(state: dict[str, Any]) -> dict[str, Any]:
    """Everything that matters, in plain values (``==`` on a Counter ignores zero counts, on a deque its maxlen)."""
    recent, hits, groups, quota = state["recent"], state["hits"], state["groups"], state["quota"]
    assert type(recent) is collections.deque and type(hits) is collections.Counter
    assert type(groups) is collections.defaultdict and type(quota) is Quota
    return {
        "recent": (list(recent), recent.maxlen),
        "hits": dict(hits),
        "groups": (groups.default_factory, {k: list(v) for k, v in groups.items()}),
        "quota": {k: list(v) if isinstance(v, list) else v for k, v in vars(quota).items()},
    }


def model(*tags: str) -> dict[str, Any]:
    """What the state is after the returning callbacks that applied *tags*."""
    state = initial()
    for tag in tags:
        mutate(state, tag)
    return picture(state)


class Keeper(tp.GenServer):
    async def handle_call(self, request: Any, caller: object, state: Any) -> object:
        match request:
            case "get":
                return tp.Reply(state, state)
            case "recent":
                return tp.Reply(state["recent"], state)
            case "peek":  # reads only
                return tp.Reply(state["hits"]["boot"], state)
            case ("only", key):  # changes one object alone
                ONLY[key](state[key])
                return tp.Reply("ok", state)
            case ("add", tag):
                mutate(state, tag)
                return tp.Reply("ok", state)
            case ("fail", tag, how):
                mutate(state, tag)
                return await fail(how)
        raise AssertionError(request)

    async def handle_cast(self, message: Any, state: Any) -> object:
        match message:
            case ("add", tag):
                mutate(state, tag)
                return tp.NoReply(state)
            case ("fail", tag, how):
                mutate(state, tag)
                return await fail(how)
        raise AssertionError(message)


ONLY = {
    "recent": lambda d: d.rotate(1),
    "hits": lambda c: c.subtract(["boot"]),
    "groups": lambda g: g["boot"].append(1),
    "quota": lambda q: setattr(q, "used", q.used + 1),
}


class Boom(Exception):
    pass


async def fail(how: str) -> object:
    if how == "raise":
        raise Boom("after changing every object in place")
    await trio.sleep_forever()  # "kill": the test kills the server here
    raise AssertionError("unreachable")


def live_objects(ref: tp.ServerRef) -> list[int]:
    state = ref._keeper.state
    return [id(state[key]) for key in ("recent", "hits", "groups", "quota")]


# ---------------------------------------------------------------- crashes


@pytest.mark.parametrize("how", ["raise", "kill"])
@pytest.mark.parametrize("where", ["call", "cast"])
async def test_a_failed_callback_leaves_exactly_the_last_committed_objects(where: str, how: str) -> None:
    async with tp.open_dynamic_supervisor(max_restarts=10) as dsup:
        ref = await dsup.start_child(tp.child(Keeper, initial()))
        assert await ref.call(("add", "one")) == "ok"
        assert picture(await ref.call("get")) == model("one")
        objects = live_objects(ref)
        commits = ref.statistics().state_commits
        outcome: list[BaseException] = []

        async def call() -> None:
            with pytest.raises(tp.ServerExited) as info:
                await ref.call(("fail", "two", how))
            outcome.append(info.value)

        async with trio.open_nursery() as nursery:
            if where == "call":
                nursery.start_soon(call)
            else:
                await ref.cast(("fail", "two", how))
            await settle()
            if how == "kill":
                # mid-callback: the changes are visible in the live state, then the kill
                assert picture(ref._keeper.state) == model("one", "two")
                ref.kill()
        await settle()

        if where == "call":
            (err,) = outcome
            assert type(err.__cause__) is (Boom if how == "raise" else type(None))
        assert ref.restarts == 1
        assert ref.statistics().state_commits == commits
        assert live_objects(ref) == objects  # restored in place: the very same objects
        assert picture(ref._keeper.state) == model("one")
        assert picture(await ref.call("get")) == model("one")
        # still tracked after the restart: the next change commits, the next crash rolls back
        await ref.cast(("add", "three"))
        with pytest.raises(tp.ServerExited):
            await ref.call(("fail", "four", "raise"))
        assert picture(await ref.call("get")) == model("one", "three")


async def test_a_cast_that_returns_commits_its_changes_to_every_object() -> None:
    async with tp.open_dynamic_supervisor() as dsup:
        ref = await dsup.start_child(tp.child(Keeper, initial()))
        objects = live_objects(ref)
        for tag in ("a", "b", "c", "d"):  # the deque's maxlen drops the oldest
            await ref.cast(("add", tag))
        await settle()
        assert ref.statistics().state_commits == 4
        assert picture(await ref.call("get")) == model("a", "b", "c", "d")
        assert list(ref._keeper.state["recent"]) == ["b", "c", "d"]
        ref.kill()  # committed: it survives
        await settle()
        assert picture(await ref.call("get")) == model("a", "b", "c", "d")
        assert live_objects(ref) == objects
        # the factory's lists and the Quota's history are tracked containers now
        state = ref._keeper.state
        with pytest.raises(RuntimeError, match="outside its callbacks"):
            state["groups"]["a"].append("outside")
        with pytest.raises(RuntimeError, match="outside its callbacks"):
            state["quota"].history.append("outside")


# --------------------------------------------------------- copies for others


class Changes:
    """A listener keeping what ``on_state_changed`` got, and scribbling on it at once."""

    def __init__(self) -> None:
        self.got: list[tuple[Any, Any]] = []

    def on_state_changed(self, old: Any, new: Any) -> None:
        self.got.append((picture(old), picture(new)))
        for state in (old, new):  # copies: changing them must not reach the server
            state["recent"].append("listener")
            state["hits"]["listener"] += 1
            state["groups"]["listener"].append(1)
            state["quota"].used = -1
            state["quota"].history.append("listener")


async def test_on_state_changed_gets_independent_copies_of_the_objects() -> None:
    listener = Changes()
    async with tp.open_dynamic_supervisor() as dsup:
        ref = await dsup.start_child(tp.child(Keeper, initial(), listener=listener))
        live = ref._keeper.state
        await ref.call(("add", "one"))
        await ref.cast(("add", "two"))
        await ref.call("peek")  # nothing changed: no call
        assert picture(await ref.call("get")) == model("one", "two")
        assert listener.got == [(model(), model("one")), (model("one"), model("one", "two"))]
        assert ref.restarts == 0
        # the listener's copies are the server's objects' types, with maxlen and factory
        old, new = [], []

        class Keep:
            def on_state_changed(self, o: Any, n: Any) -> None:
                old.append(o)
                new.append(n)

        other = await dsup.start_child(tp.child(Keeper, initial(), listener=Keep()))
        await other.call(("add", "x"))
        (o,), (n,) = old, new
        for copy in (o, n):
            assert copy["recent"] is not other._keeper.state["recent"]
            assert copy["recent"].maxlen == 3 and copy["groups"].default_factory is list
            assert copy["quota"] is not other._keeper.state["quota"]
            assert type(copy["quota"].history) is list  # plain, not tracked
        n["quota"].history.append("later")
        n["recent"].clear()
        assert picture(await other.call("get")) == model("x")
        assert ref._keeper.state is live


@pytest.mark.parametrize("key", sorted(ONLY))
async def test_a_change_to_one_object_alone_is_a_state_change(key: str) -> None:
    listener = Changes()
    async with tp.open_dynamic_supervisor() as dsup:
        ref = await dsup.start_child(tp.child(Keeper, initial(), listener=listener))
        await ref.call(("add", "one"))
        await ref.call(("only", key))
        expected = initial()
        mutate(expected, "one")
        before = picture(expected)
        ONLY[key](expected[key])
        assert [new for _, new in listener.got] == [model("one"), picture(expected)]
        assert listener.got[1][0] == before
        ref.kill()
        assert picture(await ref.call("get")) == picture(expected)


async def test_a_reply_holding_the_deque_is_a_copy() -> None:
    async with tp.open_dynamic_supervisor() as dsup:
        ref = await dsup.start_child(tp.child(Keeper, initial()))
        await ref.call(("add", "one"))
        recent = await ref.call("recent")
        assert type(recent) is collections.deque and recent.maxlen == 3
        assert list(recent) == ["boot", "one"]
        assert recent is not ref._keeper.state["recent"]
        recent.append("caller")  # a plain copy: no RuntimeError, no effect on the server
        whole = await ref.call("get")
        whole["quota"].used = 1000
        whole["groups"]["one"].append("caller")
        assert whole["quota"] is not ref._keeper.state["quota"]
        assert picture(await ref.call("get")) == model("one")


async def test_a_server_stopped_for_good_lets_go_of_its_objects() -> None:
    async with tp.open_dynamic_supervisor() as dsup:
        ref = await dsup.start_child(tp.child(Keeper, initial()))
        await ref.call(("add", "one"))
        journal = ref._keeper.journal
        assert len(journal._objs) == 4  # the deque, the Counter, the defaultdict, the Quota
        await ref.stop()
        assert journal._objs == {} and journal.root is None  # nothing kept alive by the ref


# ------------------------------------------------------------------ property

OPS = st.one_of(
    st.tuples(st.just("add"), st.sampled_from("abc")),
    st.tuples(st.just("cast_add"), st.sampled_from("abc")),
    st.tuples(st.sampled_from(["crash_raise", "crash_kill", "cast_crash"]), st.sampled_from("abc")),
    st.tuples(st.just("kill_idle"), st.just("")),
    st.tuples(st.just("get"), st.just("")),
)


class Tally(tp.GenServer):
    """A deque of the last four tags and a Counter of all of them."""

    async def handle_call(self, request: Any, caller: object, state: Any) -> object:
        if request == "get":
            return tp.Reply(state, state)
        op, tag = request
        state["last"].append(tag)
        state["count"][tag] += 1
        if op == "crash_raise":
            raise Boom(tag)
        if op == "crash_kill":
            await trio.sleep_forever()
        return tp.Reply(len(state["last"]), state)

    async def handle_cast(self, message: Any, state: Any) -> object:
        op, tag = message
        state["last"].append(tag)
        state["count"][tag] += 1
        if op == "cast_crash":
            raise Boom(tag)
        return tp.NoReply(state)


def tally_picture(state: Any) -> tuple[Any, ...]:
    assert type(state["last"]) is collections.deque and type(state["count"]) is collections.Counter
    return list(state["last"]), state["last"].maxlen, dict(state["count"])


@settings(deadline=None, max_examples=50)
@given(st.data())
def test_the_preserved_objects_are_what_the_returning_callbacks_made(data: st.DataObject) -> None:
    trio.run(_drive, data, clock=trio.testing.MockClock(autojump_threshold=0))


async def _drive(data: st.DataObject) -> None:
    last: collections.deque[str] = collections.deque(maxlen=4)
    count: collections.Counter[str] = collections.Counter()
    failures = 0
    async with tp.open_dynamic_supervisor(max_restarts=1000, max_seconds=1.0) as dsup:
        ref = await dsup.start_child(tp.child(Tally, {"last": collections.deque(maxlen=4), "count": collections.Counter()}))
        objects = [id(ref._keeper.state["last"]), id(ref._keeper.state["count"])]
        for op, tag in data.draw(st.lists(OPS, min_size=1, max_size=20), label="ops"):
            if op == "get":
                assert tally_picture(await ref.call("get")) == (list(last), 4, dict(count))
                continue
            if op == "kill_idle":
                ref.kill()
                await settle()
                failures += 1
            elif op in ("cast_add", "cast_crash"):
                await ref.cast((op, tag))
                await settle()
                failures += op == "cast_crash"
            else:
                got: list[object] = []

                async def client(op: str = op, tag: str = tag) -> None:
                    try:
                        got.append(await ref.call((op, tag)))
                    except tp.ServerExited as e:
                        got.append(e)

                async with trio.open_nursery() as nursery:
                    nursery.start_soon(client)
                    await settle()
                    if op == "crash_kill":
                        ref.kill()
                await settle()
                (reply,) = got
                if op == "add":
                    assert reply == min(len(last) + 1, 4)
                else:
                    assert isinstance(reply, tp.ServerExited)
                    assert type(reply.__cause__) is (Boom if op == "crash_raise" else type(None))
                    failures += 1
            if op in ("add", "cast_add"):  # the model takes only what returned
                last.append(tag)
                count[tag] += 1
            assert ref.restarts == failures
            assert [id(ref._keeper.state["last"]), id(ref._keeper.state["count"])] == objects
            assert tally_picture(ref._keeper.state) == (list(last), 4, dict(count))
        assert tally_picture(await ref.call("get")) == (list(last), 4, dict(count))
