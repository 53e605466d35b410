"""Calls, deferred replies, ordering and bounded mailboxes (API.md sections 1-2, 10).

Scenarios from OTP's gen_server_SUITE (call timeouts, late replies, calls to dead
servers, self calls) and Elixir's gen_server_test.exs. ``autojump_clock`` is an
explicit argument: pytest-trio only passes a clock it finds among the test's own
arguments.
"""

from __future__ import annotations

import math
import re

import pytest
import trio
import trio.testing

import trio_peeper as tp


class Server(tp.GenServer):
    """State: a tuple log of handled messages, plus the pending (deferred) callers."""

    async def init(self, *args):
        return {"log": (), "pending": (), "args": args}

    async def handle_call(self, request, caller, state):
        log = (*state["log"], ("call", request))
        state = {**state, "log": log}
        match request:
            case "log":
                return tp.Reply(state["log"][:-1], state)
            case ("sleep", seconds, answer):
                await trio.sleep(seconds)
                return tp.Reply(answer, state)
            case ("defer", _):
                return tp.NoReply({**state, "pending": (*state["pending"], (request, caller))})
            case "crash":
                raise LookupError("crashed in call")
            case "stop":
                return tp.Stop("normal", state)
            case "call-self":
                try:
                    await tp.current_server().call("log")
                except tp.CallingSelf as e:
                    return tp.Reply(e, state)
                return tp.Reply("no error", state)
            case ("call-self-by-name", name):
                try:
                    await tp.call(name, "log")
                except tp.CallingSelf as e:
                    return tp.Reply(e, state)
                return tp.Reply("no error", state)
            case "hang":
                await trio.sleep_forever()
            case ("wait-call", gate):
                await gate.wait()
                return tp.Reply("gate opened", state)
        return tp.Reply(("echo", request), state)

    async def handle_cast(self, message, state):
        log = (*state["log"], ("cast", message))
        if message == "release-reversed":
            for request, caller in reversed(state["pending"]):
                tp.reply(caller, ("released", request[1]))
            return tp.NoReply({**state, "log": log, "pending": ()})
        if isinstance(message, tuple) and message[0] == "wait":
            await message[1].wait()
        return tp.NoReply({**state, "log": log})

    async def handle_info(self, message, state):
        return tp.NoReply({**state, "log": (*state["log"], ("info", message))})


# ------------------------------------------------------------------ basics


async def test_call_returns_the_reply(autojump_clock):
    async with trio.open_nursery() as nursery:
        ref = await tp.start_server(nursery, Server)
        assert await ref.call("hello") == ("echo", "hello")
        assert await ref.call(("sleep", 1, "late"), timeout=None) == "late"
        assert await ref.call(("sleep", 100, "very late"), timeout=math.inf) == "very late"
        assert trio.current_time() == pytest.approx(101)
        nursery.cancel_scope.cancel()


# ---------------------------------------------------------------- timeouts


async def test_call_timeout_raises_and_server_keeps_running(autojump_clock):
    async with trio.open_nursery() as nursery:
        ref = await tp.start_server(nursery, Server)
        with pytest.raises(tp.CallTimeout, match=r"timed out after 1s$") as info:
            await ref.call(("sleep", 3, "slow"), timeout=1)
        assert isinstance(info.value, TimeoutError)
        assert trio.current_time() == pytest.approx(1)
        assert ref.alive
        assert ref.restarts == 0
        assert await ref.call("ping") == ("echo", "ping")
        assert trio.current_time() == pytest.approx(3)  # waited for the slow call to finish
        nursery.cancel_scope.cancel()


async def test_default_call_timeout_is_five_seconds(autojump_clock):
    async with trio.open_nursery() as nursery:
        ref = await tp.start_server(nursery, Server)
        with pytest.raises(tp.CallTimeout):
            await ref.call("hang")
        assert trio.current_time() == pytest.approx(5)
        nursery.cancel_scope.cancel()


async def test_late_reply_never_answers_a_later_call(autojump_clock):
    # the classic OTP test: the first call times out, its reply comes later and
    # must be dropped, not taken as the answer of the next call
    async with trio.open_nursery() as nursery:
        ref = await tp.start_server(nursery, Server)
        with pytest.raises(tp.CallTimeout):
            await ref.call(("sleep", 2, "first answer"), timeout=1)
        assert await ref.call(("sleep", 0, "second answer")) == "second answer"
        assert await ref.call("third") == ("echo", "third")
        nursery.cancel_scope.cancel()


async def test_late_deferred_reply_is_dropped(autojump_clock):
    async with trio.open_nursery() as nursery:
        ref = await tp.start_server(nursery, Server)
        with pytest.raises(tp.CallTimeout):
            await ref.call(("defer", 1), timeout=1)

        async def second_call(out):
            out.append(await ref.call(("defer", 2)))

        out = []
        nursery.start_soon(second_call, out)
        await trio.testing.wait_all_tasks_blocked()
        # answers both deferred callers, the timed-out one last... in reverse: 2, then 1
        await ref.cast("release-reversed")
        await trio.testing.wait_all_tasks_blocked()
        assert out == [("released", 2)]
        assert await ref.call("x") == ("echo", "x")
        nursery.cancel_scope.cancel()


@pytest.mark.parametrize("bad", ["soon", True, float("nan")], ids=["str", "bool", "nan"])
async def test_call_with_a_bad_timeout_raises_and_sends_nothing(autojump_clock, bad):
    woken = []
    async with trio.open_nursery() as nursery:
        ref = await tp.start_server(nursery, Server)
        gate = trio.Event()

        async def bad_caller(task_status=trio.TASK_STATUS_IGNORED):
            with pytest.raises((TypeError, ValueError)):
                await ref.call(("wait-call", gate), timeout=bad)
            task_status.started()
            # park where a stray answer to the rejected call would land harmlessly
            try:
                woken.append(
                    await trio.lowlevel.wait_task_rescheduled(
                        lambda _: trio.lowlevel.Abort.SUCCEEDED
                    )
                )
            except tp.ServerExited as e:
                woken.append(e)

        with trio.fail_after(10):
            await nursery.start(bad_caller)
        await trio.testing.wait_all_tasks_blocked()
        stats = ref.statistics()
        gate.set()
        await trio.testing.wait_all_tasks_blocked()
        nursery.cancel_scope.cancel()
    # the rejected request never reached the server, and nobody answered it
    assert (stats.handled, stats.mailbox_len) == (0, 0)
    assert woken == []


# ------------------------------------------------------- exits and errors


async def test_call_to_a_stopped_server_is_noproc(autojump_clock):
    async with trio.open_nursery() as nursery:
        ref = await tp.start_server(nursery, Server, name="srv")
        await ref.stop()
        with pytest.raises(tp.NoProc) as info:
            await ref.call("x")
        assert isinstance(info.value, LookupError)
        with pytest.raises(tp.NoProc):
            await tp.call("srv", "x")


async def test_cast_and_send_to_a_stopped_ref_do_not_raise(autojump_clock):
    # OTP: a cast never fails, even to a dead server
    async with trio.open_nursery() as nursery:
        ref = await tp.start_server(nursery, Server)
        await ref.stop()
        await ref.cast("x")
        await ref.send("x")
        ref.cast_nowait("x")
        ref.send_nowait("x")
        assert not ref.alive


async def test_calling_self_raises_calling_self(autojump_clock):
    async with trio.open_nursery() as nursery:
        ref = await tp.start_server(nursery, Server, name="me")
        err = await ref.call("call-self")
        assert isinstance(err, tp.CallingSelf)
        assert re.search(r"cannot call itself$", str(err))
        err = await ref.call(("call-self-by-name", "me"))
        assert isinstance(err, tp.CallingSelf)
        assert ref.alive
        assert ref.restarts == 0
        nursery.cancel_scope.cancel()


async def test_crash_during_a_call_is_server_exited(autojump_clock):
    async with trio.open_nursery() as nursery:
        ref = await tp.start_server(nursery, Server)
        with pytest.raises(tp.ServerExited) as info:
            await ref.call("crash")
        exc = info.value
        assert isinstance(exc.__cause__, LookupError)
        assert str(exc.__cause__) == "crashed in call"
        assert exc.reason is exc.__cause__
        await trio.testing.wait_all_tasks_blocked()
        assert ref.restarts == 1
        assert await ref.call("x") == ("echo", "x")
        nursery.cancel_scope.cancel()


async def test_stop_during_a_call_without_reply_is_server_exited(autojump_clock):
    async with trio.open_nursery() as nursery:
        ref = await tp.start_server(nursery, Server)
        with pytest.raises(tp.ServerExited) as info:
            await ref.call("stop")
        assert info.value.reason == "normal"
        assert info.value.__cause__ is None
        assert not ref.alive


async def test_calls_queued_behind_a_final_stop_do_not_hang(autojump_clock):
    outcomes = []

    async def call(request):
        try:
            outcomes.append(await ref.call(request))
        except (tp.ServerExited, tp.NoProc) as e:
            outcomes.append(type(e))

    async with trio.open_nursery() as nursery:
        ref = await tp.start_server(nursery, Server)
        gate = trio.Event()
        ref.cast_nowait(("wait", gate))  # the server is busy until the gate opens
        await trio.testing.wait_all_tasks_blocked()
        nursery.start_soon(call, "stop")
        await trio.testing.wait_all_tasks_blocked()
        nursery.start_soon(call, "queued")
        await trio.testing.wait_all_tasks_blocked()
        gate.set()
    assert not ref.alive
    # the stopping call saw the exit; the one queued behind it was failed, not left waiting
    assert outcomes[0] is tp.ServerExited
    assert outcomes[1] in (tp.ServerExited, tp.NoProc)
    assert len(outcomes) == 2


async def test_queued_call_survives_a_crash_and_is_answered(autojump_clock):
    async with trio.open_nursery() as nursery:
        ref = await tp.start_server(nursery, Server)
        gate = trio.Event()
        ref.cast_nowait(("wait", gate))
        await trio.testing.wait_all_tasks_blocked()
        results = {}

        async def call(request):
            try:
                results[request] = await ref.call(request)
            except tp.ServerExited:
                results[request] = "exited"

        nursery.start_soon(call, "crash")
        await trio.testing.wait_all_tasks_blocked()
        nursery.start_soon(call, "after")
        await trio.testing.wait_all_tasks_blocked()
        gate.set()
        await trio.testing.wait_all_tasks_blocked()
        assert results == {"crash": "exited", "after": ("echo", "after")}
        assert ref.restarts == 1
        nursery.cancel_scope.cancel()


# ----------------------------------------------------------- cancellation


async def test_cancelled_caller_request_still_handled_and_reply_dropped(autojump_clock):
    async with trio.open_nursery() as nursery:
        ref = await tp.start_server(nursery, Server)
        with trio.move_on_after(1) as scope:
            await ref.call(("sleep", 3, "never seen"))
        assert scope.cancelled_caught
        assert trio.current_time() == pytest.approx(1)
        assert ref.alive
        assert await ref.call("next") == ("echo", "next")
        assert trio.current_time() == pytest.approx(3)
        assert await ref.call("log") == (
            ("call", ("sleep", 3, "never seen")),
            ("call", "next"),
        )
        nursery.cancel_scope.cancel()


async def test_caller_cancelled_while_queued_is_still_handled(autojump_clock):
    async with trio.open_nursery() as nursery:
        ref = await tp.start_server(nursery, Server)
        gate = trio.Event()
        ref.cast_nowait(("wait", gate))
        await trio.testing.wait_all_tasks_blocked()
        with trio.move_on_after(1):
            await ref.call("queued then abandoned")
        gate.set()
        assert await ref.call("later") == ("echo", "later")
        log = await ref.call("log")
        assert log[-2:] == (("call", "queued then abandoned"), ("call", "later"))
        nursery.cancel_scope.cancel()


async def test_deferred_reply_after_caller_cancelled_is_dropped(autojump_clock):
    async with trio.open_nursery() as nursery:
        ref = await tp.start_server(nursery, Server)
        with trio.move_on_after(1):
            await ref.call(("defer", "a"))
        await ref.cast("release-reversed")  # replies to the abandoned caller: dropped
        assert await ref.call("b") == ("echo", "b")
        nursery.cancel_scope.cancel()


# ---------------------------------------------------------- deferred reply


async def test_deferred_reply_from_another_task(autojump_clock):
    callers = []

    class Deferring(tp.GenServer):
        async def handle_call(self, request, caller, state):
            callers.append(caller)
            return tp.NoReply(state + 1)

    async with trio.open_nursery() as nursery:
        ref = await tp.start_server(nursery, Deferring, 0)

        async def replier():
            await trio.sleep(4)
            [caller] = callers
            assert isinstance(hash(caller), int)
            tp.reply(caller, "from the replier task")

        nursery.start_soon(replier)
        assert await ref.call("q") == "from the replier task"
        assert trio.current_time() == pytest.approx(4)
        nursery.cancel_scope.cancel()


async def test_deferred_reply_from_inside_the_server(autojump_clock):
    async with trio.open_nursery() as nursery:
        ref = await tp.start_server(nursery, Server)
        got = {}

        async def deferred(i):
            got[i] = await ref.call(("defer", i))

        for i in range(3):
            nursery.start_soon(deferred, i)
            await trio.testing.wait_all_tasks_blocked()
        assert got == {}
        await ref.cast("release-reversed")
        await trio.testing.wait_all_tasks_blocked()
        assert got == {0: ("released", 0), 1: ("released", 1), 2: ("released", 2)}
        nursery.cancel_scope.cancel()


async def test_second_reply_to_the_same_caller_is_dropped(autojump_clock):
    callers = []

    class Deferring(tp.GenServer):
        async def handle_call(self, request, caller, state):
            callers.append(caller)
            return tp.NoReply(state)

    async with trio.open_nursery() as nursery:
        ref = await tp.start_server(nursery, Deferring, None)
        got = []

        async def call(request):
            got.append(await ref.call(request))

        nursery.start_soon(call, "first")
        await trio.testing.wait_all_tasks_blocked()
        tp.reply(callers[0], "one")
        tp.reply(callers[0], "two")  # dropped: the call was answered already
        await trio.testing.wait_all_tasks_blocked()
        assert got == ["one"]
        nursery.start_soon(call, "second")
        await trio.testing.wait_all_tasks_blocked()
        tp.reply(callers[0], "stale")  # the first caller again: never answers the second call
        await trio.testing.wait_all_tasks_blocked()
        assert got == ["one"]
        tp.reply(callers[1], "fresh")
        await trio.testing.wait_all_tasks_blocked()
        assert got == ["one", "fresh"]
        nursery.cancel_scope.cancel()


@pytest.mark.parametrize("how", ["ref.stop", "Stop from a callback", "crash without preserve"])
async def test_deferred_caller_is_told_when_the_server_goes_away(autojump_clock, how):
    # OTP: a caller waiting for a deferred reply gets an exit as soon as the
    # server terminates; it must not wait forever for a reply that cannot come
    outcome = []

    async def deferred_caller():
        with trio.move_on_after(50):
            try:
                outcome.append(await ref.call(("defer", 1), timeout=None))
            except (tp.ServerExited, tp.NoProc) as e:
                outcome.append((type(e), trio.current_time()))
            return
        outcome.append(("still waiting", trio.current_time()))

    async with trio.open_nursery() as nursery:
        ref = await tp.start_server(nursery, Server, preserve=how != "crash without preserve")
        nursery.start_soon(deferred_caller)
        await trio.testing.wait_all_tasks_blocked()
        await trio.sleep(1)
        if how == "ref.stop":
            await ref.stop()
        elif how == "Stop from a callback":
            with pytest.raises(tp.ServerExited):
                await ref.call("stop")
        else:
            with pytest.raises(tp.ServerExited):
                await ref.call("crash")
        await trio.sleep(60)
        nursery.cancel_scope.cancel()
    assert outcome == [(tp.ServerExited, 1.0)]


async def test_callers_are_distinct_and_hashable(autojump_clock):
    seen = []

    class Collect(tp.GenServer):
        async def handle_call(self, request, caller, state):
            seen.append(caller)
            return tp.Reply(request, state)

    async with trio.open_nursery() as nursery:
        ref = await tp.start_server(nursery, Collect, None)
        for i in range(3):
            assert await ref.call(i) == i
        assert len(set(seen)) == 3
        assert len({c: None for c in seen}) == 3
        nursery.cancel_scope.cancel()


async def test_reply_needs_a_caller(autojump_clock):
    with pytest.raises(TypeError):
        tp.reply("not a caller", 1)


# ---------------------------------------------------------------- ordering


async def test_messages_from_one_task_are_handled_in_order(autojump_clock):
    async with trio.open_nursery() as nursery:
        ref = await tp.start_server(nursery, Server)
        ref.cast_nowait(1)
        ref.send_nowait(2)
        await ref.cast(3)
        assert await ref.call(4) == ("echo", 4)
        await ref.send(5)
        ref.cast_nowait(6)
        await tp.send(ref, 7)
        await tp.cast(ref, 8)
        assert await tp.call(ref, 9) == ("echo", 9)
        ref.send_nowait(10)
        assert await ref.call("log") == (
            ("cast", 1),
            ("info", 2),
            ("cast", 3),
            ("call", 4),
            ("info", 5),
            ("cast", 6),
            ("info", 7),
            ("cast", 8),
            ("call", 9),
            ("info", 10),
        )
        nursery.cancel_scope.cancel()


async def test_each_sender_order_is_kept_among_many_senders(autojump_clock):
    async with trio.open_nursery() as nursery:
        ref = await tp.start_server(nursery, Server)

        async def sender(k):
            for i in range(20):
                if i % 3 == 0:
                    await ref.cast((k, i))
                elif i % 3 == 1:
                    await ref.send((k, i))
                else:
                    await ref.call((k, i))

        async with trio.open_nursery() as senders:
            for k in range(5):
                senders.start_soon(sender, k)
        log = await ref.call("log")
        assert len(log) == 100
        for k in range(5):
            mine = [m[1] for _, m in log if m[0] == k]
            assert mine == list(range(20))
        nursery.cancel_scope.cancel()


async def test_many_concurrent_callers_get_their_own_replies(autojump_clock):
    class Jitter(tp.GenServer):
        async def handle_call(self, request, caller, state):
            await trio.sleep((request * 7) % 5 / 10)
            return tp.Reply(request * request, state)

    results = {}
    async with trio.open_nursery() as nursery:
        ref = await tp.start_server(nursery, Jitter, None)

        async def caller(i):
            results[i] = await ref.call(i, timeout=math.inf)

        async with trio.open_nursery() as callers:
            for i in range(100):
                callers.start_soon(caller, i)
        assert results == {i: i * i for i in range(100)}
        nursery.cancel_scope.cancel()


async def test_many_concurrent_deferred_callers_answered_out_of_order(autojump_clock):
    results = {}
    async with trio.open_nursery() as nursery:
        ref = await tp.start_server(nursery, Server)

        async def caller(i):
            results[i] = await ref.call(("defer", i))

        for i in range(50):
            nursery.start_soon(caller, i)
        await trio.testing.wait_all_tasks_blocked()
        await ref.cast("release-reversed")
        await trio.testing.wait_all_tasks_blocked()
        assert results == {i: ("released", i) for i in range(50)}
        nursery.cancel_scope.cancel()


# --------------------------------------------------------- bounded mailbox


async def test_bounded_mailbox_nowait_raises_would_block_and_loses_nothing(autojump_clock):
    async with trio.open_nursery() as nursery:
        ref = await tp.start_server(nursery, Server, mailbox_size=2)
        gate = trio.Event()
        ref.cast_nowait(("wait", gate))
        await trio.testing.wait_all_tasks_blocked()  # the server took it and is busy
        ref.cast_nowait("a")
        ref.send_nowait("b")
        assert ref.statistics().mailbox_len == 2
        with pytest.raises(trio.WouldBlock):
            ref.cast_nowait("lost?")
        with pytest.raises(trio.WouldBlock):
            ref.send_nowait("lost?")
        assert ref.statistics().mailbox_len == 2
        gate.set()
        log = await ref.call("log")
        assert log[1:] == (("cast", "a"), ("info", "b"))
        nursery.cancel_scope.cancel()


async def test_bounded_mailbox_async_cast_waits_for_room(autojump_clock):
    async with trio.open_nursery() as nursery:
        ref = await tp.start_server(nursery, Server, mailbox_size=1)
        gate = trio.Event()
        ref.cast_nowait(("wait", gate))
        await trio.testing.wait_all_tasks_blocked()
        ref.cast_nowait("a")
        done = []

        async def blocked_sender():
            await ref.cast("b")
            done.append("b queued")
            await ref.send("c")
            done.append("c queued")

        nursery.start_soon(blocked_sender)
        await trio.sleep(10)
        assert done == []  # no room: still waiting
        assert ref.statistics().mailbox_len == 1
        gate.set()
        await trio.testing.wait_all_tasks_blocked()
        assert done == ["b queued", "c queued"]
        log = await ref.call("log")
        assert log[1:] == (("cast", "a"), ("cast", "b"), ("info", "c"))
        nursery.cancel_scope.cancel()


async def test_bounded_mailbox_call_waits_for_room(autojump_clock):
    async with trio.open_nursery() as nursery:
        ref = await tp.start_server(nursery, Server, mailbox_size=1)
        gate = trio.Event()
        ref.cast_nowait(("wait", gate))
        await trio.testing.wait_all_tasks_blocked()
        ref.cast_nowait("a")

        async def opener():
            await trio.sleep(2)
            gate.set()

        nursery.start_soon(opener)
        assert await ref.call("q") == ("echo", "q")
        assert trio.current_time() == pytest.approx(2)
        nursery.cancel_scope.cancel()


async def test_bounded_mailbox_class_keyword(autojump_clock):
    class Small(Server, mailbox_size=1):
        pass

    async with trio.open_nursery() as nursery:
        ref = await tp.start_server(nursery, Small)
        gate = trio.Event()
        ref.cast_nowait(("wait", gate))
        await trio.testing.wait_all_tasks_blocked()
        ref.cast_nowait("a")
        with pytest.raises(trio.WouldBlock):
            ref.cast_nowait("b")
        gate.set()
        await trio.testing.wait_all_tasks_blocked()
        ref.cast_nowait("b")  # room again
        nursery.cancel_scope.cancel()


async def test_unbounded_mailbox_takes_many_messages(autojump_clock):
    async with trio.open_nursery() as nursery:
        ref = await tp.start_server(nursery, Server)
        gate = trio.Event()
        ref.cast_nowait(("wait", gate))
        await trio.testing.wait_all_tasks_blocked()
        for i in range(1000):
            ref.cast_nowait(i)
        assert ref.statistics().mailbox_len == 1000
        gate.set()
        log = await ref.call("log")
        assert [m for _, m in log[1:]] == list(range(1000))
        nursery.cancel_scope.cancel()
