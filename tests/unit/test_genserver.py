"""GenServer callbacks, start, stop and standalone restarts (API.md sections 1-3, 10).

Scenarios ported from OTP's gen_server_SUITE and Elixir's gen_server_test.exs.
Every test takes ``autojump_clock`` explicitly: pytest-trio only hands a clock to
``trio.run`` when it is one of the test function's own arguments.
"""

from __future__ import annotations

import logging
import re

import pytest
import trio
import trio.testing

import trio_peeper as tp
from _shared import Log

# ---------------------------------------------------------------- servers


class Echo(tp.GenServer):
    """State is whatever ``init`` got; answers ``"get"``, records casts and infos."""

    async def handle_call(self, request, caller, state):
        if request == "get":
            return tp.Reply(state, state)
        if request == "crash":
            raise RuntimeError("crash in call")
        return tp.Reply(request, state)

    async def handle_cast(self, message, state):
        if message == "crash":
            raise RuntimeError("crash in cast")
        return tp.NoReply((*state, ("cast", message)))

    async def handle_info(self, message, state):
        return tp.NoReply((*state, ("info", message)))


class Counter(tp.GenServer):
    async def init(self, start):
        return start

    async def handle_call(self, request, caller, state):
        if request == "get":
            return tp.Reply(state, state)
        if request == "crash":
            raise ValueError("bad call")
        return tp.Reply(None, state)

    async def handle_cast(self, message, state):
        if message == "inc":
            return tp.NoReply(state + 1)
        if message == "crash":
            raise ValueError("bad cast")
        return tp.NoReply(state)


class Terminating(tp.GenServer):
    """Records ``("terminate", reason, state)`` in the shared *events* list (the first arg)."""

    async def init(self, events, state=0):
        return (events, state)

    async def handle_call(self, request, caller, state):
        events, n = state
        if request == "get":
            return tp.Reply(n, state)
        if request == "stop":
            return tp.Stop("normal", state)
        if request == "stop-reply":
            return tp.Stop("normal", state, reply="bye")
        if request == "stop-self":
            try:
                await tp.current_server().stop()
            except tp.CallingSelf as e:
                return tp.Reply(e, state)
            return tp.Reply("stopped?", state)
        raise AssertionError(request)

    async def handle_cast(self, message, state):
        events, n = state
        if message == "inc":
            return tp.NoReply((events, n + 1))
        if message == "crash":
            raise RuntimeError("crash")
        if message == "hang":
            await trio.sleep_forever()
        if message == "slow":
            await trio.sleep(5)
            events.append(("slow done", trio.current_time()))
            return tp.NoReply(state)
        if isinstance(message, tuple) and message[0] == "stop":
            return tp.Stop(message[1], state)
        raise AssertionError(message)

    async def terminate(self, reason, state):
        events, n = state
        events.append(("terminate", reason, n))


class HangingTerminate(tp.GenServer):
    async def init(self, events):
        return events

    async def terminate(self, reason, events):
        events.append("terminate started")
        await trio.sleep_forever()


# ------------------------------------------------------------------- init


async def test_init_state_is_used(autojump_clock):
    async with trio.open_nursery() as nursery:
        ref = await tp.start_server(nursery, Counter, 41)
        assert isinstance(ref, tp.ServerRef)
        assert ref.alive
        assert ref.name is None
        assert ref.restarts == 0
        assert await ref.call("get") == 41
        nursery.cancel_scope.cancel()


async def test_init_returning_none_means_state_none(autojump_clock):
    class NoneInit(Echo):
        async def init(self):
            pass

    async with trio.open_nursery() as nursery:
        ref = await tp.start_server(nursery, NoneInit)
        assert await ref.call("get") is None
        nursery.cancel_scope.cancel()


async def test_default_init_gets_the_single_argument(autojump_clock):
    async with trio.open_nursery() as nursery:
        ref = await tp.start_server(nursery, Echo, ("x",))
        assert await ref.call("get") == ("x",)
        nursery.cancel_scope.cancel()


async def test_init_with_init_record(autojump_clock):
    class WithInit(Echo):
        async def init(self, value):
            return tp.Init((value,))

    async with trio.open_nursery() as nursery:
        ref = await tp.start_server(nursery, WithInit, 7)
        assert await ref.call("get") == (7,)
        nursery.cancel_scope.cancel()


async def test_init_ignore_returns_none_and_frees_the_name(autojump_clock):
    class Ignoring(tp.GenServer):
        async def init(self):
            return tp.IGNORE

    async with trio.open_nursery() as nursery:
        assert await tp.start_server(nursery, Ignoring, name="ignored") is None
        assert tp.whereis("ignored") is None
    # nothing is left running: the nursery closed by itself


async def test_init_raising_is_a_start_error_with_cause(autojump_clock):
    boom = KeyError("no config")

    class Failing(tp.GenServer):
        async def init(self):
            raise boom

    async with trio.open_nursery() as nursery:
        with pytest.raises(tp.StartError) as info:
            await tp.start_server(nursery, Failing, name="failing")
        assert info.value.__cause__ is boom
        assert tp.whereis("failing") is None


@pytest.mark.parametrize(
    "bad",
    [tp.Reply(1, 2), tp.NoReply(3), tp.Stop("normal", 4)],
    ids=["Reply", "NoReply", "Stop"],
)
async def test_init_returning_a_callback_result_is_invalid(autojump_clock, bad):
    class Confused(tp.GenServer):
        async def init(self):
            return bad

    async with trio.open_nursery() as nursery:
        with pytest.raises(tp.StartError) as info:
            await tp.start_server(nursery, Confused)
        cause = info.value.__cause__
        assert isinstance(cause, tp.InvalidReturn)
        assert isinstance(cause, TypeError)
        assert "init" in str(cause)
        assert repr(bad) in str(cause)


async def test_current_server_inside_init_and_callbacks(autojump_clock):
    class Self(tp.GenServer):
        async def init(self):
            return tp.current_server()

        async def handle_call(self, request, caller, state):
            return tp.Reply((state, tp.current_server()), state)

    async with trio.open_nursery() as nursery:
        ref = await tp.start_server(nursery, Self)
        from_init, from_call = await ref.call("who")
        assert from_init is ref
        assert from_call is ref
        nursery.cancel_scope.cancel()


async def test_current_server_outside_a_server_raises(autojump_clock):
    with pytest.raises(RuntimeError, match=r"outside a server"):
        tp.current_server()


async def test_start_timeout_is_a_start_error(autojump_clock):
    class Slow(tp.GenServer):
        async def init(self):
            await trio.sleep(10)
            return 0

    async with trio.open_nursery() as nursery:
        t0 = trio.current_time()
        with pytest.raises(tp.StartError):
            await tp.start_server(nursery, Slow, name="slow", timeout=1.0)
        assert trio.current_time() - t0 == pytest.approx(1.0)
        assert tp.whereis("slow") is None


async def test_start_waits_for_a_slow_init_within_timeout(autojump_clock):
    class Slow(tp.GenServer):
        async def init(self):
            await trio.sleep(3)
            return "ready"

        async def handle_call(self, request, caller, state):
            return tp.Reply(state, state)

    async with trio.open_nursery() as nursery:
        ref = await tp.start_server(nursery, Slow, timeout=5.0)
        assert trio.current_time() == pytest.approx(3.0)
        assert await ref.call("get") == "ready"
        nursery.cancel_scope.cancel()


async def test_init_args_are_positional(autojump_clock):
    class Args(Echo):
        async def init(self, a, b, *rest):
            return (a, b, rest)

    async with trio.open_nursery() as nursery:
        ref = await tp.start_server(nursery, Args, 1, 2, 3, 4)
        assert await ref.call("get") == (1, 2, (3, 4))
        nursery.cancel_scope.cancel()


# -------------------------------------------------------------- callbacks


async def test_call_cast_and_info_reach_their_callbacks(autojump_clock):
    async with trio.open_nursery() as nursery:
        ref = await tp.start_server(nursery, Echo, ())
        await ref.cast("c1")
        ref.cast_nowait("c2")
        await ref.send("i1")
        ref.send_nowait("i2")
        await tp.cast(ref, "c3")
        await tp.send(ref, "i3")
        assert await ref.call("get") == (
            ("cast", "c1"),
            ("cast", "c2"),
            ("info", "i1"),
            ("info", "i2"),
            ("cast", "c3"),
            ("info", "i3"),
        )
        assert await tp.call(ref, "echo") == "echo"
        nursery.cancel_scope.cancel()


async def test_stop_with_reply_runs_terminate_before_the_caller_gets_it(autojump_clock):
    events = Log()

    class SlowTerminate(Terminating):
        async def terminate(self, reason, state):
            await trio.sleep(2)
            events.append(("terminate", reason, trio.current_time()))

    async with trio.open_nursery() as nursery:
        ref = await tp.start_server(nursery, SlowTerminate, events)
        assert await ref.call("stop-reply") == "bye"
        events.append(("reply", trio.current_time()))
        assert events == [("terminate", "normal", 2.0), ("reply", 2.0)]
        assert await ref.wait_stopped() == "normal"
        assert not ref.alive


async def test_stop_without_reply_gives_the_caller_server_exited_after_terminate(autojump_clock):
    events = Log()
    async with trio.open_nursery() as nursery:
        ref = await tp.start_server(nursery, Terminating, events)
        with pytest.raises(tp.ServerExited) as info:
            await ref.call("stop")
        events.append("caller saw exit")
        assert info.value.reason == "normal"
        assert events == [("terminate", "normal", 0), "caller saw exit"]
        assert not ref.alive


async def test_stop_from_handle_cast_runs_terminate_with_last_state(autojump_clock):
    events = Log()
    async with trio.open_nursery() as nursery:
        ref = await tp.start_server(nursery, Terminating, events)
        ref.cast_nowait("inc")
        ref.cast_nowait("inc")
        ref.cast_nowait(("stop", tp.Shutdown("done")))
        assert await ref.wait_stopped() == tp.Shutdown("done")
        assert events == [("terminate", tp.Shutdown("done"), 2)]
        assert ref.restarts == 0


async def test_handle_continue_runs_before_queued_messages(autojump_clock):
    class Cont(tp.GenServer):
        async def init(self, log):
            tp.current_server().cast_nowait("queued in init")
            log.append("init")
            return tp.Init(log, continue_="c1")

        async def handle_continue(self, arg, log):
            log.append(arg)
            if arg == "c1":
                return tp.NoReply(log, continue_="c2")
            return tp.NoReply(log)

        async def handle_cast(self, message, log):
            log.append(message)
            if message == "again":
                return tp.NoReply(log, continue_="c3")
            return tp.NoReply(log)

    log = Log()
    async with trio.open_nursery() as nursery:
        ref = await tp.start_server(nursery, Cont, log)
        ref.cast_nowait("after start")
        await trio.testing.wait_all_tasks_blocked()
        assert log == ["init", "c1", "c2", "queued in init", "after start"]
        log.clear()
        ref.cast_nowait("again")
        ref.cast_nowait("next")
        await trio.testing.wait_all_tasks_blocked()
        assert log == ["again", "c3", "next"]
        nursery.cancel_scope.cancel()


async def test_reply_is_sent_before_handle_continue_runs(autojump_clock):
    class ReplyThenWork(tp.GenServer):
        async def handle_call(self, request, caller, state):
            if request == "go":
                return tp.Reply("ok", state, continue_="work")
            return tp.Reply(state, state)

        async def handle_continue(self, arg, state):
            await trio.sleep(10)
            return tp.NoReply(("worked", trio.current_time()))

    async with trio.open_nursery() as nursery:
        ref = await tp.start_server(nursery, ReplyThenWork, None)
        assert await ref.call("go") == "ok"
        assert trio.current_time() == 0
        assert await ref.call("get", timeout=20) == ("worked", 10.0)
        nursery.cancel_scope.cancel()


async def test_stop_from_handle_continue(autojump_clock):
    events = Log()

    class ContStop(Terminating):
        async def init(self, events):
            return tp.Init((events, 0), continue_="stop")

        async def handle_continue(self, arg, state):
            return tp.Stop("normal", state)

    async with trio.open_nursery() as nursery:
        ref = await tp.start_server(nursery, ContStop, events)
        assert await ref.wait_stopped() == "normal"
        assert events == [("terminate", "normal", 0)]


# ----------------------------------------------------------- idle timeout


class Idle(tp.GenServer):
    """Logs ``(message, time)``; *rearm* re-arms the idle timeout after each cast."""

    async def init(self, log, timeout, rearm=None):
        return tp.Init((log, rearm), timeout=timeout)

    async def handle_cast(self, message, state):
        log, rearm = state
        log.append((message, trio.current_time()))
        return tp.NoReply(state, timeout=rearm)

    async def handle_info(self, message, state):
        log, rearm = state
        log.append((message, trio.current_time()))
        return tp.NoReply(state)


async def test_idle_timeout_fires_when_nothing_arrives(autojump_clock):
    log = Log()
    async with trio.open_nursery() as nursery:
        await tp.start_server(nursery, Idle, log, 10)
        await trio.sleep(30)
        assert log == [(tp.TIMEOUT, 10.0)]
        nursery.cancel_scope.cancel()


async def test_idle_timeout_cancelled_by_a_message(autojump_clock):
    log = Log()
    async with trio.open_nursery() as nursery:
        ref = await tp.start_server(nursery, Idle, log, 10)
        await trio.sleep(5)
        await ref.cast("hi")
        await trio.sleep(30)
        assert log == [("hi", 5.0)]
        nursery.cancel_scope.cancel()


async def test_idle_timeout_counts_from_the_last_message(autojump_clock):
    log = Log()
    async with trio.open_nursery() as nursery:
        ref = await tp.start_server(nursery, Idle, log, 10, 10)
        await trio.sleep(5)
        await ref.cast("a")
        await trio.sleep(8)
        await ref.cast("b")
        await trio.sleep(30)
        assert log == [("a", 5.0), ("b", 13.0), (tp.TIMEOUT, 23.0)]
        nursery.cancel_scope.cancel()


async def test_idle_timeout_from_a_call_reply(autojump_clock):
    class CallIdle(Idle):
        async def handle_call(self, request, caller, state):
            return tp.Reply("ok", state, timeout=3)

    log = Log()
    async with trio.open_nursery() as nursery:
        ref = await tp.start_server(nursery, CallIdle, log, None)
        await trio.sleep(2)
        assert await ref.call("arm") == "ok"
        await trio.sleep(10)
        assert log == [(tp.TIMEOUT, 5.0)]
        nursery.cancel_scope.cancel()


async def test_idle_timeout_zero_fires_at_once(autojump_clock):
    log = Log()
    async with trio.open_nursery() as nursery:
        await tp.start_server(nursery, Idle, log, 0)
        await trio.testing.wait_all_tasks_blocked()
        assert log == [(tp.TIMEOUT, 0.0)]
        nursery.cancel_scope.cancel()


async def test_idle_timeout_zero_yields_to_a_queued_message(autojump_clock):
    class QueueFirst(Idle):
        async def init(self, log):
            tp.current_server().cast_nowait("already queued")
            return tp.Init((log, None), timeout=0)

    log = Log()
    async with trio.open_nursery() as nursery:
        await tp.start_server(nursery, QueueFirst, log)
        await trio.sleep(10)
        assert log == [("already queued", 0.0)]
        nursery.cancel_scope.cancel()


# --------------------------------------------------------- invalid returns


async def test_handle_call_returning_none_is_invalid_return(autojump_clock):
    class Forgot(tp.GenServer):
        async def handle_call(self, request, caller, state):
            tp.Reply("lost", state)  # forgotten return

    async with trio.open_nursery() as nursery:
        ref = await tp.start_server(nursery, Forgot, 0)
        with pytest.raises(tp.ServerExited) as info:
            await ref.call("x")
        cause = info.value.__cause__
        assert isinstance(cause, tp.InvalidReturn)
        assert isinstance(cause, TypeError)
        assert info.value.reason is cause
        assert re.search(r"\bhandle_call\b", str(cause))
        assert re.search(r"\bNone\b", str(cause))
        await trio.testing.wait_all_tasks_blocked()
        assert ref.restarts == 1
        nursery.cancel_scope.cancel()


async def test_handle_call_returning_other_value_names_it(autojump_clock):
    class Wrong(tp.GenServer):
        async def handle_call(self, request, caller, state):
            return ("reply", 42)

    async with trio.open_nursery() as nursery:
        ref = await tp.start_server(nursery, Wrong, 0)
        with pytest.raises(tp.ServerExited) as info:
            await ref.call("x")
        assert isinstance(info.value.__cause__, tp.InvalidReturn)
        assert "handle_call" in str(info.value.__cause__)
        assert "('reply', 42)" in str(info.value.__cause__)
        nursery.cancel_scope.cancel()


@pytest.mark.parametrize("callback", ["handle_cast", "handle_info", "handle_continue"])
async def test_other_callbacks_returning_none_crash_with_invalid_return(autojump_clock, callback):
    class Forgot(tp.GenServer):
        async def init(self):
            if callback == "handle_continue":
                return tp.Init(0, continue_="go")
            return 0

        async def handle_cast(self, message, state):
            pass

        async def handle_info(self, message, state):
            pass

        async def handle_continue(self, arg, state):
            pass

    # every incarnation crashes at once: the fourth restart in 5 s gives up
    # and the last exception reaches the nursery
    with pytest.RaisesGroup(
        pytest.RaisesExc(tp.InvalidReturn, match=rf"^{callback} returned None\b")
    ):
        async with trio.open_nursery() as nursery:
            ref = await tp.start_server(nursery, Forgot, preserve=False)
            for _ in range(4):
                if callback == "handle_cast":
                    ref.cast_nowait("m")
                elif callback == "handle_info":
                    ref.send_nowait("m")
    assert not ref.alive


async def test_default_handle_call_crashes_the_server(autojump_clock):
    class NoCall(tp.GenServer):
        pass

    async with trio.open_nursery() as nursery:
        ref = await tp.start_server(nursery, NoCall, 0)
        with pytest.raises(tp.ServerExited) as info:
            await ref.call("anything")
        assert isinstance(info.value.__cause__, Exception)
        await trio.testing.wait_all_tasks_blocked()
        assert ref.restarts == 1
        assert ref.alive
        nursery.cancel_scope.cancel()


async def test_default_handle_cast_crashes_the_server(autojump_clock):
    class NoCast(tp.GenServer):
        async def handle_call(self, request, caller, state):
            return tp.Reply(state, state)

    async with trio.open_nursery() as nursery:
        ref = await tp.start_server(nursery, NoCast, 0)
        ref.cast_nowait("anything")
        await trio.testing.wait_all_tasks_blocked()
        assert ref.restarts == 1
        assert await ref.call("get") == 0
        nursery.cancel_scope.cancel()


async def test_default_handle_info_logs_and_ignores(autojump_clock, caplog):
    caplog.set_level(logging.WARNING, logger="trio_peeper")
    async with trio.open_nursery() as nursery:
        ref = await tp.start_server(nursery, Counter, 3)
        ref.send_nowait(("stray", 99))
        await trio.testing.wait_all_tasks_blocked()
        records = [r for r in caplog.records if r.name == "trio_peeper"]
        assert len(records) == 1
        assert "('stray', 99)" in records[0].getMessage()
        assert ref.restarts == 0
        assert await ref.call("get") == 3
        nursery.cancel_scope.cancel()


# -------------------------------------------------------------- terminate


async def test_terminate_runs_on_ref_stop(autojump_clock):
    events = Log()
    async with trio.open_nursery() as nursery:
        ref = await tp.start_server(nursery, Terminating, events, 5)
        assert await ref.stop("bye") is None
        assert events == [("terminate", "bye", 5)]
        assert not ref.alive
        assert await ref.wait_stopped() == "bye"


async def test_ref_stop_default_reason_is_normal(autojump_clock):
    events = Log()
    async with trio.open_nursery() as nursery:
        ref = await tp.start_server(nursery, Terminating, events)
        await ref.stop()
        assert events == [("terminate", "normal", 0)]


async def test_ref_stop_is_for_good_even_with_abnormal_reason(autojump_clock):
    events = Log()
    async with trio.open_nursery() as nursery:
        ref = await tp.start_server(nursery, Terminating, events, name="t")
        await ref.stop("weird")
        await trio.testing.wait_all_tasks_blocked()
        assert not ref.alive
        assert ref.restarts == 0
        assert tp.whereis("t") is None
        assert events == [("terminate", "weird", 0)]


async def test_terminate_runs_on_supervisor_shutdown(autojump_clock):
    events = Log()
    async with tp.open_supervisor(tp.child(Terminating, events, 9)) as sup:
        [info] = sup.which_children()
        ref = info.ref
        assert ref.alive
    assert events == [("terminate", tp.SHUTDOWN, 9)]
    assert not ref.alive


async def test_terminate_does_not_run_on_kill(autojump_clock):
    events = Log()
    async with trio.open_nursery() as nursery:
        ref = await tp.start_server(nursery, Terminating, events, 1)
        ref.kill()
        await trio.testing.wait_all_tasks_blocked()
        assert ref.restarts == 1
        assert ref.alive
        assert events == []
        nursery.cancel_scope.cancel()


async def test_terminate_does_not_run_after_a_crash(autojump_clock):
    events = Log()
    async with trio.open_nursery() as nursery:
        ref = await tp.start_server(nursery, Terminating, events)
        ref.cast_nowait("crash")
        await trio.testing.wait_all_tasks_blocked()
        assert ref.restarts == 1
        assert events == []
        nursery.cancel_scope.cancel()


async def test_ref_stop_inside_the_server_is_calling_self(autojump_clock):
    events = Log()
    async with trio.open_nursery() as nursery:
        ref = await tp.start_server(nursery, Terminating, events)
        err = await ref.call("stop-self")
        assert isinstance(err, tp.CallingSelf)
        assert re.search(r"cannot stop itself$", str(err))
        assert ref.alive
        assert events == []
        nursery.cancel_scope.cancel()


async def test_ref_stop_on_a_stopped_server_is_noproc(autojump_clock):
    events = Log()
    async with trio.open_nursery() as nursery:
        ref = await tp.start_server(nursery, Terminating, events)
        await ref.stop()
        with pytest.raises(tp.NoProc):
            await ref.stop()
        assert events == [("terminate", "normal", 0)]


async def test_ref_stop_timeout_kills_a_server_stuck_in_a_callback(autojump_clock):
    events = Log()
    async with trio.open_nursery() as nursery:
        ref = await tp.start_server(nursery, Terminating, events)
        ref.cast_nowait("hang")
        await trio.testing.wait_all_tasks_blocked()
        await ref.stop(timeout=2)
        assert trio.current_time() == pytest.approx(2.0)
        assert not ref.alive
        assert ref.restarts == 0
        assert events == []  # killed: no terminate
        assert await ref.wait_stopped() is tp.KILLED


async def test_ref_stop_timeout_kills_a_server_stuck_in_terminate(autojump_clock):
    events = Log()
    async with trio.open_nursery() as nursery:
        ref = await tp.start_server(nursery, HangingTerminate, events)
        await ref.stop(timeout=3)
        assert trio.current_time() == pytest.approx(3.0)
        assert events == ["terminate started"]
        assert not ref.alive
        assert ref.restarts == 0


async def test_stop_request_is_handled_after_queued_messages(autojump_clock):
    events = Log()
    async with trio.open_nursery() as nursery:
        ref = await tp.start_server(nursery, Terminating, events)
        ref.cast_nowait("slow")
        ref.cast_nowait("inc")
        ref.cast_nowait("inc")
        ref.cast_nowait("inc")
        await ref.stop("done")
        # the running callback was not interrupted and every queued cast ran first
        assert events == [("slow done", 5.0), ("terminate", "done", 3)]


async def test_call_queued_before_a_stop_is_answered(autojump_clock):
    events = Log()
    got = []
    async with trio.open_nursery() as nursery:
        ref = await tp.start_server(nursery, Terminating, events)
        ref.cast_nowait("slow")

        async def caller():
            got.append(await ref.call("get", timeout=10))

        nursery.start_soon(caller)
        await trio.testing.wait_all_tasks_blocked()
        await ref.stop()
    assert got == [0]
    assert events == [("slow done", 5.0), ("terminate", "normal", 0)]


async def test_kill_of_a_stopped_server_does_nothing(autojump_clock):
    events = Log()
    async with trio.open_nursery() as nursery:
        ref = await tp.start_server(nursery, Terminating, events)
        await ref.stop()
        ref.kill()
        await trio.testing.wait_all_tasks_blocked()
        assert not ref.alive
        assert ref.restarts == 0
        assert await ref.wait_stopped() == "normal"


async def test_stop_from_callback_with_abnormal_reason_restarts_standalone(autojump_clock):
    events = Log()
    async with trio.open_nursery() as nursery:
        ref = await tp.start_server(nursery, Terminating, events, preserve=False)
        ref.cast_nowait("inc")
        ref.cast_nowait(("stop", "oops"))
        await trio.testing.wait_all_tasks_blocked()
        assert events == [("terminate", "oops", 1)]
        assert ref.alive
        assert ref.restarts == 1
        assert await ref.call("get") == 0
        nursery.cancel_scope.cancel()


# ------------------------------------------------------ standalone restart


async def test_crash_restarts_standalone_and_queued_messages_survive(autojump_clock):
    outcomes = []

    async def caller(ref):
        try:
            outcomes.append(await ref.call("crash"))
        except tp.ServerExited as e:
            outcomes.append(e)

    async with trio.open_nursery() as nursery:
        ref = await tp.start_server(nursery, Counter, 10, name="ctr", preserve=False)
        ref.cast_nowait("inc")
        nursery.start_soon(caller, ref)
        await trio.testing.wait_all_tasks_blocked()
        # queued behind the crashing call: handled by the next incarnation
        ref.cast_nowait("inc")
        ref.cast_nowait("inc")
        await trio.testing.wait_all_tasks_blocked()
        assert ref.restarts == 1
        assert ref.alive
        assert tp.whereis("ctr") is ref
        assert await ref.call("get") == 12  # init ran again (10), then the two queued incs
        nursery.cancel_scope.cancel()
    [exc] = outcomes
    assert isinstance(exc, tp.ServerExited)
    assert isinstance(exc.__cause__, ValueError)
    assert exc.reason is exc.__cause__


async def test_crash_of_preserving_server_keeps_committed_state(autojump_clock):
    async with trio.open_nursery() as nursery:
        ref = await tp.start_server(nursery, Counter, 0)
        for _ in range(5):
            ref.cast_nowait("inc")
        ref.cast_nowait("crash")
        ref.cast_nowait("inc")
        assert await ref.call("get") == 6
        assert ref.restarts == 1
        nursery.cancel_scope.cancel()


@pytest.mark.parametrize(
    "reason", ["normal", tp.SHUTDOWN, tp.Shutdown("bye")], ids=["normal", "SHUTDOWN", "Shutdown"]
)
async def test_normalish_stop_from_callback_is_for_good(autojump_clock, reason):
    events = Log()
    async with trio.open_nursery() as nursery:
        ref = await tp.start_server(nursery, Terminating, events, name="gone")
        ref.cast_nowait(("stop", reason))
        assert await ref.wait_stopped() == reason
        assert not ref.alive
        assert ref.restarts == 0
        assert tp.whereis("gone") is None
        with pytest.raises(tp.NoProc):
            await ref.call("get")


async def test_spaced_out_crashes_do_not_exceed_intensity(autojump_clock):
    async with trio.open_nursery() as nursery:
        ref = await tp.start_server(nursery, Counter, 0)
        for _ in range(6):
            ref.cast_nowait("crash")
            await trio.sleep(2)
        assert ref.restarts == 6
        assert ref.alive
        nursery.cancel_scope.cancel()


async def test_more_than_three_restarts_in_five_seconds_propagate(autojump_clock):
    with pytest.RaisesGroup(pytest.RaisesExc(ValueError, match=r"^bad cast$")):
        async with trio.open_nursery() as nursery:
            ref = await tp.start_server(nursery, Counter, 0, name="flaky")
            for _ in range(3):
                ref.cast_nowait("crash")
            await trio.testing.wait_all_tasks_blocked()
            assert ref.restarts == 3
            assert ref.alive
            ref.cast_nowait("crash")
    assert not ref.alive
    assert ref.restarts == 3
    assert tp.whereis("flaky") is None


async def test_kill_restarts_with_reason_killed(autojump_clock):
    class Hang(Counter):
        async def handle_call(self, request, caller, state):
            if request == "hang":
                await trio.sleep_forever()
            return await super().handle_call(request, caller, state)

    async with trio.open_nursery() as nursery:
        ref = await tp.start_server(nursery, Hang, 4)
        ref.cast_nowait("inc")

        async def killer():
            await trio.sleep(1)
            ref.kill()

        nursery.start_soon(killer)
        with pytest.raises(tp.ServerExited) as info:
            await ref.call("hang")
        assert info.value.reason is tp.KILLED
        assert info.value.__cause__ is None
        await trio.testing.wait_all_tasks_blocked()
        assert ref.restarts == 1
        assert ref.alive
        assert await ref.call("get") == 5
        nursery.cancel_scope.cancel()


# ------------------------------------------------------------------ names


async def test_names_whereis_and_messaging_by_name(autojump_clock):
    async with trio.open_nursery() as nursery:
        ref = await tp.start_server(nursery, Counter, 0, name="counter")
        assert ref.name == "counter"
        assert tp.whereis("counter") is ref
        await tp.cast("counter", "inc")
        await tp.send("counter", "ignored info")
        assert await tp.call("counter", "get") == 1
        assert await tp.call("counter", "get", timeout=1) == 1
        nursery.cancel_scope.cancel()


async def test_tuple_names_are_fine(autojump_clock):
    async with trio.open_nursery() as nursery:
        ref = await tp.start_server(nursery, Counter, 0, name=("worker", 1))
        assert tp.whereis(("worker", 1)) is ref
        assert tp.whereis(("worker", 2)) is None
        nursery.cancel_scope.cancel()


async def test_unhashable_name_is_rejected(autojump_clock):
    async with trio.open_nursery() as nursery:
        with pytest.raises(TypeError):
            await tp.start_server(nursery, Counter, 0, name=["not", "hashable"])


async def test_unknown_start_option_is_rejected(autojump_clock):
    async with trio.open_nursery() as nursery:
        with pytest.raises(TypeError, match=r"bogus"):
            await tp.start_server(nursery, Counter, 0, bogus=1)
        with pytest.raises(TypeError):
            await tp.start_server(nursery, object)


async def test_unknown_name_is_noproc(autojump_clock):
    assert tp.whereis("nobody") is None
    with pytest.raises(tp.NoProc):
        await tp.call("nobody", "get")
    with pytest.raises(tp.NoProc):
        await tp.cast("nobody", "inc")
    with pytest.raises(tp.NoProc):
        await tp.send("nobody", "hello")


async def test_duplicate_name_is_already_started(autojump_clock):
    async with trio.open_nursery() as nursery:
        ref = await tp.start_server(nursery, Counter, 1, name="dup")
        with pytest.raises(tp.AlreadyStarted) as info:
            await tp.start_server(nursery, Counter, 2, name="dup")
        assert info.value.ref is ref
        assert tp.whereis("dup") is ref
        assert await tp.call("dup", "get") == 1
        nursery.cancel_scope.cancel()


async def test_name_is_freed_when_stopped_for_good(autojump_clock):
    async with trio.open_nursery() as nursery:
        first = await tp.start_server(nursery, Counter, 1, name="reused")
        await first.stop()
        assert tp.whereis("reused") is None
        with pytest.raises(tp.NoProc):
            await tp.call("reused", "get")
        second = await tp.start_server(nursery, Counter, 2, name="reused")
        assert second is not first
        assert second != first
        assert tp.whereis("reused") is second
        assert await tp.call("reused", "get") == 2
        nursery.cancel_scope.cancel()


async def test_name_kept_across_restarts(autojump_clock):
    async with trio.open_nursery() as nursery:
        ref = await tp.start_server(nursery, Counter, 0, name="keeper")
        await tp.cast("keeper", "crash")
        await trio.testing.wait_all_tasks_blocked()
        assert ref.restarts == 1
        assert tp.whereis("keeper") is ref
        await tp.cast("keeper", "inc")
        assert await tp.call("keeper", "get") == 1
        with pytest.raises(tp.AlreadyStarted):
            await tp.start_server(nursery, Counter, 0, name="keeper")
        nursery.cancel_scope.cancel()


async def test_refs_compare_and_hash_by_server_identity(autojump_clock):
    class Who(Counter):
        async def handle_call(self, request, caller, state):
            return tp.Reply(tp.current_server(), state)

    async with trio.open_nursery() as nursery:
        a = await tp.start_server(nursery, Who, 0, name="a")
        b = await tp.start_server(nursery, Who, 0)
        same = await a.call("who")
        assert same == a
        assert same is a or hash(same) == hash(a)
        assert tp.whereis("a") == a
        assert a != b
        assert len({a, b, same, tp.whereis("a")}) == 2
        a.kill()
        await trio.testing.wait_all_tasks_blocked()
        assert await a.call("who") == a  # the same ref across a restart
        nursery.cancel_scope.cancel()


def test_server_ref_is_not_constructed_by_users():
    with pytest.raises(TypeError):
        tp.ServerRef()


# ------------------------------------------------------------- statistics


async def test_statistics_after_a_known_sequence(autojump_clock):
    class Gate(tp.GenServer):
        async def init(self, gate):
            return (gate, 0)

        async def handle_call(self, request, caller, state):
            return tp.Reply(state[1], state)

        async def handle_cast(self, message, state):
            gate, n = state
            if message == "wait":
                await gate.wait()
            return tp.NoReply((gate, n + 1))

    gate = trio.Event()
    async with trio.open_nursery() as nursery:
        ref = await tp.start_server(nursery, Gate, gate)
        stats = ref.statistics()
        assert isinstance(stats, tp.Statistics)
        assert (stats.mailbox_len, stats.handled, stats.restarts, stats.state_commits) == (0, 0, 0, 0)

        ref.cast_nowait("a")
        ref.cast_nowait("b")
        assert await ref.call("get") == 2
        assert ref.statistics() == tp.Statistics(
            mailbox_len=0, handled=3, restarts=0, state_commits=3
        )

        ref.cast_nowait("wait")
        await trio.testing.wait_all_tasks_blocked()
        ref.cast_nowait("c")
        ref.send_nowait("d")  # default handle_info: ignored, but a commit of the same state
        ref.cast_nowait("e")
        stats = ref.statistics()
        assert stats.mailbox_len == 3
        assert stats.handled == 4  # "wait" was taken from the mailbox

        gate.set()
        await trio.testing.wait_all_tasks_blocked()
        assert ref.statistics() == tp.Statistics(
            mailbox_len=0, handled=7, restarts=0, state_commits=7
        )

        ref.kill()  # while idle: nothing is handled by the kill
        await trio.testing.wait_all_tasks_blocked()
        stats = ref.statistics()
        assert stats.restarts == 1 == ref.restarts
        assert stats.handled == 7
        assert stats.mailbox_len == 0
        assert await ref.call("get") == 5
        nursery.cancel_scope.cancel()


# -------------------------------------------------------------- is_normal


@pytest.mark.parametrize(
    ("reason", "expected"),
    [
        ("normal", True),
        (tp.SHUTDOWN, True),
        (tp.Shutdown("x"), True),
        (tp.Shutdown(None), True),
        (tp.KILLED, False),
        (RuntimeError("boom"), False),
        (tp.InvalidReturn("handle_call", None, "tp.Reply"), False),
        ("shutdown", False),
        ("Normal", False),
        ("abnormal", False),
        (None, False),
        (0, False),
        (("shutdown", "x"), False),
    ],
)
def test_is_normal(reason, expected):
    assert tp.is_normal(reason) is expected


async def test_a_flooded_server_lets_other_tasks_run(autojump_clock):
    # DESIGN.md "The hot path": the loop yields at least every N messages, so a
    # mailbox full of casts cannot starve the other tasks of the run
    seen = []
    async with trio.open_nursery() as nursery:
        ref = await tp.start_server(nursery, Counter, 0)
        for _ in range(1000):
            ref.cast_nowait("inc")

        async def watcher():
            while ref.statistics().handled < 1000:
                seen.append(ref.statistics().handled)
                await trio.sleep(0)

        nursery.start_soon(watcher)
        assert await ref.call("get") == 1000
        ref.kill()
        nursery.cancel_scope.cancel()
    assert any(0 < handled < 1000 for handled in seen), seen  # it ran in the middle of the flood
