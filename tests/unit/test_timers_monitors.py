"""Monitors, ``wait_stopped`` and ``send_after`` timers (API.md section 2, 10).

``autojump_clock`` is an explicit argument: pytest-trio only passes a clock it
finds among the test's own arguments.
"""

from __future__ import annotations

import pytest
import trio
import trio.testing

import trio_peeper as tp
from _shared import Log


class Target(tp.GenServer):
    """Crashes on ``"crash"``, stops on ``("stop", reason)``; logs infos with their time."""

    async def init(self, log=None):
        return log if log is not None else []

    async def handle_call(self, request, caller, state):
        return tp.Reply(list(state), state)

    async def handle_cast(self, message, state):
        if message == "crash":
            raise RuntimeError("target crashed")
        if isinstance(message, tuple) and message[0] == "stop":
            return tp.Stop(message[1], state)
        return tp.NoReply(state)

    async def handle_info(self, message, state):
        state.append((message, trio.current_time()))
        return tp.NoReply(state)


class Watcher(tp.GenServer):
    """Monitors what it is told to (``("watch", ref)``); logs every ``Down`` it gets."""

    async def init(self):
        return {"downs": [], "monitors": {}}

    async def handle_call(self, request, caller, state):
        if request == "downs":
            return tp.Reply(list(state["downs"]), state)
        kind, ref = request
        if kind == "watch":
            monitor = self.monitor(ref)
            state["monitors"][ref] = monitor
            return tp.Reply(monitor, state)
        if kind == "unwatch":
            state["monitors"].pop(ref).cancel()
            return tp.Reply(None, state)
        raise AssertionError(request)

    async def handle_info(self, message, state):
        state["downs"].append(message)
        return tp.NoReply(state)


# ----------------------------------------------------------- ref.monitor()


async def test_monitor_wait_returns_the_reason_of_a_stop_for_good(autojump_clock):
    async with trio.open_nursery() as nursery:
        ref = await tp.start_server(nursery, Target)
        monitor = ref.monitor()
        assert isinstance(monitor, tp.Monitor)

        async def stopper():
            await trio.sleep(3)
            await ref.stop("finished")

        nursery.start_soon(stopper)
        assert await monitor.wait() == "finished"
        assert trio.current_time() == pytest.approx(3)
        # waiting again returns the same reason at once
        assert await monitor.wait() == "finished"


async def test_monitor_is_not_triggered_by_a_restart(autojump_clock):
    reasons = []
    async with trio.open_nursery() as nursery:
        ref = await tp.start_server(nursery, Target)
        monitor = ref.monitor()

        async def waiter():
            reasons.append(await monitor.wait())

        nursery.start_soon(waiter)
        ref.cast_nowait("crash")
        await trio.testing.wait_all_tasks_blocked()
        ref.kill()
        await trio.testing.wait_all_tasks_blocked()
        assert ref.restarts == 2
        assert reasons == []
        ref.cast_nowait(("stop", tp.Shutdown("at last")))
        await trio.testing.wait_all_tasks_blocked()
        assert reasons == [tp.Shutdown("at last")]


async def test_monitor_after_intensity_exceeded_gets_the_exception(autojump_clock):
    reasons = []

    async def waiter(monitor):
        reasons.append(await monitor.wait())

    with pytest.RaisesGroup(pytest.RaisesExc(RuntimeError, match=r"^target crashed$")):
        async with trio.open_nursery() as nursery:
            ref = await tp.start_server(nursery, Target)
            monitor = ref.monitor()
            nursery.start_soon(waiter, monitor)
            await trio.testing.wait_all_tasks_blocked()  # the waiter is parked in wait()
            for _ in range(4):
                ref.cast_nowait("crash")
    [reason] = reasons
    assert isinstance(reason, RuntimeError)
    assert await monitor.wait() is reason
    assert await ref.wait_stopped() is reason
    assert not ref.alive


async def test_monitor_of_an_already_stopped_server(autojump_clock):
    async with trio.open_nursery() as nursery:
        ref = await tp.start_server(nursery, Target)
        await ref.stop("gone")
        monitor = ref.monitor()
        with trio.fail_after(1):
            assert await monitor.wait() == "gone"


async def test_cancelled_monitor_does_not_fire_but_others_do(autojump_clock):
    async with trio.open_nursery() as nursery:
        ref = await tp.start_server(nursery, Target)
        cancelled = ref.monitor()
        kept = ref.monitor()
        cancelled.cancel()
        await ref.stop("bye")
        assert await kept.wait() == "bye"
        assert await cancelled.wait() is None


# ----------------------------------------------------------- wait_stopped


async def test_wait_stopped_returns_the_reason(autojump_clock):
    async with trio.open_nursery() as nursery:
        ref = await tp.start_server(nursery, Target)
        ref.cast_nowait("crash")  # a restart is not a stop for good

        async def stopper():
            await trio.sleep(2)
            ref.cast_nowait(("stop", tp.SHUTDOWN))

        nursery.start_soon(stopper)
        assert await ref.wait_stopped() is tp.SHUTDOWN
        assert trio.current_time() == pytest.approx(2)
        assert ref.restarts == 1
        # again, on a stopped server: at once
        assert await ref.wait_stopped() is tp.SHUTDOWN


async def test_wait_stopped_after_kill_by_stop_timeout_is_killed(autojump_clock):
    class Stuck(Target):
        async def terminate(self, reason, state):
            await trio.sleep_forever()

    async with trio.open_nursery() as nursery:
        ref = await tp.start_server(nursery, Stuck)
        await ref.stop(timeout=1)
        assert await ref.wait_stopped() is tp.KILLED


# ---------------------------------------------------- self.monitor in a server


async def test_self_monitor_delivers_down_to_handle_info(autojump_clock):
    async with trio.open_nursery() as nursery:
        target = await tp.start_server(nursery, Target)
        watcher = await tp.start_server(nursery, Watcher)
        monitor = await watcher.call(("watch", target))
        assert isinstance(monitor, tp.Monitor)
        await target.stop("done")
        await trio.testing.wait_all_tasks_blocked()
        [down] = await watcher.call("downs")
        assert down == tp.Down(target, "done")
        assert down.ref is target
        assert down.reason == "done"
        nursery.cancel_scope.cancel()


async def test_self_monitor_ignores_restarts_of_the_target(autojump_clock):
    async with trio.open_nursery() as nursery:
        target = await tp.start_server(nursery, Target)
        watcher = await tp.start_server(nursery, Watcher)
        await watcher.call(("watch", target))
        target.cast_nowait("crash")
        await trio.testing.wait_all_tasks_blocked()
        assert target.restarts == 1
        assert await watcher.call("downs") == []
        target.cast_nowait(("stop", "normal"))
        await trio.testing.wait_all_tasks_blocked()
        assert await watcher.call("downs") == [tp.Down(target, "normal")]
        nursery.cancel_scope.cancel()


async def test_self_monitor_of_an_already_stopped_ref(autojump_clock):
    async with trio.open_nursery() as nursery:
        target = await tp.start_server(nursery, Target)
        await target.stop("early")
        watcher = await tp.start_server(nursery, Watcher)
        await watcher.call(("watch", target))
        await trio.testing.wait_all_tasks_blocked()
        assert await watcher.call("downs") == [tp.Down(target, "early")]
        nursery.cancel_scope.cancel()


async def test_self_monitor_cancel_prevents_down(autojump_clock):
    async with trio.open_nursery() as nursery:
        a = await tp.start_server(nursery, Target)
        b = await tp.start_server(nursery, Target)
        watcher = await tp.start_server(nursery, Watcher)
        await watcher.call(("watch", a))
        await watcher.call(("watch", b))
        await watcher.call(("unwatch", a))
        await a.stop("a gone")
        await b.stop("b gone")
        await trio.testing.wait_all_tasks_blocked()
        assert await watcher.call("downs") == [tp.Down(b, "b gone")]
        nursery.cancel_scope.cancel()


async def test_two_monitors_from_one_server_both_fire(autojump_clock):
    async with trio.open_nursery() as nursery:
        target = await tp.start_server(nursery, Target)
        watcher = await tp.start_server(nursery, Watcher)

        class Double(Watcher):
            async def handle_call(self, request, caller, state):
                if request[0] == "watch":
                    self.monitor(request[1])
                return await super().handle_call(request, caller, state)

        double = await tp.start_server(nursery, Double)
        await double.call(("watch", target))
        await watcher.call(("watch", target))
        await target.stop("x")
        await trio.testing.wait_all_tasks_blocked()
        assert await double.call("downs") == [tp.Down(target, "x")] * 2
        assert await watcher.call("downs") == [tp.Down(target, "x")]
        nursery.cancel_scope.cancel()


async def test_down_survives_a_restart_of_the_watcher(autojump_clock):
    class FragileWatcher(Watcher):
        async def handle_cast(self, message, state):
            raise RuntimeError("watcher crashed")

    async with trio.open_nursery() as nursery:
        target = await tp.start_server(nursery, Target)
        watcher = await tp.start_server(nursery, FragileWatcher)
        await watcher.call(("watch", target))
        watcher.cast_nowait("crash")
        await trio.testing.wait_all_tasks_blocked()
        assert watcher.restarts == 1
        await target.stop("later")
        await trio.testing.wait_all_tasks_blocked()
        assert await watcher.call("downs") == [tp.Down(target, "later")]
        nursery.cancel_scope.cancel()


# -------------------------------------------------------------- send_after


async def test_send_after_delivers_at_the_right_time(autojump_clock):
    log = Log()
    async with trio.open_nursery() as nursery:
        ref = await tp.start_server(nursery, Target, log)
        timer = tp.send_after(ref, "three", 3)
        tp.send_after(ref, "one", 1)
        tp.send_after(ref, "half", 0.5)
        tp.send_after(ref, "two and a bit", 2.25)
        assert isinstance(timer, tp.Timer)
        await trio.sleep(10)
        assert log == [("half", 0.5), ("one", 1.0), ("two and a bit", 2.25), ("three", 3.0)]
        nursery.cancel_scope.cancel()


async def test_send_after_zero_delivers_promptly(autojump_clock):
    log = Log()
    async with trio.open_nursery() as nursery:
        ref = await tp.start_server(nursery, Target, log)
        await trio.sleep(4)
        tp.send_after(ref, "now", 0)
        await trio.sleep(1)
        assert log == [("now", 4.0)]
        nursery.cancel_scope.cancel()


async def test_send_after_by_name(autojump_clock):
    log = Log()
    async with trio.open_nursery() as nursery:
        await tp.start_server(nursery, Target, log, name="timed")
        tp.send_after("timed", "by name", 2)
        await trio.sleep(5)
        assert log == [("by name", 2.0)]
        nursery.cancel_scope.cancel()


async def test_send_after_unknown_name_is_noproc(autojump_clock):
    with pytest.raises(tp.NoProc):
        tp.send_after("nobody", "x", 1)


@pytest.mark.parametrize("delay", [-1, float("inf"), float("nan"), "1", True])
async def test_send_after_rejects_bad_delays(autojump_clock, delay):
    async with trio.open_nursery() as nursery:
        ref = await tp.start_server(nursery, Target)
        with pytest.raises((ValueError, TypeError)):
            tp.send_after(ref, "x", delay)
        nursery.cancel_scope.cancel()


async def test_timer_cancel_prevents_delivery(autojump_clock):
    log = Log()
    async with trio.open_nursery() as nursery:
        ref = await tp.start_server(nursery, Target, log)
        cancelled = tp.send_after(ref, "cancelled", 2)
        kept = tp.send_after(ref, "kept", 3)
        await trio.sleep(1)
        assert cancelled.cancel() is True
        assert cancelled.cancel() is False  # already cancelled
        await trio.sleep(5)
        assert log == [("kept", 3.0)]
        assert kept.cancel() is False  # already fired
        nursery.cancel_scope.cancel()


async def test_timers_survive_a_restart_of_the_target(autojump_clock):
    async with trio.open_nursery() as nursery:
        ref = await tp.start_server(nursery, Target, [], preserve=False)
        tp.send_after(ref, "after restart", 5)
        await trio.sleep(1)
        ref.cast_nowait("crash")
        await trio.sleep(1)
        ref.kill()
        await trio.sleep(1)
        assert ref.restarts == 2
        assert await ref.call("log") == []
        await trio.sleep(5)
        assert await ref.call("log") == [("after restart", 5.0)]
        nursery.cancel_scope.cancel()


async def test_timer_to_a_stopped_server_is_dropped(autojump_clock):
    log = Log()
    async with trio.open_nursery() as nursery:
        ref = await tp.start_server(nursery, Target, log)
        timer = tp.send_after(ref, "too late", 2)
        await ref.stop()
        await trio.sleep(5)
        assert log == []
        assert timer.cancel() is False


async def test_timer_by_name_reaches_the_current_holder(autojump_clock):
    first_log, second_log = Log(), Log()
    async with trio.open_nursery() as nursery:
        first = await tp.start_server(nursery, Target, first_log, name="slot")
        tp.send_after("slot", "for whoever holds slot", 3)
        await first.stop()
        await tp.start_server(nursery, Target, second_log, name="slot")
        await trio.sleep(5)
        assert first_log == []
        assert second_log == [("for whoever holds slot", 3.0)]
        nursery.cancel_scope.cancel()
