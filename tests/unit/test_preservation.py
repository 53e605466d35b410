"""State preservation (API.md sections 6 and 10 "Preservation").

The first half ports the scenarios of Elixir Peeper's own suite (``test/peeper_test.exs``:
crash kinds, state + tables + process dictionary after a kill, rapid and repeated crashes,
concurrent clients, empty and large states, the restart limit). The second half covers
what Peeper does not test: a callback that mutated nested containers in place and then
failed (raise, invalid return, kill) leaves exactly the last committed state, the same
container objects included; the restart limit ends preservation; ``preserve=False``;
replies are detached copies; the state cannot be changed outside a callback; value
semantics; ``statistics().state_commits``.

Every trio test runs on an autojump MockClock (tests/conftest.py).
"""

from __future__ import annotations


import pytest
import trio
import trio.testing

import trio_peeper as tp
from _shared import Log

settle = trio.testing.wait_all_tasks_blocked

# ----------------------------------------------------------------- servers

TABLE_ROWS = [("a", 42), ("b", "foo"), ("c", (42, "foo"))]


class Full(tp.GenServer):
    """A counterpart of Peeper's ``Peeper.Impls.Full`` test server.

    ``init(state, table=None)``: the state is *state*; with *table*, ``init`` also makes an
    ordered_set of that name (so a restart that ran ``init`` again would fail on the name).
    """

    async def init(self, state, table=None):
        if table is not None:
            tp.Table("ordered_set", name=table).insert_many(TABLE_ROWS)
        return state

    async def handle_call(self, request, caller, state):
        match request:
            case "state":
                return tp.Reply(state, state)
            case ("pd_get", key):
                return tp.Reply(tp.pdict().get(key), state)
            case ("table", name):
                return tp.Reply(tp.whereis_table(name).items(), state)
            case ("add", n):
                return tp.Reply(state + n, state + n)
            case "raise":
                raise RuntimeError("boom in call")
            case ("stop", reason):
                return tp.Stop(reason, state)
            case "invalid":
                return state  # a forgotten tp.Reply
        raise AssertionError(request)

    async def handle_cast(self, message, state):
        match message:
            case "inc":
                return tp.NoReply(state, continue_="inc")
            case ("pd_set", key, value):
                tp.pdict()[key] = value
                return tp.NoReply(state)
            case ("table", name, heir):
                tp.Table("ordered_set", name=name, heir=heir).insert_many(TABLE_ROWS)
                return tp.NoReply(state)
            case "raise":
                raise RuntimeError("boom in cast")
            case "raise_in_continue":
                return tp.NoReply(state, continue_="raise")
            case ("stop", reason):
                return tp.Stop(reason, state)
        raise AssertionError(message)

    async def handle_info(self, message, state):
        if message == "inc":
            return tp.NoReply(state + 1)
        if message == "raise":
            raise RuntimeError("boom in info")
        return tp.NoReply(state)

    async def handle_continue(self, arg, state):
        if arg == "inc":
            return tp.NoReply(state + 1)
        raise RuntimeError("boom in continue")


def full(state, *, name="full", **options):
    return tp.child(Full, state, id=name, name=name, **options)


# ------------------------------------------------ ported from Peeper's suite


async def test_calls_casts_and_sends_work_and_the_state_survives_a_crash():
    async with tp.open_supervisor(full(0, name="p1")):
        ref = tp.whereis("p1")
        assert await ref.call("state") == 0
        await ref.cast("inc")  # a cast whose handle_continue increments
        assert await tp.call("p1", "state") == 1
        ref.kill()
        assert await tp.call("p1", "state") == 1
        await ref.send("inc")
        assert await tp.call("p1", "state") == 2
        assert ref.restarts == 1


async def crash(ref, kind):
    """Make *ref*'s current incarnation end in the way *kind* names."""
    if kind == "kill":
        ref.kill()
    elif kind == "raise_in_call":
        with pytest.raises(tp.ServerExited) as info:
            await ref.call("raise")
        assert isinstance(info.value.__cause__, RuntimeError)
    elif kind == "invalid_return":
        with pytest.raises(tp.ServerExited) as info:
            await ref.call("invalid")
        assert isinstance(info.value.__cause__, tp.InvalidReturn)
    elif kind == "raise_in_cast":
        await ref.cast("raise")
    elif kind == "raise_in_info":
        await ref.send("raise")
    elif kind == "raise_in_continue":
        await ref.cast("raise_in_continue")
    else:  # a tp.Stop returned by a callback is an exit like any other
        reasons = {"normal": "normal", "shutdown": tp.SHUTDOWN, "shutdown_info": tp.Shutdown("test")}
        reason = reasons[kind]
        with pytest.raises(tp.ServerExited) as info:
            await ref.call(("stop", reason))
        assert info.value.reason == reason
    await settle()


CRASH_KINDS = [
    "kill",
    "normal",
    "shutdown",
    "shutdown_info",
    "raise_in_call",
    "raise_in_cast",
    "raise_in_info",
    "raise_in_continue",
    "invalid_return",
]


@pytest.mark.parametrize("kind", CRASH_KINDS)
async def test_every_kind_of_exit_restarts_a_permanent_child_with_its_state(kind):
    async with tp.open_supervisor(full(42, name="crash_test")):
        ref = tp.whereis("crash_test")
        await ref.cast("inc")
        assert await ref.call("state") == 43
        await crash(ref, kind)
        assert ref.alive
        assert ref.restarts == 1
        assert tp.whereis("crash_test") is ref
        assert await tp.call("crash_test", "state") == 43


async def test_one_server_survives_every_kind_of_exit_in_turn():
    async with tp.open_supervisor(full(42, name="crash_test"), max_restarts=len(CRASH_KINDS)):
        ref = tp.whereis("crash_test")
        for n, kind in enumerate(CRASH_KINDS, 1):
            await crash(ref, kind)
            assert ref.restarts == n
            assert await tp.call("crash_test", "state") == 42, kind


async def test_a_raise_in_a_callback_keeps_the_state_the_name_and_the_ref():
    async with trio.open_nursery() as nursery:
        ref = await tp.start_server(nursery, Full, 0, name="raise_crash")
        with pytest.raises(tp.ServerExited) as info:
            await ref.call("raise")
        assert info.value.reason is info.value.__cause__
        assert str(info.value.__cause__) == "boom in call"
        assert await tp.call("raise_crash", "state") == 0
        assert tp.whereis("raise_crash") is ref
        assert ref.restarts == 1
        await ref.stop()


async def test_state_tables_and_process_dictionary_survive_a_kill():
    async with tp.open_dynamic_supervisor() as dsup:
        ref = await dsup.start_child(full(0, name="p3", keep_tables=True))
        await ref.cast(("table", "my_table", None))
        await ref.cast(("table", "my_heired_table", ref))  # its own heir, as Peeper's test
        await ref.cast(("pd_set", "foo", 42))
        await ref.cast("inc")
        assert await tp.call("p3", "state") == 1
        tables = [tp.whereis_table("my_table"), tp.whereis_table("my_heired_table")]

        ref.kill()
        assert await tp.call("p3", "state") == 1
        assert await tp.call("p3", ("pd_get", "foo")) == 42
        assert await tp.call("p3", ("table", "my_table")) == TABLE_ROWS
        assert await tp.call("p3", ("table", "my_heired_table")) == TABLE_ROWS
        # the very same tables, still owned by the same ref (nothing was copied)
        assert [tp.whereis_table("my_table"), tp.whereis_table("my_heired_table")] == tables
        assert all(t.owner is ref for t in tables)
        assert ref.restarts == 1


async def test_a_table_made_in_init_survives_because_a_restart_does_not_run_init():
    async with tp.open_supervisor(tp.child(Full, 0, "all_tables", id="x")) as sup:
        (info,) = sup.which_children()
        ref = info.ref
        ref.kill()
        await settle()
        # init ran once: a second Table("all_tables") would have raised ValueError
        assert ref.alive
        assert ref.restarts == 1
        assert await ref.call(("table", "all_tables")) == TABLE_ROWS


async def test_process_dictionary_keys_of_every_kind_survive_a_kill():
    keys = ["erlang_system_key", (1, 2, 3), frozenset({"a", "b"}), 3.5, None]
    async with tp.open_supervisor(full(0, name="pd_test")):
        ref = tp.whereis("pd_test")
        for key in keys:
            await ref.cast(("pd_set", key, f"value_for_{key!r}"))
        for key in keys:
            assert await ref.call(("pd_get", key)) == f"value_for_{key!r}"
        ref.kill()
        for key in keys:
            assert await ref.call(("pd_get", key)) == f"value_for_{key!r}"


async def test_rapid_crashes_keep_the_state_and_queued_casts():
    async with tp.open_supervisor(full(0, name="nested"), max_restarts=100):
        ref = tp.whereis("nested")
        for _ in range(5):  # crashes in quick succession with no change
            ref.kill()
            await trio.sleep(0.005)
        assert await ref.call("state") == 0
        for _ in range(5):  # a cast, then a kill before the server even saw it
            await ref.cast("inc")
            ref.kill()
        # the kill wins over queued messages, and the next incarnation handles them
        assert await ref.call("state") == 5
        # a kill that lands while the server is between incarnations does nothing
        assert 6 <= ref.restarts <= 10


async def test_many_crashes_in_a_loop_never_lose_a_committed_change():
    iterations = 50
    async with tp.open_supervisor(full(0, name="stress"), max_restarts=iterations):
        ref = tp.whereis("stress")
        await ref.cast("inc")
        assert await ref.call("state") == 1
        ref.kill()
        for i in range(2, iterations + 1):
            assert await ref.call("state") == i - 1
            await ref.cast("inc")
            assert await ref.call("state") == i
            ref.kill()
        assert await tp.call("stress", "state") == iterations
        assert ref.restarts == iterations


async def test_concurrent_clients_while_the_server_is_killed_again_and_again():
    tasks, per_task = 20, 5
    replies = []
    async with tp.open_supervisor(full(0, name="concurrent"), max_restarts=1000):
        ref = tp.whereis("concurrent")

        async def caster(t):
            for j in range(per_task):
                await tp.cast("concurrent", "inc")  # cast + continue: two commits
                await trio.sleep(((t * 7 + j) % 10 + 1) / 1000)

        async def caller(t):
            for j in range(per_task):
                replies.append(await ref.call(("add", 1)))
                await trio.sleep(((t * 3 + j) % 10 + 1) / 1000)

        async def killer():
            for _ in range(30):
                await trio.sleep(0.002)
                ref.kill()

        async with trio.open_nursery() as nursery:
            for t in range(tasks):
                nursery.start_soon(caster, t)
                nursery.start_soon(caller, t)
            nursery.start_soon(killer)

        expected = 2 * tasks * per_task
        # no handler awaits, so a kill never interrupts one: every message is handled once
        assert await ref.call("state") == expected
        assert len(replies) == tasks * per_task
        assert len(set(replies)) == len(replies)  # each call saw its own increment
        assert 1 <= ref.restarts <= 30  # a kill between incarnations does nothing
        ref.kill()
        assert await ref.call("state") == expected


@pytest.mark.parametrize("empty", [None, {}, [], set(), (), "", 0], ids=repr)
async def test_empty_and_none_states_survive_a_kill(empty):
    async with tp.open_supervisor(full(empty, name="empty")):
        ref = tp.whereis("empty")
        assert await ref.call("state") == empty
        ref.kill()
        state = await ref.call("state")
        assert state == empty
        assert type(state) is type(empty)


class Big(tp.GenServer):
    async def handle_call(self, request, caller, state):
        match request:
            case "state":
                return tp.Reply(state, state)
            case "len":
                return tp.Reply(len(state), state)
            case ("get", key):
                return tp.Reply(state[key], state)
            case ("set", key, value):
                state[key] = value
                return tp.Reply(None, state)
            case "mutate_then_raise":
                state["k0"] = "changed"
                del state["k1"]
                state["extra"] = [1, 2, 3]
                state["k99999"] = None
                raise RuntimeError("after changing 4 keys of 100000")
        raise AssertionError(request)


async def test_a_large_state_survives_kills_and_rolled_back_raises():
    big = {f"k{i}": i for i in range(100_000)}
    async with tp.open_dynamic_supervisor() as dsup:
        ref = await dsup.start_child(tp.child(Big, big))
        await ref.call(("set", "k5", "five"))
        big["k5"] = "five"
        ref.kill()
        assert await ref.call("len") == 100_000
        assert await ref.call(("get", "k5")) == "five"
        with pytest.raises(tp.ServerExited):
            await ref.call("mutate_then_raise")
        assert ref._keeper.state == big
        assert await ref.call("state") == big
        assert ref.restarts == 2


async def test_a_large_list_state_survives_a_kill():
    large = list(range(10_000))
    async with tp.open_supervisor(full(large, name="large")):
        ref = tp.whereis("large")
        assert await ref.call("state") == large
        ref.kill()
        assert await ref.call("state") == large


class SlowRestore(tp.GenServer):
    """``restore`` takes a second of (virtual) time; records what it got in its log."""

    async def init(self, log, n):
        return {"log": log, "n": n}

    async def restore(self, state):
        state["log"].append(("restore", state["n"], tp.current_server().restarts))
        await trio.sleep(1)
        state["n"] += 1000  # restore may change the state (a transaction, committed)
        return tp.Init(state, continue_="restored")

    async def handle_continue(self, arg, state):
        state["log"].append(("continue", arg, state["n"]))
        return tp.NoReply(state)

    async def handle_call(self, request, caller, state):
        if request == "n":
            return tp.Reply((state["n"], trio.current_time()), state)
        if request == "crash":
            state["n"] = -1
            raise RuntimeError("crash")
        state["n"] += request
        return tp.Reply(state["n"], state)

    async def handle_cast(self, message, state):
        state["n"] += message
        return tp.NoReply(state)


async def test_restore_gets_the_preserved_state_and_its_changes_commit():
    log = Log()
    async with tp.open_dynamic_supervisor() as dsup:
        ref = await dsup.start_child(tp.child(SlowRestore, log, 1))
        assert await ref.call(5) == 6
        with pytest.raises(tp.ServerExited):
            await ref.call("crash")  # its n = -1 is rolled back before restore sees the state
        assert await ref.call("n") == (1006, 1.0)
        assert log == [("restore", 6, 1), ("continue", "restored", 1006)]
        assert ref.statistics().restarts == 1


async def test_messages_sent_during_a_restart_are_answered_by_the_next_incarnation():
    log = Log()
    async with tp.open_dynamic_supervisor() as dsup:
        ref = await dsup.start_child(tp.child(SlowRestore, log, 0))
        ref.kill()
        await settle()
        assert not ref.alive  # restore is sleeping
        assert [c.status for c in dsup.which_children()] == ["restarting"]
        results = []

        async def client(i):
            results.append(await ref.call(i))

        async with trio.open_nursery() as nursery:
            for i in (1, 2, 3):
                nursery.start_soon(client, i)
                await settle()
            await ref.cast(10)
        assert ref.alive
        assert sorted(results) == [1001, 1003, 1006]
        assert await ref.call("n") == (1016, 1.0)
        assert log == [("restore", 0, 1), ("continue", "restored", 1000)]


class Recorder(tp.GenServer):
    """State ``{"log": Log, "gate": trio.Event, ...}``; every handled message is logged."""

    async def init(self, log, gate):
        return {"log": log, "gate": gate, "n": 0}

    async def handle_call(self, request, caller, state):
        state["log"].append(("call", request))
        if request == "boom":
            state["n"] = "half-done"
            raise RuntimeError("boom")
        if request == "stop":
            return tp.Stop("normal", state)
        return tp.Reply(state["n"], state)

    async def handle_cast(self, message, state):
        state["log"].append(("cast", message))
        if message == "hold":
            await state["gate"].wait()
        elif message == "stop":
            return tp.Stop("normal", state)
        elif isinstance(message, tuple):
            tp.pdict()[message] = True
        else:
            state["n"] += 1
        return tp.NoReply(state)

    async def handle_info(self, message, state):
        state["log"].append(("info", message))
        state["n"] += 1
        return tp.NoReply(state)


async def test_mailbox_messages_queued_before_a_crash_are_handled_after_it():
    log, gate = Log(), trio.Event()
    outcomes = {}

    async def client(request):
        try:
            outcomes[request] = await ref.call(request)
        except tp.ServerExited as e:
            outcomes[request] = e

    async with tp.open_dynamic_supervisor() as dsup:
        ref = await dsup.start_child(tp.child(Recorder, log, gate))
        async with trio.open_nursery() as nursery:
            await ref.cast("hold")
            await settle()
            # while the server is held, queue: cast, a crashing call, cast, info, call
            ref.cast_nowait("a")
            nursery.start_soon(client, "boom")
            await settle()
            ref.cast_nowait("b")
            ref.send_nowait("c")
            nursery.start_soon(client, "get")
            await settle()
            assert ref.statistics().mailbox_len == 5
            gate.set()
        err = outcomes["boom"]
        assert isinstance(err, tp.ServerExited)
        assert isinstance(err.__cause__, RuntimeError)
        assert err.reason is err.__cause__
        assert outcomes["get"] == 3  # a, b and c; the crash's "half-done" was rolled back
        # the crashing message was handled once and not redelivered; the rest after it
        assert log == [
            ("cast", "hold"),
            ("cast", "a"),
            ("call", "boom"),
            ("cast", "b"),
            ("info", "c"),
            ("call", "get"),
        ]
        assert ref.restarts == 1


async def test_a_stop_for_good_drops_the_queued_messages():
    log, gate = Log(), trio.Event()
    outcomes = {}

    async def client(request):
        try:
            outcomes[request] = await ref.call(request)
        except tp.ServerExited as e:
            outcomes[request] = e

    async with trio.open_nursery() as nursery:
        ref = await tp.start_server(nursery, Recorder, log, gate)
        await ref.cast("hold")
        await settle()
        # queued behind a normal exit (for good for a standalone server)
        ref.cast_nowait("stop")
        ref.cast_nowait("dropped")
        nursery.start_soon(client, "get")
        await settle()
        gate.set()
        assert await ref.wait_stopped() == "normal"
    assert isinstance(outcomes["get"], tp.ServerExited)
    assert outcomes["get"].reason == "normal"
    assert log == [("cast", "hold"), ("cast", "stop")]
    assert ref.statistics().mailbox_len == 0


async def test_everything_is_dropped_when_the_server_stops_for_good():
    async with trio.open_nursery() as nursery:
        ref = await tp.start_server(nursery, Full, 7, name="gone")
        await ref.cast(("pd_set", "k", "v"))
        await ref.cast(("table", "t", None))
        await ref.cast("inc")
        assert await ref.call("state") == 8
        table = tp.whereis_table("t")
        assert table.owner is ref
        await ref.stop()
        assert not ref._keeper.has_state
        assert ref._keeper.pdict is None
        assert tp.whereis("gone") is None
        assert tp.whereis_table("t") is None
        with pytest.raises(tp.TableDeleted):
            table.lookup("a")
        with pytest.raises(tp.NoProc):
            await ref.call("state")

        # a new server under the same name starts from init, with nothing of the old one
        new = await tp.start_server(nursery, Full, 0, name="gone")
        assert new is not ref
        assert await tp.call("gone", "state") == 0
        assert await new.call(("pd_get", "k")) is None
        assert new.restarts == 0
        assert new.statistics().state_commits == 2  # its own two calls only
        await new.stop()


# --------------------------------------------------- what Peeper does not test


def nested():
    return {
        "a": {"x": [1, 2], "s": {1, 2}},
        "b": [{"k": 1}, {"k": 2}],
        "c": {"deep": {"deeper": [1]}},
        "n": 0,
    }


def containers(state, path=()):
    """``{path: id(container)}`` for every dict, list and set in *state*."""
    out = {path: id(state)}
    if isinstance(state, dict):
        for k, v in state.items():
            if isinstance(v, (dict, list, set)):
                out.update(containers(v, (*path, k)))
    elif isinstance(state, list):
        for i, v in enumerate(state):
            if isinstance(v, (dict, list, set)):
                out.update(containers(v, (*path, i)))
    return out


def mutate(state):
    """In-place changes all over the tree (every kind of container, nested)."""
    state["a"]["x"].append(3)
    state["a"]["x"].sort(reverse=True)
    state["a"]["s"].add(9)
    state["a"]["s"].discard(1)
    state["b"][0]["k"] = 99
    state["b"].append({"k": 3})
    del state["c"]["deep"]
    state["c"]["other"] = {"z": []}
    state["n"] += 1
    state["new"] = [1]
    state.pop("a")


class Tree(tp.GenServer):
    """A nested state; ``("fail", how)`` mutates it in place all over, then fails as *how* says."""

    async def handle_call(self, request, caller, state):
        match request:
            case "state":
                return tp.Reply(state, state)
            case "part":
                return tp.Reply(state["a"], state)
            case "commit":
                state["b"][1]["k"] += 10  # a committed in-place change
                state["c"]["deep"]["deeper"].append(2)
                return tp.Reply("ok", state)
            case ("fail", how):
                mutate(state)
                return await fail(how, "handle_call", state)
            case "alias":
                state["copy"] = state["a"]  # value semantics: a copy is stored
                state["copy"]["x"].append("only in the copy")
                return tp.Reply(state["a"] is state["copy"], state)
            case "leak":
                state["log"].append(state["a"])  # a live reference escapes (don't do this)
                return tp.Reply(None, state)
            case "deferred":
                state["log"].append(caller)
                return tp.NoReply(state)
            case "stop":
                return tp.Stop("normal", state, reply=state)
        raise AssertionError(request)

    async def handle_cast(self, message, state):
        match message:
            case ("fail", how):
                mutate(state)
                return await fail(how, "handle_cast", state)
            case ("fail_in_continue", how):
                state["n"] += 100  # committed before handle_continue runs
                return tp.NoReply(state, continue_=how)
            case "answer_deferred":
                tp.reply(state["log"].pop(), state)
                return tp.NoReply(state)
        raise AssertionError(message)

    async def handle_info(self, message, state):
        _, how = message
        mutate(state)
        return await fail(how, "handle_info", state)

    async def handle_continue(self, how, state):
        mutate(state)
        return await fail(how, "handle_continue", state)


async def fail(how, where, state):
    if how == "raise":
        raise ValueError(f"{where} fails after mutating")
    if how == "kill":
        await trio.sleep_forever()  # the test kills the server here
    if how == "invalid":
        return ("not a tp.NoReply", state)
    raise AssertionError(how)


def tree_state(log=None):
    state = nested()
    if log is not None:
        state["log"] = log
    return state


class Crashes(Log):
    """A listener recording the exception of every crash."""

    __slots__ = ()

    def on_crash(self, exception, state):
        self.append(exception)


async def start_tree(dsup, *, log=None, **options):
    ref = await dsup.start_child(tp.child(Tree, tree_state(log), **options))
    assert await ref.call("commit") == "ok"
    committed = tree_state(log)
    committed["b"][1]["k"] = 12
    committed["c"]["deep"]["deeper"] = [1, 2]
    assert await ref.call("state") == committed
    return ref, committed


@pytest.mark.parametrize("how", ["raise", "invalid", "kill"])
@pytest.mark.parametrize("where", ["call", "cast", "info", "continue"])
async def test_a_failed_callback_leaves_exactly_the_last_committed_state(where, how):
    async with tp.open_dynamic_supervisor(max_restarts=10) as dsup:
        crashes = Crashes()
        ref, committed = await start_tree(dsup, listener=crashes)
        root = ref._keeper.state
        ids = containers(root)
        commits = ref.statistics().state_commits

        async with trio.open_nursery() as nursery:
            outcome = []

            async def call():
                with pytest.raises(tp.ServerExited) as info:
                    await ref.call(("fail", how))
                outcome.append(info.value)

            if where == "call":
                nursery.start_soon(call)
            elif where == "cast":
                await ref.cast(("fail", how))
            elif where == "info":
                await ref.send(("fail", how))
            else:
                await ref.cast(("fail_in_continue", how))
                committed["n"] += 100
                commits += 1
            await settle()
            if how == "kill":
                # mid-callback: the changes are visible in the live state, then the kill
                assert ref._keeper.state["n"] == committed["n"] + 1
                assert "a" not in ref._keeper.state
                ref.kill()
        await settle()

        if where == "call":
            (err,) = outcome
            if how == "kill":
                assert err.reason is tp.KILLED
                assert err.__cause__ is None
            else:
                assert isinstance(err.__cause__, ValueError if how == "raise" else tp.InvalidReturn)
        # the crash is the intended one (a kill is no exception: on_crash is not called)
        expected = {"raise": [ValueError], "invalid": [tp.InvalidReturn], "kill": []}[how]
        assert [type(e) for e in crashes] == expected
        assert ref.restarts == 1
        assert ref.statistics().state_commits == commits
        # the same root and the same containers, with exactly the committed contents
        assert ref._keeper.state is root
        assert containers(ref._keeper.state) == ids
        assert ref._keeper.state == committed
        assert await ref.call("state") == committed


class Continuing(tp.GenServer):
    """Changes its state in place in ``handle_continue`` (after init, a cast, a restore)."""

    async def init(self, state):
        return tp.Init(state, continue_="from init")

    async def restore(self, state):
        return tp.Init(state, continue_="from restore")

    async def handle_cast(self, message, state):
        return tp.NoReply(state, continue_=message)

    async def handle_continue(self, arg, state):
        state["log"].append(arg)
        state["n"] += 1
        return tp.NoReply(state)

    async def handle_call(self, request, caller, state):
        return tp.Reply(state, state)


async def test_handle_continue_may_change_the_state_in_place():
    # API.md section 6: every callback's changes commit when it returns normally
    async with tp.open_dynamic_supervisor() as dsup:
        ref = await dsup.start_child(tp.child(Continuing, {"log": [], "n": 0}))
        await ref.cast("from cast")
        await settle()
        ref.kill()
        state = await ref.call("state")
        assert state == {"log": ["from init", "from cast", "from restore"], "n": 3}
        assert ref.restarts == 1


async def test_a_kill_in_the_middle_of_an_awaiting_callback_rolls_back_a_standalone_server():
    async with trio.open_nursery() as nursery:
        ref = await tp.start_server(nursery, Tree, nested())
        ids = containers(ref._keeper.state)
        await ref.cast(("fail", "kill"))
        await settle()
        assert ref._keeper.state["n"] == 1  # the change is live while the callback awaits
        ref.kill()
        assert await ref.call("state") == nested()
        assert containers(ref._keeper.state) == ids
        await ref.stop()


async def test_restore_that_mutates_and_raises_is_rolled_back_and_retried():
    log = Log()

    class FlakyRestore(tp.GenServer):
        async def init(self):
            return {"items": [1], "log": log}

        async def restore(self, state):
            state["items"].append("from restore")
            state["log"].append(list(state["items"]))
            if len(state["log"]) == 1:
                raise RuntimeError("restore fails once")
            return state

        async def handle_call(self, request, caller, state):
            return tp.Reply(state["items"], state)

    async with tp.open_dynamic_supervisor(max_restarts=5) as dsup:
        ref = await dsup.start_child(tp.child(FlakyRestore))
        items = ref._keeper.state["items"]
        ref.kill()
        assert await ref.call("items") == [1, "from restore"]
        # the first restore's append was rolled back before the second one ran
        assert log == [[1, "from restore"], [1, "from restore"]]
        assert ref._keeper.state["items"] is items


async def test_terminate_changes_to_the_state_are_not_kept():
    log = Log()

    class Terminating(tp.GenServer):
        async def handle_call(self, request, caller, state):
            if request == "stop":
                state["n"] = 1  # committed with the tp.Stop
                return tp.Stop("normal", state)
            return tp.Reply(state, state)

        async def terminate(self, reason, state):
            state["n"] = "changed in terminate"
            state["items"].append("terminate")

        async def restore(self, state):
            log.append(dict(state, items=list(state["items"])))
            return state

    async with tp.open_dynamic_supervisor() as dsup:
        ref = await dsup.start_child(tp.child(Terminating, {"n": 0, "items": []}))
        with pytest.raises(tp.ServerExited):
            await ref.call("stop")  # a permanent child: restarted with its state
        assert await ref.call("state") == {"n": 1, "items": []}
        assert log == [{"n": 1, "items": []}]


async def test_the_restart_limit_ends_preservation():
    log = Log()
    with pytest.raises(tp.RestartIntensityExceeded):
        async with tp.open_supervisor(tp.child(Recorder, log, None, id="r", name="r"), max_restarts=2):
            ref = tp.whereis("r")
            await ref.cast("x")
            await ref.cast(("pd", "set"))
            for _ in range(3):
                ref.kill()
                await settle()
            await trio.sleep_forever()
    assert not ref.alive
    assert await ref.wait_stopped() is tp.KILLED
    assert not ref._keeper.has_state  # the state is dropped
    assert ref._keeper.pdict is None
    with pytest.raises(tp.NoProc):
        await ref.call("get")
    # the name is free, and a new server under it starts from init
    async with tp.open_supervisor(tp.child(Recorder, log, None, id="r", name="r")):
        new = tp.whereis("r")
        assert new is not ref
        assert await new.call("get") == 0


class Plain(tp.GenServer, preserve=False):
    """``preserve=False``: the state is whatever init returns (here, the test's own dict)."""

    async def init(self, shared, log):
        log.append(("init", len(shared["items"])))
        return shared

    async def handle_call(self, request, caller, state):
        if request == "state":
            return tp.Reply(state, state)
        if request == "pd":
            return tp.Reply(dict(tp.pdict()), state)
        state["items"].append(request)
        tp.pdict()[request] = True
        if request == "boom":
            raise RuntimeError("boom")
        return tp.Reply(None, state)


async def test_preserve_false_runs_init_again_and_does_not_protect_in_place_changes():
    shared, log = {"items": []}, Log()
    async with tp.open_dynamic_supervisor() as dsup:
        ref = await dsup.start_child(tp.child(Plain, shared, log))
        assert ref._keeper.journal is None
        await ref.call("ok")
        assert await ref.call("pd") == {"ok": True}
        with pytest.raises(tp.ServerExited):
            await ref.call("boom")
        await settle()
        assert log == [("init", 0), ("init", 2)]
        # nothing rolled the raising call's append back: init got the dict with it
        assert shared == {"items": ["ok", "boom"]}
        assert await ref.call("state") == {"items": ["ok", "boom"]}
        assert ref._keeper.state is shared  # no copy, no tracking
        assert await ref.call("pd") == {}  # a fresh process dictionary
        shared["items"].append("outside")  # plain objects: no RuntimeError either
        assert (await ref.call("state"))["items"][-1] == "outside"


async def test_preserve_option_at_start_wins_over_the_class_keyword():
    async with tp.open_dynamic_supervisor() as dsup:
        ref = await dsup.start_child(tp.child(Tree, nested(), preserve=False))
        assert ref._keeper.journal is None
        ref2 = await dsup.start_child(tp.child(Plain, {"items": []}, Log(), preserve=True))
        assert ref2._keeper.journal is not None


async def test_replies_are_detached_copies_of_the_state():
    async with tp.open_dynamic_supervisor() as dsup:
        ref, committed = await start_tree(dsup)
        reply = await ref.call("state")
        assert type(reply) is dict
        assert type(reply["a"]["x"]) is list
        assert type(reply["a"]["s"]) is set
        reply["a"]["x"].append("caller")  # plain containers: no RuntimeError
        reply["b"].clear()
        reply["new"] = 1
        part = await ref.call("part")
        assert type(part) is dict
        part["x"].clear()
        assert await ref.call("state") == committed
        assert ref._keeper.state == committed
        final = await ref.call("stop")  # a tp.Stop's reply is detached too
        assert type(final) is dict
        assert final == committed


async def test_a_deferred_reply_is_detached_too():
    log = Log()
    async with tp.open_dynamic_supervisor() as dsup:
        ref, committed = await start_tree(dsup, log=log)
        async with trio.open_nursery() as nursery:
            got = []

            async def client():
                got.append(await ref.call("deferred"))

            nursery.start_soon(client)
            await settle()
            await ref.cast("answer_deferred")  # tp.reply(caller, state) from a callback
        (reply,) = got
        assert reply == committed
        assert type(reply) is dict
        assert type(reply["b"]) is list
        reply["b"].append("caller")  # would raise RuntimeError on the live state
        assert await ref.call("state") == committed


async def test_changing_the_state_outside_a_callback_raises_runtime_error():
    log = Log()
    async with tp.open_dynamic_supervisor() as dsup:
        ref, committed = await start_tree(dsup, log=log)
        live = ref._keeper.state
        with pytest.raises(RuntimeError, match="outside its callbacks"):
            live["n"] = 5
        with pytest.raises(RuntimeError, match="outside its callbacks"):
            live["b"].append(1)
        with pytest.raises(RuntimeError, match="outside its callbacks"):
            live["a"]["s"].add(1)
        with pytest.raises(RuntimeError, match="outside its callbacks"):
            del live["c"]

        # a reference leaked from a callback, used by another task
        await ref.call("leak")
        (leaked,) = log

        async def other_task():
            with pytest.raises(RuntimeError, match="outside its callbacks"):
                leaked["x"].append("from a task")
            with pytest.raises(RuntimeError, match="outside its callbacks"):
                leaked.clear()

        async with trio.open_nursery() as nursery:
            nursery.start_soon(other_task)
        assert await ref.call("state") == committed
        assert ref.alive
        assert ref.restarts == 0


async def test_changing_another_servers_state_from_a_callback_raises_runtime_error():
    log = Log()

    class Meddler(tp.GenServer):
        async def handle_call(self, request, caller, state):
            try:
                request["x"].append("meddled")
            except RuntimeError as e:
                return tp.Reply(e, state)
            return tp.Reply(None, state)

    async with tp.open_dynamic_supervisor() as dsup:
        ref, committed = await start_tree(dsup, log=log)
        await ref.call("leak")
        meddler = await dsup.start_child(tp.child(Meddler, None))
        err = await meddler.call(log[0])
        assert isinstance(err, RuntimeError)
        assert await ref.call("state") == committed


async def test_the_state_has_value_semantics():
    items = [1, 2]
    inner = {"k": [0]}
    async with tp.open_dynamic_supervisor() as dsup:
        ref = await dsup.start_child(tp.child(Tree, {"a": {"x": items, "s": set()}, "inner": inner}))
        items.append("test")  # the server stored a copy at init
        inner["k"].append("test")
        state = await ref.call("state")
        assert state == {"a": {"x": [1, 2], "s": set()}, "inner": {"k": [0]}}
        assert ref._keeper.state["a"]["x"] is not items
        # inside a callback, assigning a container stores a copy too
        assert await ref.call("alias") is False
        state = await ref.call("state")
        assert state["a"]["x"] == [1, 2]
        assert state["copy"]["x"] == [1, 2, "only in the copy"]
        assert items == [1, 2, "test"]


async def test_state_commits_counts_valid_returns_only():
    async with tp.open_supervisor(full(0, name="stats"), max_restarts=10):
        ref = tp.whereis("stats")
        assert ref.statistics().state_commits == 0  # init is not a commit
        await ref.cast("inc")  # the cast and its handle_continue
        await settle()
        assert ref.statistics().state_commits == 2
        assert await ref.call("state") == 1
        assert ref.statistics().state_commits == 3
        with pytest.raises(tp.ServerExited):
            await ref.call("raise")
        with pytest.raises(tp.ServerExited):
            await ref.call("invalid")
        await ref.cast("raise_in_continue")  # the cast commits, its continue does not
        ref.kill()
        await settle()
        stats = ref.statistics()
        assert stats.state_commits == 4  # kept across restarts, like the state
        assert stats.restarts == 4
        assert stats.handled == 5  # a handle_continue is not a message
        assert stats.mailbox_len == 0
