"""Dynamic supervisors (API.md sections 4 and 10), after Elixir's dynamic_supervisor_test.exs."""

from __future__ import annotations

import math

import pytest
import trio
import trio.testing

import trio_peeper as tp
from _shared import Log


class Worker(tp.GenServer):
    """``init(log, label, *rest)``; logs init/terminate as ``(event, label, detail)``."""

    async def init(self, log, label="w", *rest):
        log.append(("init", label, rest))
        return {"log": log, "label": label, "rest": rest, "term_delay": 0}

    async def handle_call(self, request, caller, state):
        if request == "state":
            return tp.Reply((state["label"], state["rest"]), state)
        if request == "crash":
            raise RuntimeError("crash on call")
        if type(request) is tuple and request[0] == "sleep":
            await trio.sleep(request[1])
            return tp.Reply("slept", state)
        if type(request) is tuple and request[0] == "term_delay":
            return tp.Reply("ok", {**state, "term_delay": request[1]})
        return None

    async def handle_cast(self, message, state):
        if message == "crash":
            raise RuntimeError("crash on cast")
        if type(message) is tuple and message[0] == "stop":
            return tp.Stop(message[1], state)
        return None

    async def terminate(self, reason, state):
        state["log"].append(("terminate", state["label"], reason))
        if state["term_delay"]:
            await trio.sleep(state["term_delay"])
            state["log"].append(("terminated", state["label"], reason))


class Ignoring(tp.GenServer):
    async def init(self, *args):
        return tp.IGNORE


class Failing(tp.GenServer):
    async def init(self, *args):
        raise ValueError(f"bad init {args!r}")


def events(log, kind):
    return [entry for entry in log if entry[0] == kind]


async def settle():
    await trio.testing.wait_all_tasks_blocked()


# --------------------------------------------------------------- start_child


async def test_start_child_returns_a_running_server_ref():
    log = Log()
    async with tp.open_dynamic_supervisor() as dsup:
        assert dsup.which_children() == []
        assert dsup.count_children() == tp.ChildCounts(0, 0, 0, 0)
        ref = await dsup.start_child(tp.child(Worker, log, "a", 1))
        assert isinstance(ref, tp.ServerRef)
        assert ref.alive
        assert await ref.call("state") == ("a", (1,))
        assert dsup.which_children() == [tp.ChildInfo(None, ref, "worker", "permanent", "running")]
        assert dsup.count_children() == tp.ChildCounts(1, 1, 0, 1)
    assert not ref.alive
    assert log == [("init", "a", (1,)), ("terminate", "a", tp.SHUTDOWN)]


async def test_start_child_with_init_ignore_returns_none_and_lists_nothing():
    async with tp.open_dynamic_supervisor() as dsup:
        assert await dsup.start_child(tp.child(Ignoring, 1)) is None
        assert dsup.which_children() == []
        assert dsup.count_children() == tp.ChildCounts(0, 0, 0, 0)


async def test_start_child_with_init_raising_raises_start_error_and_lists_nothing():
    log = Log()
    async with tp.open_dynamic_supervisor() as dsup:
        with pytest.raises(tp.StartError) as info:
            await dsup.start_child(tp.child(Failing, "x"))
        assert type(info.value.__cause__) is ValueError
        assert str(info.value.__cause__) == "bad init ('x',)"
        assert dsup.which_children() == []
        assert dsup.count_children() == tp.ChildCounts(0, 0, 0, 0)
        # the supervisor is unaffected and keeps accepting children
        ref = await dsup.start_child(tp.child(Worker, log, "after"))
        assert ref.alive
        assert [c.ref for c in dsup.which_children()] == [ref]


async def test_extra_args_are_prepended_to_the_spec_args():
    log = Log()
    async with tp.open_dynamic_supervisor(extra_args=(log, "extra")) as dsup:
        ref = await dsup.start_child(tp.child(Worker, "spec1", "spec2"))
        assert await ref.call("state") == ("extra", ("spec1", "spec2"))
        assert log == [("init", "extra", ("spec1", "spec2"))]


async def test_extra_args_are_used_again_on_every_restart():
    log = Log()
    async with tp.open_dynamic_supervisor(extra_args=(log, "extra")) as dsup:
        ref = await dsup.start_child(tp.child(Worker, "spec", preserve=False))
        for _ in range(2):
            await ref.cast("crash")
            await settle()
        assert ref.restarts == 2
        assert ref.alive
        assert await ref.call("state") == ("extra", ("spec",))
        assert events(log, "init") == [("init", "extra", ("spec",))] * 3


async def test_function_child_gets_extra_args_and_is_removed_when_it_returns():
    seen = Log()

    async def job(prefix, arg, *, task_status=trio.TASK_STATUS_IGNORED):
        seen.append((prefix, arg))
        task_status.started()
        await trio.sleep(1)

    async with tp.open_dynamic_supervisor(extra_args=("pre",)) as dsup:
        handle = await dsup.start_child(tp.child(job, "arg", restart="transient"))
        assert isinstance(handle, tp.TaskRef)
        assert handle.alive
        assert [c.ref for c in dsup.which_children()] == [handle]
        assert await handle.wait_stopped() == "normal"
        await settle()
        assert seen == [("pre", "arg")]
        assert dsup.which_children() == []


# -------------------------------------------------------------- max_children


async def test_max_children_is_enforced():
    log = Log()
    async with tp.open_dynamic_supervisor(max_children=2) as dsup:
        await dsup.start_child(tp.child(Worker, log, "a"))
        await dsup.start_child(tp.child(Worker, log, "b"))
        with pytest.raises(tp.MaxChildren, match=r"max_children=2") as info:
            await dsup.start_child(tp.child(Worker, log, "c"))
        assert info.value.max_children == 2
        assert dsup.count_children().active == 2
        assert events(log, "init") == [("init", "a", ()), ("init", "b", ())]


async def test_max_children_zero_refuses_every_child():
    log = Log()
    async with tp.open_dynamic_supervisor(max_children=0) as dsup:
        with pytest.raises(tp.MaxChildren):
            await dsup.start_child(tp.child(Worker, log))
        assert log == []


async def test_max_children_has_room_again_after_a_child_terminates():
    log = Log()
    async with tp.open_dynamic_supervisor(max_children=1) as dsup:
        first = await dsup.start_child(tp.child(Worker, log, "a", restart="temporary"))
        with pytest.raises(tp.MaxChildren):
            await dsup.start_child(tp.child(Worker, log, "b"))
        await first.cast(("stop", "normal"))
        await settle()
        assert dsup.which_children() == []
        second = await dsup.start_child(tp.child(Worker, log, "b"))
        with pytest.raises(tp.MaxChildren):
            await dsup.start_child(tp.child(Worker, log, "c"))
        await dsup.terminate_child(second)
        third = await dsup.start_child(tp.child(Worker, log, "c"))
        assert [c.ref for c in dsup.which_children()] == [third]


async def test_ignored_and_failed_starts_take_no_slot():
    log = Log()
    async with tp.open_dynamic_supervisor(max_children=1) as dsup:
        assert await dsup.start_child(tp.child(Ignoring)) is None
        with pytest.raises(tp.StartError):
            await dsup.start_child(tp.child(Failing))
        ref = await dsup.start_child(tp.child(Worker, log))
        assert ref.alive


# ------------------------------------------------------------- restart types


async def test_permanent_child_is_restarted_on_crash_and_on_normal_exit():
    log = Log()
    async with tp.open_dynamic_supervisor() as dsup:
        ref = await dsup.start_child(tp.child(Worker, log, "p", preserve=False))
        await ref.cast("crash")
        await settle()
        assert ref.alive
        assert ref.restarts == 1
        await ref.cast(("stop", "normal"))
        await settle()
        assert ref.alive
        assert ref.restarts == 2
        assert len(events(log, "init")) == 3
        assert dsup.which_children() == [tp.ChildInfo(None, ref, "worker", "permanent", "running")]


@pytest.mark.parametrize("reason", ["normal", tp.SHUTDOWN, tp.Shutdown("bye")])
async def test_transient_child_is_not_restarted_on_normal_exit_and_is_removed(reason):
    log = Log()
    async with tp.open_dynamic_supervisor() as dsup:
        ref = await dsup.start_child(tp.child(Worker, log, "t", restart="transient"))
        await ref.cast(("stop", reason))
        assert await ref.wait_stopped() == reason
        await settle()
        assert not ref.alive
        assert ref.restarts == 0
        assert dsup.which_children() == []
        assert dsup.count_children() == tp.ChildCounts(0, 0, 0, 0)
        with pytest.raises(tp.NoProc):
            await ref.call("state")


@pytest.mark.parametrize("how", ["crash", "abnormal_stop", "kill"])
async def test_transient_child_is_restarted_on_abnormal_exit(how):
    log = Log()
    async with tp.open_dynamic_supervisor() as dsup:
        ref = await dsup.start_child(tp.child(Worker, log, "t", restart="transient", preserve=False))
        if how == "crash":
            await ref.cast("crash")
        elif how == "abnormal_stop":
            await ref.cast(("stop", "oops"))
        else:
            ref.kill()
        await settle()
        assert ref.alive
        assert ref.restarts == 1
        assert len(events(log, "init")) == 2
        assert dsup.which_children() == [tp.ChildInfo(None, ref, "worker", "transient", "running")]


@pytest.mark.parametrize("how", ["crash", "normal_stop", "kill"])
async def test_temporary_child_is_never_restarted_and_is_removed(how):
    log = Log()
    async with tp.open_dynamic_supervisor() as dsup:
        keep = await dsup.start_child(tp.child(Worker, log, "keep"))
        ref = await dsup.start_child(tp.child(Worker, log, "tmp", restart="temporary"))
        assert dsup.count_children() == tp.ChildCounts(2, 2, 0, 2)
        if how == "crash":
            await ref.cast("crash")
        elif how == "normal_stop":
            await ref.cast(("stop", "normal"))
        else:
            ref.kill()
        reason = await ref.wait_stopped()
        await settle()
        if how == "crash":
            assert isinstance(reason, RuntimeError)
        elif how == "normal_stop":
            assert reason == "normal"
        else:
            assert reason is tp.KILLED
        assert not ref.alive
        assert ref.restarts == 0
        assert len([e for e in events(log, "init") if e[1] == "tmp"]) == 1
        assert dsup.which_children() == [tp.ChildInfo(None, keep, "worker", "permanent", "running")]
        assert dsup.count_children() == tp.ChildCounts(1, 1, 0, 1)


async def test_permanent_child_stopped_for_good_by_ref_stop_is_removed():
    log = Log()
    async with tp.open_dynamic_supervisor() as dsup:
        ref = await dsup.start_child(tp.child(Worker, log, "p"))
        await ref.stop()
        await settle()
        assert not ref.alive
        assert ("terminate", "p", "normal") in log
        assert dsup.which_children() == []
        assert dsup.count_children() == tp.ChildCounts(0, 0, 0, 0)


async def test_which_children_keeps_start_order_and_places_across_restarts():
    log = Log()
    async with tp.open_dynamic_supervisor() as dsup:
        refs = [await dsup.start_child(tp.child(Worker, log, str(i))) for i in range(4)]
        refs[1].kill()
        await refs[2].cast("crash")
        await settle()
        rows = dsup.which_children()
        assert [row.ref for row in rows] == refs
        assert all(row.id is None for row in rows)
        assert all(row.status == "running" for row in rows)
        assert [r.restarts for r in refs] == [0, 1, 1, 0]
        assert dsup.count_children() == tp.ChildCounts(4, 4, 0, 4)


async def test_restarted_child_keeps_its_ref_and_restart_count_grows():
    log = Log()
    async with tp.open_dynamic_supervisor(max_restarts=10) as dsup:
        ref = await dsup.start_child(tp.child(Worker, log, "k", preserve=False))
        for n in range(1, 4):
            ref.kill()
            await settle()
            assert ref.alive
            assert ref.restarts == n
            assert ref.statistics().restarts == n
            assert dsup.which_children()[0].ref is ref
        assert await ref.call("state") == ("k", ())
        # a kill never runs terminate
        assert events(log, "terminate") == []


async def test_nested_dynamic_supervisor_under_a_static_supervisor():
    log = Log()
    async with tp.open_supervisor(tp.child(tp.dynamic_supervisor(max_children=1, extra_args=(log,)), id="dyn")) as sup:
        (row,) = sup.which_children()
        assert row.id == "dyn"
        assert row.type == "supervisor"
        assert sup.count_children() == tp.ChildCounts(1, 1, 1, 0)
        inner = row.ref
        assert isinstance(inner, tp.Supervisor)
        ref = await inner.start_child(tp.child(Worker, "nested"))
        assert await ref.call("state") == ("nested", ())
        with pytest.raises(tp.MaxChildren):
            await inner.start_child(tp.child(Worker, "more"))
    assert not ref.alive
    assert ("terminate", "nested", tp.SHUTDOWN) in log


# ----------------------------------------------------------- terminate_child


async def test_terminate_child_stops_it_for_good_with_shutdown_and_removes_it():
    log = Log()
    async with tp.open_dynamic_supervisor() as dsup:
        a = await dsup.start_child(tp.child(Worker, log, "a"))
        b = await dsup.start_child(tp.child(Worker, log, "b"))
        await dsup.terminate_child(a)
        assert not a.alive
        assert await a.wait_stopped() is tp.SHUTDOWN
        assert events(log, "terminate") == [("terminate", "a", tp.SHUTDOWN)]
        assert [c.ref for c in dsup.which_children()] == [b]
        assert dsup.count_children() == tp.ChildCounts(1, 1, 0, 1)
        await settle()
        # for good: not restarted although permanent
        assert not a.alive
        assert a.restarts == 0
        with pytest.raises(tp.NoProc):
            await a.call("state")


async def test_terminate_child_of_an_unknown_ref_raises():
    log = Log()
    async with trio.open_nursery() as nursery:
        stranger = await tp.start_server(nursery, Worker, log, "stranger")
        async with tp.open_dynamic_supervisor() as dsup:
            ref = await dsup.start_child(tp.child(Worker, log, "a"))
            with pytest.raises(LookupError):
                await dsup.terminate_child(stranger)
            assert stranger.alive
            await dsup.terminate_child(ref)
            with pytest.raises(LookupError):
                await dsup.terminate_child(ref)
            assert dsup.which_children() == []
        await stranger.stop()


async def test_terminate_child_waits_for_the_running_callback():
    """The stop request is a message: it never interrupts a running callback."""
    log = Log()
    async with tp.open_dynamic_supervisor() as dsup:
        ref = await dsup.start_child(tp.child(Worker, log, "busy", shutdown=10))
        results = []

        async def slow_call():
            results.append(await ref.call(("sleep", 3)))

        async with trio.open_nursery() as nursery:
            nursery.start_soon(slow_call)
            await settle()
            start = trio.current_time()
            await dsup.terminate_child(ref)
            assert trio.current_time() - start == pytest.approx(3)
        assert results == ["slept"]
        assert events(log, "terminate") == [("terminate", "busy", tp.SHUTDOWN)]


# --------------------------------------------------------- restart intensity


async def test_restart_intensity_exceeded_leaves_the_async_with_as_itself():
    log = Log()
    reached_end = False
    with pytest.raises(tp.RestartIntensityExceeded):
        async with tp.open_dynamic_supervisor(max_restarts=2, max_seconds=5.0) as dsup:
            bystander = await dsup.start_child(tp.child(Worker, log, "bystander"))
            ref = await dsup.start_child(tp.child(Worker, log, "crasher"))
            for _ in range(3):
                ref.kill()
                await settle()
            reached_end = True
    assert not reached_end
    assert not ref.alive
    assert ref.restarts == 2
    assert not bystander.alive
    assert ("terminate", "bystander", tp.SHUTDOWN) in log
    assert await bystander.wait_stopped() is tp.SHUTDOWN


async def test_restart_intensity_zero_gives_up_on_first_crash():
    log = Log()
    with pytest.raises(tp.RestartIntensityExceeded) as info:
        async with tp.open_dynamic_supervisor(max_restarts=0) as dsup:
            ref = await dsup.start_child(tp.child(Worker, log, "c"))
            await ref.cast("crash")
            await trio.sleep_forever()
    assert type(info.value.__cause__) is RuntimeError
    assert ref.restarts == 0
    assert isinstance(await ref.wait_stopped(), RuntimeError)


async def test_restarts_spread_beyond_max_seconds_do_not_exceed_intensity():
    log = Log()
    async with tp.open_dynamic_supervisor(max_restarts=1, max_seconds=2.0) as dsup:
        ref = await dsup.start_child(tp.child(Worker, log, "slowcrash"))
        for _ in range(5):
            ref.kill()
            await settle()
            await trio.sleep(2.5)
        assert ref.alive
        assert ref.restarts == 5


async def test_temporary_and_transient_normal_exits_do_not_count_as_restarts():
    log = Log()
    async with tp.open_dynamic_supervisor(max_restarts=0) as dsup:
        for i in range(3):
            t = await dsup.start_child(tp.child(Worker, log, f"tmp{i}", restart="temporary"))
            await t.cast("crash")
            r = await dsup.start_child(tp.child(Worker, log, f"tr{i}", restart="transient"))
            await r.cast(("stop", "normal"))
            await settle()
        assert dsup.which_children() == []


async def test_body_exception_propagates_as_itself_after_children_stop():
    log = Log()
    with pytest.raises(KeyError, match=r"^'body'$"):
        async with tp.open_dynamic_supervisor() as dsup:
            ref = await dsup.start_child(tp.child(Worker, log, "a"))
            raise KeyError("body")
    assert not ref.alive
    assert events(log, "terminate") == [("terminate", "a", tp.SHUTDOWN)]


# ------------------------------------------------------------------ shutdown


async def test_shutdown_stops_children_concurrently():
    log = Log()
    async with tp.open_dynamic_supervisor() as dsup:
        refs = [await dsup.start_child(tp.child(Worker, log, str(i))) for i in range(3)]
        for ref in refs:
            assert await ref.call(("term_delay", 1.0)) == "ok"
        start = trio.current_time()
    elapsed = trio.current_time() - start
    assert elapsed == pytest.approx(1.0)
    assert sorted(events(log, "terminated")) == [("terminated", str(i), tp.SHUTDOWN) for i in range(3)]
    assert not any(ref.alive for ref in refs)


async def test_shutdown_timeout_kills_a_slow_child():
    log = Log()
    async with tp.open_dynamic_supervisor() as dsup:
        slow = await dsup.start_child(tp.child(Worker, log, "slow", shutdown=2.0))
        await slow.call(("term_delay", 10.0))
        fast = await dsup.start_child(tp.child(Worker, log, "fast", shutdown=2.0))
        start = trio.current_time()
    assert trio.current_time() - start == pytest.approx(2.0)
    # terminate began but was cut short by the kill
    assert ("terminate", "slow", tp.SHUTDOWN) in log
    assert ("terminated", "slow", tp.SHUTDOWN) not in log
    assert ("terminate", "fast", tp.SHUTDOWN) in log
    assert not slow.alive
    assert not fast.alive


async def test_shutdown_infinity_waits_for_terminate():
    log = Log()
    async with tp.open_dynamic_supervisor() as dsup:
        ref = await dsup.start_child(tp.child(Worker, log, "patient", shutdown=math.inf))
        await ref.call(("term_delay", 30.0))
        start = trio.current_time()
    assert trio.current_time() - start == pytest.approx(30.0)
    assert ("terminated", "patient", tp.SHUTDOWN) in log


async def test_shutdown_brutal_kill_skips_terminate():
    log = Log()
    async with tp.open_dynamic_supervisor() as dsup:
        brutal = await dsup.start_child(tp.child(Worker, log, "brutal", shutdown="brutal_kill"))
        await brutal.call(("term_delay", 5.0))
        gentle = await dsup.start_child(tp.child(Worker, log, "gentle", shutdown=3.0))
        await gentle.call(("term_delay", 1.0))
        start = trio.current_time()
    assert trio.current_time() - start == pytest.approx(1.0)
    assert [e for e in log if e[1] == "brutal" and e[0] != "init"] == []
    assert ("terminated", "gentle", tp.SHUTDOWN) in log
    assert not brutal.alive


async def test_terminate_child_respects_shutdown_timeout_and_brutal_kill():
    log = Log()
    async with tp.open_dynamic_supervisor() as dsup:
        slow = await dsup.start_child(tp.child(Worker, log, "slow", shutdown=1.5))
        await slow.call(("term_delay", 10.0))
        brutal = await dsup.start_child(tp.child(Worker, log, "brutal", shutdown="brutal_kill"))
        start = trio.current_time()
        await dsup.terminate_child(slow)
        assert trio.current_time() - start == pytest.approx(1.5)
        await dsup.terminate_child(brutal)
        assert trio.current_time() - start == pytest.approx(1.5)
        assert dsup.which_children() == []
    assert ("terminated", "slow", tp.SHUTDOWN) not in log
    assert events(log, "terminate") == [("terminate", "slow", tp.SHUTDOWN)]


# -------------------------------------------------------- names, concurrency


async def test_name_makes_the_supervisor_findable():
    log = Log()
    async with tp.open_dynamic_supervisor(name="dyn") as dsup:
        assert tp.whereis("dyn") is dsup
        assert dsup.name == "dyn"
        ref = await tp.whereis("dyn").start_child(tp.child(Worker, log, "via-name"))
        assert [c.ref for c in dsup.which_children()] == [ref]
        with pytest.raises(tp.AlreadyStarted):
            async with tp.open_dynamic_supervisor(name="dyn"):
                pass  # pragma: no cover - must not be reached
        assert tp.whereis("dyn") is dsup
    assert tp.whereis("dyn") is None
    async with tp.open_dynamic_supervisor(name="dyn") as again:
        assert tp.whereis("dyn") is again


async def test_children_started_from_several_tasks_concurrently():
    log = Log()
    refs = {}
    async with tp.open_dynamic_supervisor(max_children=20) as dsup:

        async def starter(i):
            refs[i] = await dsup.start_child(tp.child(Worker, log, str(i)))
            assert await refs[i].call("state") == (str(i), ())

        async with trio.open_nursery() as nursery:
            for i in range(20):
                nursery.start_soon(starter, i)
        assert len(set(refs.values())) == 20
        assert {c.ref for c in dsup.which_children()} == set(refs.values())
        assert dsup.count_children() == tp.ChildCounts(20, 20, 0, 20)
        with pytest.raises(tp.MaxChildren):
            await dsup.start_child(tp.child(Worker, log, "one too many"))


async def test_max_children_holds_under_concurrent_starts():
    log = Log()
    started, refused = [], []

    class SlowInit(Worker):
        async def init(self, log, label="w", *rest):
            await trio.sleep(1)
            return await super().init(log, label, *rest)

    async with tp.open_dynamic_supervisor(max_children=3) as dsup:

        async def starter(i):
            try:
                started.append(await dsup.start_child(tp.child(SlowInit, log, str(i))))
            except tp.MaxChildren:
                refused.append(i)

        async with trio.open_nursery() as nursery:
            for i in range(6):
                nursery.start_soon(starter, i)
        assert len(started) == 3
        assert len(refused) == 3
        assert dsup.count_children().active == 3


class FlakyInit(tp.GenServer):
    """``init(plan)`` pops the next outcome from *plan*: "ok" starts, "fail" raises."""

    async def init(self, plan):
        if plan.pop(0) == "fail":
            raise RuntimeError("init failed")
        return plan

    async def handle_call(self, request, caller, state):
        return tp.Reply(len(state), state)

    async def handle_cast(self, message, state):
        raise RuntimeError("crash")


async def test_a_failed_restart_is_retried_and_counts_as_a_restart():
    plan = ["ok", "fail", "ok"]
    async with tp.open_dynamic_supervisor(max_restarts=3) as dsup:
        ref = await dsup.start_child(tp.child(FlakyInit, plan, preserve=False))
        await ref.cast("crash")
        await settle()
        assert plan == []
        assert ref.alive
        assert ref.restarts == 2
        assert await ref.call("len") == 0
        assert [c.ref for c in dsup.which_children()] == [ref]


async def test_restarts_that_keep_failing_exceed_the_intensity():
    plan = ["ok"] + ["fail"] * 10
    with pytest.raises(tp.RestartIntensityExceeded):
        async with tp.open_dynamic_supervisor(max_restarts=2) as dsup:
            ref = await dsup.start_child(tp.child(FlakyInit, plan, preserve=False))
            await ref.cast("crash")
            await trio.sleep_forever()
    # the crash plus two failed restarts: the third restart is one too many
    assert plan == ["fail"] * 8
    assert not ref.alive
