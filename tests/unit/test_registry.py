"""Registries and via-names (API.md sections 2 and 5), after Elixir's registry_test.exs."""

from __future__ import annotations

import pytest
import trio
import trio.testing

import trio_peeper as tp


class Agent(tp.GenServer):
    """Runs ``fn()`` inside the server on ``call(("run", fn))``; the reply is ``("ok", v)`` or ``("error", exc)``."""

    async def init(self, state=None):
        return state

    async def handle_call(self, request, caller, state):
        if request == "get":
            return tp.Reply(state, state)
        if request == "crash":
            raise RuntimeError("crash")
        if type(request) is tuple and request[0] == "run":
            try:
                value = request[1]()
            except Exception as exc:  # handed back to the test, the server keeps running
                return tp.Reply(("error", exc), state)
            return tp.Reply(("ok", value), state)
        if type(request) is tuple and request[0] == "set":
            return tp.Reply("ok", request[1])
        return None

    async def handle_cast(self, message, state):
        if message == "crash":
            raise RuntimeError("crash")
        return tp.NoReply(("cast", message))

    async def handle_info(self, message, state):
        return tp.NoReply(("info", message))


async def run_in(ref, fn):
    """Run ``fn()`` inside the server *ref*; re-raise what it raised."""
    kind, value = await ref.call(("run", fn))
    if kind == "error":
        raise value
    return value


async def settle():
    await trio.testing.wait_all_tasks_blocked()


# ------------------------------------------------------------------ creation


def test_bad_keys_value_raises_value_error_naming_it():
    with pytest.raises(ValueError, match=r"'uniq'"):
        tp.Registry(keys="uniq")


async def test_register_outside_a_server_raises():
    reg = tp.Registry(keys="unique")
    with pytest.raises(RuntimeError):
        reg.register("hello", "value")
    assert reg.count() == 0
    assert reg.lookup("hello") == []


async def test_an_empty_registry_counts_zero():
    assert tp.Registry(keys="unique").count() == 0
    assert tp.Registry(keys="duplicate").count() == 0


# -------------------------------------------------------------- unique keys


async def test_unique_register_and_lookup_use_the_current_server():
    reg = tp.Registry(keys="unique")
    async with trio.open_nursery() as nursery:
        ref = await tp.start_server(nursery, Agent)
        assert await run_in(ref, lambda: reg.register("hello", "value")) is None
        assert reg.lookup("hello") == [(ref, "value")]
        assert reg.lookup("missing") == []
        assert reg.keys(ref) == ["hello"]
        assert reg.values("hello", ref) == ["value"]
        assert reg.count() == 1
        await ref.stop()


async def test_register_works_from_inside_init():
    reg = tp.Registry(keys="unique")

    class SelfRegistering(tp.GenServer):
        async def init(self, key):
            reg.register(key, "from init")
            return key

    async with trio.open_nursery() as nursery:
        ref = await tp.start_server(nursery, SelfRegistering, "me")
        assert reg.lookup("me") == [(ref, "from init")]
        await ref.stop()
    assert reg.lookup("me") == []


async def test_non_preserving_server_registering_in_init_survives_a_restart():
    """The Elixir idiom: a plain-OTP server (``preserve=False``) registers itself in ``init``.

    ``init`` runs again on the restart; the server must come back, still registered.
    """
    reg = tp.Registry(keys="unique")

    class SelfRegistering(tp.GenServer, preserve=False):
        async def init(self, key):
            reg.register(key, "from init")
            return key

        async def handle_cast(self, message, state):
            raise RuntimeError("crash")

    async with tp.open_supervisor(tp.child(SelfRegistering, "me", id="s")) as sup:
        (row,) = sup.which_children()
        ref = row.ref
        await ref.cast("crash")
        await settle()
        assert ref.alive
        assert ref.restarts == 1
        assert reg.lookup("me") == [(ref, "from init")]
    assert reg.lookup("me") == []


async def test_unique_key_taken_raises_already_registered_with_the_holder():
    reg = tp.Registry(keys="unique")
    async with trio.open_nursery() as nursery:
        a = await tp.start_server(nursery, Agent)
        b = await tp.start_server(nursery, Agent)
        await run_in(a, lambda: reg.register("hello", "a"))

        with pytest.raises(tp.AlreadyRegistered) as info:
            await run_in(a, lambda: reg.register("hello", "again"))
        assert info.value.ref is a
        assert reg.keys(a) == ["hello"]

        with pytest.raises(tp.AlreadyRegistered, match=r"'hello'") as info:
            await run_in(b, lambda: reg.register("hello", "b"))
        assert info.value.ref is a
        assert reg.keys(b) == []
        assert reg.lookup("hello") == [(a, "a")]

        await run_in(a, lambda: reg.register("world", "w"))
        assert sorted(reg.keys(a)) == ["hello", "world"]
        assert reg.count() == 2
        await a.stop()
        await b.stop()


async def test_keys_and_values_of_other_servers_are_empty():
    reg = tp.Registry(keys="unique")
    async with trio.open_nursery() as nursery:
        a = await tp.start_server(nursery, Agent)
        b = await tp.start_server(nursery, Agent)
        await run_in(a, lambda: reg.register("hello", 1))
        assert reg.keys(b) == []
        assert reg.values("hello", b) == []
        assert reg.values("missing", a) == []
        await a.stop()
        await b.stop()


async def test_unique_update_value_returns_new_and_old():
    reg = tp.Registry(keys="unique")
    async with trio.open_nursery() as nursery:
        ref = await tp.start_server(nursery, Agent)
        await run_in(ref, lambda: reg.register("counter", 1))
        assert await run_in(ref, lambda: reg.update_value("counter", lambda v: v + 41)) == (42, 1)
        assert reg.lookup("counter") == [(ref, 42)]
        assert reg.values("counter", ref) == [42]
        await ref.stop()


async def test_update_value_by_a_server_that_does_not_hold_the_key_changes_nothing():
    reg = tp.Registry(keys="unique")
    async with trio.open_nursery() as nursery:
        a = await tp.start_server(nursery, Agent)
        b = await tp.start_server(nursery, Agent)
        await run_in(a, lambda: reg.register("k", "a's"))
        with pytest.raises(KeyError):
            await run_in(b, lambda: reg.update_value("k", lambda v: "stolen"))
        with pytest.raises(KeyError):
            await run_in(a, lambda: reg.update_value("missing", lambda v: "new"))
        assert reg.lookup("k") == [(a, "a's")]
        assert reg.lookup("missing") == []
        await a.stop()
        await b.stop()


async def test_unique_unregister_frees_the_key():
    reg = tp.Registry(keys="unique")
    async with trio.open_nursery() as nursery:
        a = await tp.start_server(nursery, Agent)
        b = await tp.start_server(nursery, Agent)
        await run_in(a, lambda: reg.register("hello", "a"))
        await run_in(a, lambda: reg.register("world", "a"))
        # unregistering a key held by someone else, or nobody, does nothing
        await run_in(b, lambda: reg.unregister("hello"))
        await run_in(b, lambda: reg.unregister("nobody"))
        assert reg.lookup("hello") == [(a, "a")]

        await run_in(a, lambda: reg.unregister("hello"))
        assert reg.lookup("hello") == []
        assert reg.keys(a) == ["world"]
        assert reg.count() == 1
        await run_in(b, lambda: reg.register("hello", "b"))
        assert reg.lookup("hello") == [(b, "b")]
        await a.stop()
        await b.stop()


async def test_unique_select_calls_predicate_with_key_ref_value():
    reg = tp.Registry(keys="unique")
    seen = []

    def predicate(key, ref, value):
        seen.append((key, ref, value))
        return value >= 2

    async with trio.open_nursery() as nursery:
        a = await tp.start_server(nursery, Agent)
        b = await tp.start_server(nursery, Agent)
        await run_in(a, lambda: reg.register("one", 1))
        await run_in(a, lambda: reg.register("two", 2))
        await run_in(b, lambda: reg.register("three", 3))
        assert reg.select(lambda k, r, v: False) == []
        assert sorted(reg.select(predicate)) == sorted([("two", a, 2), ("three", b, 3)], key=lambda t: t[0])
        assert sorted(seen, key=lambda t: t[0]) == sorted(
            [("one", a, 1), ("two", a, 2), ("three", b, 3)], key=lambda t: t[0]
        )
        assert [(k, v) for k, r, v in reg.select(lambda k, r, v: r is b)] == [("three", 3)]
        await a.stop()
        await b.stop()


async def test_unique_dispatch_calls_fn_with_the_entries():
    reg = tp.Registry(keys="unique")
    calls = []
    async with trio.open_nursery() as nursery:
        ref = await tp.start_server(nursery, Agent)
        await run_in(ref, lambda: reg.register("hello", "value"))
        assert await reg.dispatch("hello", calls.append) is None
        assert calls == [[(ref, "value")]]
        # no entries: fn is not called
        await reg.dispatch("missing", calls.append)
        assert calls == [[(ref, "value")]]
        await ref.stop()


async def test_dispatch_fn_can_message_the_servers():
    reg = tp.Registry(keys="unique")
    async with trio.open_nursery() as nursery:
        ref = await tp.start_server(nursery, Agent)
        await run_in(ref, lambda: reg.register("topic", None))

        def deliver(entries):
            for r, _ in entries:
                r.send_nowait("event")

        await reg.dispatch("topic", deliver)
        assert await ref.call("get") == ("info", "event")
        await ref.stop()


async def test_entries_survive_restarts_of_the_server():
    reg = tp.Registry(keys="unique")
    async with trio.open_nursery() as nursery:
        ref = await tp.start_server(nursery, Agent)
        await run_in(ref, lambda: reg.register("hello", "value"))
        with pytest.raises(tp.ServerExited):
            await ref.call("crash")
        await settle()
        ref.kill()
        await settle()
        assert ref.alive
        assert ref.restarts == 2
        assert reg.lookup("hello") == [(ref, "value")]
        assert reg.keys(ref) == ["hello"]
        # still the holder: updates from the new incarnation work
        assert await run_in(ref, lambda: reg.update_value("hello", lambda v: v + "!")) == ("value!", "value")
        await ref.stop()


async def test_entries_survive_restarts_under_a_supervisor():
    # a preserving server (the default) keeps its registry entries across restarts;
    # a preserve=False one restarts afresh (see the init re-registration test)
    reg = tp.Registry(keys="unique")
    async with tp.open_supervisor(tp.child(Agent, id="a")) as sup:
        (row,) = sup.which_children()
        ref = row.ref
        await run_in(ref, lambda: reg.register("hello", "value"))
        await ref.cast("crash")
        await settle()
        assert ref.restarts == 1
        assert reg.lookup("hello") == [(ref, "value")]
    assert reg.lookup("hello") == []
    assert reg.count() == 0


async def test_unique_key_is_free_the_moment_the_server_stops():
    reg = tp.Registry(keys="unique")
    async with trio.open_nursery() as nursery:
        a = await tp.start_server(nursery, Agent)
        b = await tp.start_server(nursery, Agent)
        await run_in(a, lambda: reg.register("hello", "a"))
        await run_in(a, lambda: reg.register("world", "a"))
        await a.stop()
        assert reg.lookup("hello") == []
        assert reg.keys(a) == []
        assert reg.count() == 0
        await run_in(b, lambda: reg.register("hello", "b"))
        assert reg.lookup("hello") == [(b, "b")]
        await b.stop()


@pytest.mark.parametrize("how", ["crash", "normal_stop"])
async def test_entries_removed_when_a_temporary_child_exits(how):
    reg = tp.Registry(keys="unique")
    async with tp.open_dynamic_supervisor() as dsup:
        ref = await dsup.start_child(tp.child(Agent, restart="temporary"))
        await run_in(ref, lambda: reg.register("hello", 1))
        if how == "crash":
            await ref.cast("crash")
        else:
            await tp.cast(ref, "ignored")
            await ref.stop()
        await ref.wait_stopped()
        assert reg.lookup("hello") == []
        assert reg.count() == 0


async def test_entries_removed_by_terminate_child_and_when_the_supervisor_gives_up():
    reg = tp.Registry(keys="unique")
    with pytest.raises(tp.RestartIntensityExceeded):
        async with tp.open_dynamic_supervisor(max_restarts=0) as dsup:
            a = await dsup.start_child(tp.child(Agent))
            b = await dsup.start_child(tp.child(Agent))
            await run_in(a, lambda: reg.register("a", 1))
            await run_in(b, lambda: reg.register("b", 2))
            await dsup.terminate_child(a)
            assert reg.lookup("a") == []
            assert reg.lookup("b") == [(b, 2)]
            await b.cast("crash")
            await trio.sleep_forever()
    assert reg.count() == 0


# ----------------------------------------------------------- duplicate keys


async def test_duplicate_several_servers_under_one_key():
    reg = tp.Registry(keys="duplicate")
    calls = []
    async with trio.open_nursery() as nursery:
        a = await tp.start_server(nursery, Agent)
        b = await tp.start_server(nursery, Agent)
        await run_in(a, lambda: reg.register("topic", "a"))
        await run_in(b, lambda: reg.register("topic", "b"))
        assert sorted(reg.lookup("topic"), key=lambda e: e[1]) == [(a, "a"), (b, "b")]
        assert reg.count() == 2
        assert reg.keys(a) == ["topic"]
        assert reg.values("topic", b) == ["b"]
        await reg.dispatch("topic", calls.append)
        assert len(calls) == 1
        assert sorted(calls[0], key=lambda e: e[1]) == [(a, "a"), (b, "b")]

        await a.stop()
        assert reg.lookup("topic") == [(b, "b")]
        assert reg.count() == 1
        await b.stop()
        assert reg.lookup("topic") == []


async def test_duplicate_one_server_under_several_keys():
    reg = tp.Registry(keys="duplicate")
    async with trio.open_nursery() as nursery:
        ref = await tp.start_server(nursery, Agent)
        await run_in(ref, lambda: reg.register("x", 1))
        await run_in(ref, lambda: reg.register("y", 2))
        assert reg.keys(ref) == ["x", "y"]
        assert reg.lookup("x") == [(ref, 1)]
        assert reg.lookup("y") == [(ref, 2)]
        assert sorted(reg.select(lambda k, r, v: True)) == [("x", ref, 1), ("y", ref, 2)]
        await run_in(ref, lambda: reg.unregister("x"))
        assert reg.keys(ref) == ["y"]
        await ref.stop()
        assert reg.keys(ref) == []
        assert reg.count() == 0


async def test_duplicate_same_server_same_key_twice():
    reg = tp.Registry(keys="duplicate")
    async with trio.open_nursery() as nursery:
        ref = await tp.start_server(nursery, Agent)
        other = await tp.start_server(nursery, Agent)
        await run_in(ref, lambda: reg.register("k", 1))
        await run_in(ref, lambda: reg.register("k", 2))
        await run_in(other, lambda: reg.register("k", 3))
        assert reg.lookup("k") == [(ref, 1), (ref, 2), (other, 3)]
        assert reg.keys(ref) == ["k", "k"]
        assert reg.values("k", ref) == [1, 2]
        assert reg.count() == 3
        # unregister removes all of the caller's entries under the key, nobody else's
        await run_in(ref, lambda: reg.unregister("k"))
        assert reg.lookup("k") == [(other, 3)]
        assert reg.keys(ref) == []
        assert reg.count() == 1
        await ref.stop()
        await other.stop()


async def test_duplicate_entries_survive_restarts():
    reg = tp.Registry(keys="duplicate")
    async with trio.open_nursery() as nursery:
        ref = await tp.start_server(nursery, Agent)
        await run_in(ref, lambda: reg.register("k", 1))
        await run_in(ref, lambda: reg.register("k", 2))
        ref.kill()
        await settle()
        assert ref.restarts == 1
        assert reg.lookup("k") == [(ref, 1), (ref, 2)]
        await ref.stop()
        assert reg.lookup("k") == []


async def test_update_value_on_a_duplicate_registry_raises():
    reg = tp.Registry(keys="duplicate")
    async with trio.open_nursery() as nursery:
        ref = await tp.start_server(nursery, Agent)
        await run_in(ref, lambda: reg.register("k", 1))
        with pytest.raises(ValueError):
            await run_in(ref, lambda: reg.update_value("k", lambda v: v + 1))
        assert reg.lookup("k") == [(ref, 1)]
        await ref.stop()


# ----------------------------------------------------------------- via-names


async def test_via_name_start_whereis_call_cast_send():
    reg = tp.Registry(keys="unique")
    async with trio.open_nursery() as nursery:
        ref = await tp.start_server(nursery, Agent, "init", name=reg.via("agent", "meta"))
        assert tp.whereis(reg.via("agent")) is ref
        assert reg.lookup("agent") == [(ref, "meta")]
        assert reg.keys(ref) == ["agent"]
        assert await tp.call(reg.via("agent"), "get") == "init"
        await tp.cast(reg.via("agent"), "hi")
        assert await tp.call(reg.via("agent"), "get") == ("cast", "hi")
        await tp.send(reg.via("agent"), "ho")
        assert await tp.call(reg.via("agent"), "get") == ("info", "ho")
        assert tp.whereis(reg.via("nobody")) is None
        with pytest.raises(tp.NoProc):
            await tp.call(reg.via("nobody"), "get")
        await ref.stop()


async def test_second_start_under_the_same_via_name_raises_already_started():
    reg = tp.Registry(keys="unique")
    async with trio.open_nursery() as nursery:
        ref = await tp.start_server(nursery, Agent, name=reg.via("agent"))
        with pytest.raises(tp.AlreadyStarted) as info:
            await tp.start_server(nursery, Agent, name=reg.via("agent"))
        assert info.value.ref is ref
        assert reg.lookup("agent") == [(ref, None)]
        assert reg.count() == 1
        await ref.stop()


async def test_via_name_and_register_share_the_unique_keys():
    reg = tp.Registry(keys="unique")
    async with trio.open_nursery() as nursery:
        holder = await tp.start_server(nursery, Agent)
        await run_in(holder, lambda: reg.register("taken", "registered"))
        with pytest.raises(tp.AlreadyStarted) as info:
            await tp.start_server(nursery, Agent, name=reg.via("taken"))
        assert info.value.ref is holder
        named = await tp.start_server(nursery, Agent, name=reg.via("named"))
        with pytest.raises(tp.AlreadyRegistered) as info2:
            await run_in(holder, lambda: reg.register("named"))
        assert info2.value.ref is named
        await holder.stop()
        await named.stop()


async def test_via_name_is_freed_on_stop():
    reg = tp.Registry(keys="unique")
    async with trio.open_nursery() as nursery:
        ref = await tp.start_server(nursery, Agent, name=reg.via("agent"))
        await ref.stop()
        assert tp.whereis(reg.via("agent")) is None
        assert reg.lookup("agent") == []
        assert reg.count() == 0
        with pytest.raises(tp.NoProc):
            await tp.call(reg.via("agent"), "get")
        again = await tp.start_server(nursery, Agent, "second", name=reg.via("agent"))
        assert again is not ref
        assert await tp.call(reg.via("agent"), "get") == "second"
        await again.stop()


async def test_via_name_is_kept_across_restarts():
    reg = tp.Registry(keys="unique")
    async with trio.open_nursery() as nursery:
        ref = await tp.start_server(nursery, Agent, "state", name=reg.via("agent", "v"))
        with pytest.raises(tp.ServerExited):
            await tp.call(reg.via("agent"), "crash")
        await settle()
        assert ref.restarts == 1
        assert tp.whereis(reg.via("agent")) is ref
        assert reg.lookup("agent") == [(ref, "v")]
        assert await tp.call(reg.via("agent"), "get") == "state"
        await ref.stop()


async def test_via_name_for_a_supervised_child():
    reg = tp.Registry(keys="unique")
    async with tp.open_dynamic_supervisor() as dsup:
        ref = await dsup.start_child(tp.child(Agent, "child", name=reg.via("worker", 7)))
        assert tp.whereis(reg.via("worker")) is ref
        assert reg.lookup("worker") == [(ref, 7)]
        ref.kill()
        await settle()
        assert tp.whereis(reg.via("worker")) is ref
        await dsup.terminate_child(ref)
        assert tp.whereis(reg.via("worker")) is None
        assert reg.lookup("worker") == []


async def test_via_names_in_two_registries_are_independent():
    one, two = tp.Registry(keys="unique"), tp.Registry(keys="unique")
    async with trio.open_nursery() as nursery:
        a = await tp.start_server(nursery, Agent, name=one.via("k"))
        b = await tp.start_server(nursery, Agent, name=two.via("k"))
        assert tp.whereis(one.via("k")) is a
        assert tp.whereis(two.via("k")) is b
        assert tp.whereis("k") is None
        await a.stop()
        await b.stop()


def test_via_name_on_a_duplicate_registry_raises_value_error():
    reg = tp.Registry(keys="duplicate")
    with pytest.raises(ValueError):
        reg.via("k")
