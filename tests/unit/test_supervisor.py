"""Static supervisors: API.md section 4 and "Exits and stopping" in section 10.

Scenarios ported from OTP's supervisor_SUITE and Elixir's supervisor_test.exs.
Workers append ``("init", tag)`` / ``("terminate", tag, reason)`` to a shared
log, so each test can check which callbacks ran and in which order. Most
children use ``preserve=False`` so that a restart runs ``init`` again, as in OTP.
"""

from __future__ import annotations

import math
import re

import pytest
import trio
from trio.testing import wait_all_tasks_blocked

import trio_peeper as tp

# ---------------------------------------------------------------- helpers


class Worker(tp.GenServer):
    """A child that records its life in *log*.

    ``control`` is a dict shared with the test: ``control["fail_init"]`` makes
    the next ``init`` raise, ``control["ignore"]`` makes it return ``IGNORE``,
    ``control["slow_terminate"]`` makes ``terminate`` take that many seconds.
    """

    async def init(self, log, tag, control=None):
        control = {} if control is None else control
        log.append(("init", tag))
        if control.get("fail_init"):
            msg = f"{tag} cannot start"
            raise RuntimeError(msg)
        if control.get("ignore"):
            return tp.IGNORE
        return {"log": log, "tag": tag, "control": control}

    async def handle_call(self, request, caller, state):
        if request == "ping":
            return tp.Reply(("pong", state["tag"]), state)
        msg = f"unexpected call {request!r}"
        raise AssertionError(msg)

    async def handle_cast(self, message, state):
        if message == "crash":
            msg = f"{state['tag']} crashed"
            raise RuntimeError(msg)
        kind, arg = message
        if kind == "stop":
            return tp.Stop(arg, state)
        if kind == "sleep":
            state["log"].append(("sleeping", state["tag"]))
            await trio.sleep(arg)
            state["log"].append(("slept", state["tag"]))
            return tp.NoReply(state)
        if kind == "note":
            state["log"].append(("note", state["tag"], arg))
            return tp.NoReply(state)
        msg = f"unexpected cast {message!r}"
        raise AssertionError(msg)

    async def terminate(self, reason, state):
        state["log"].append(("terminate", state["tag"], reason))
        delay = state["control"].get("slow_terminate")
        if delay:
            await trio.sleep(delay)
            state["log"].append(("terminated", state["tag"]))


def w(log, tag, control=None, **kwargs):
    """A non-preserving Worker child with id *tag*."""
    kwargs.setdefault("preserve", False)
    return tp.child(Worker, log, tag, control, id=tag, **kwargs)


def inits(log):
    return [e[1] for e in log if e[0] == "init"]


def terms(log):
    return [(e[1], e[2]) for e in log if e[0] == "terminate"]


def refs(sup):
    return {info.id: info.ref for info in sup.which_children()}


def statuses(sup):
    return [(info.id, info.status) for info in sup.which_children()]


async def settle():
    await wait_all_tasks_blocked()


# ---------------------------------------------------------------- starting


async def test_children_start_in_order_each_fully_started_before_the_next():
    log = []

    class Probe(tp.GenServer):
        async def init(self, tag):
            log.append(("init-begin", tag))
            await trio.sleep(1)  # a slow init: the next child must wait for it
            log.append(("init-end", tag))
            return tag

    async with tp.open_supervisor(
        tp.child(Probe, "a", id="a"), tp.child(Probe, "b", id="b"), tp.child(Probe, "c", id="c")
    ) as sup:
        assert log == [
            ("init-begin", "a"),
            ("init-end", "a"),
            ("init-begin", "b"),
            ("init-end", "b"),
            ("init-begin", "c"),
            ("init-end", "c"),
        ]
        assert [i.id for i in sup.which_children()] == ["a", "b", "c"]
        assert all(i.ref.alive for i in sup.which_children())
        assert all(i.status == "running" for i in sup.which_children())


async def test_child_init_raising_stops_started_ones_in_reverse_and_raises_start_error():
    log = []
    body_ran = False
    with pytest.raises(tp.StartError) as excinfo:
        async with tp.open_supervisor(
            w(log, "a"), w(log, "b"), w(log, "c", {"fail_init": True}), w(log, "d")
        ):
            body_ran = True
    assert type(excinfo.value) is tp.StartError  # itself, not an ExceptionGroup
    assert isinstance(excinfo.value.__cause__, RuntimeError)
    assert str(excinfo.value.__cause__) == "c cannot start"
    assert not body_ran
    assert inits(log) == ["a", "b", "c"]  # d never started
    assert terms(log) == [("b", tp.SHUTDOWN), ("a", tp.SHUTDOWN)]


async def test_first_child_failing_raises_start_error_with_nothing_to_stop():
    log = []
    with pytest.raises(tp.StartError) as excinfo:
        async with tp.open_supervisor(w(log, "a", {"fail_init": True}), w(log, "b")):
            pytest.fail("the body must not run")
    assert type(excinfo.value) is tp.StartError
    assert inits(log) == ["a"]
    assert terms(log) == []


async def test_init_returning_ignore_leaves_the_child_listed_not_running():
    log = []
    async with tp.open_supervisor(w(log, "a"), w(log, "b", {"ignore": True}), w(log, "c")) as sup:
        assert inits(log) == ["a", "b", "c"]
        assert statuses(sup) == [("a", "running"), ("b", "stopped"), ("c", "running")]
        assert refs(sup)["b"] is None
        assert sup.count_children() == tp.ChildCounts(specs=3, active=2, supervisors=0, workers=3)


async def test_start_failure_releases_the_supervisor_name():
    log = []
    with pytest.raises(tp.StartError):
        async with tp.open_supervisor(w(log, "a", {"fail_init": True}), name="failing-sup"):
            pass  # pragma: no cover
    assert tp.whereis("failing-sup") is None


# ---------------------------------------------------------------- invalid specs


async def test_bad_restart_type_is_rejected():
    with pytest.raises(
        ValueError, match=r"^restart must be 'permanent', 'transient' or 'temporary', got 'forever'$"
    ):
        tp.child(Worker, [], "a", restart="forever")


@pytest.mark.parametrize("shutdown", [-1, "soon", None, True])
async def test_bad_shutdown_is_rejected(shutdown):
    expected = f"shutdown must be seconds >= 0, math.inf or 'brutal_kill', got {shutdown!r}"
    with pytest.raises((ValueError, TypeError), match="^" + re.escape(expected) + "$"):
        tp.child(Worker, [], "a", shutdown=shutdown)


async def test_good_shutdown_values_are_accepted():
    for shutdown in (0, 0.5, 5, math.inf, "brutal_kill"):
        assert tp.child(Worker, [], "a", shutdown=shutdown).shutdown == shutdown


async def test_duplicate_ids_are_rejected_before_anything_starts():
    log = []
    with pytest.raises(ValueError, match=r"^duplicate child id 'a'$"):
        async with tp.open_supervisor(w(log, "a"), w(log, "b"), w(log, "a")):
            pytest.fail("the body must not run")
    assert log == []


async def test_default_ids_collide_for_the_same_target():
    with pytest.raises(ValueError, match=r"^duplicate child id 'Worker'$"):
        async with tp.open_supervisor(tp.child(Worker, [], "x"), tp.child(Worker, [], "y")):
            pytest.fail("the body must not run")


async def test_significant_permanent_child_is_rejected():
    with pytest.raises(
        ValueError, match=r"^a significant child must be 'transient' or 'temporary', not 'permanent'$"
    ):
        tp.child(Worker, [], "a", restart="permanent", significant=True)


async def test_significant_child_needs_auto_shutdown():
    log = []
    with pytest.raises(ValueError, match=r"^child 'a' is significant but auto_shutdown is 'never'$"):
        async with tp.open_supervisor(w(log, "a", restart="transient", significant=True)):
            pytest.fail("the body must not run")
    assert log == []


async def test_non_genserver_target_is_rejected():
    class NotAServer:
        pass

    with pytest.raises(TypeError, match=r"^target must be .*, got <class '.*NotAServer'>$"):
        tp.child(NotAServer)

    def sync_function():
        pass

    with pytest.raises(TypeError, match=r"^target must be .*, got <function .*sync_function at .*>$"):
        tp.child(sync_function)


async def test_bad_strategy_is_rejected_before_anything_starts():
    log = []
    with pytest.raises(
        ValueError,
        match=r"^strategy must be 'one_for_one', 'one_for_all' or 'rest_for_one', got 'one_for_none'$",
    ):
        async with tp.open_supervisor(w(log, "a"), strategy="one_for_none"):
            pytest.fail("the body must not run")
    assert log == []


@pytest.mark.parametrize("max_restarts", [-1, 1.5, "3", None])
async def test_bad_max_restarts_is_rejected_before_anything_starts(max_restarts):
    log = []
    expected = f"max_restarts must be an int >= 0, got {max_restarts!r}"
    with pytest.raises(ValueError, match="^" + re.escape(expected) + "$"):
        async with tp.open_supervisor(w(log, "a"), max_restarts=max_restarts):
            pytest.fail("the body must not run")
    assert log == []


@pytest.mark.parametrize("max_seconds", [0, -1.0, "5"])
async def test_bad_max_seconds_is_rejected(max_seconds):
    expected = f"max_seconds must be a number > 0, got {max_seconds!r}"
    with pytest.raises(ValueError, match="^" + re.escape(expected) + "$"):
        async with tp.open_supervisor(max_seconds=max_seconds):
            pytest.fail("the body must not run")


async def test_bad_auto_shutdown_is_rejected():
    with pytest.raises(ValueError, match=r"^auto_shutdown must be .*, got 'sometimes'$"):
        async with tp.open_supervisor(auto_shutdown="sometimes"):
            pytest.fail("the body must not run")


async def test_non_spec_child_is_rejected():
    with pytest.raises(TypeError, match=r"^children must be tp\.child\(\.\.\.\) specs, got <class '.*Worker'>$"):
        async with tp.open_supervisor(Worker):
            pytest.fail("the body must not run")


# ---------------------------------------------------------------- strategies


async def test_one_for_one_restarts_only_the_crashed_child():
    log = []
    async with tp.open_supervisor(w(log, "a"), w(log, "b"), w(log, "c")) as sup:
        before = refs(sup)
        log.clear()
        before["b"].cast_nowait("crash")
        await settle()
        assert log == [("init", "b")]  # a crash: no terminate, only b's init again
        assert [r.restarts for r in before.values()] == [0, 1, 0]
        assert refs(sup) == before  # refs stay valid across restarts
        assert await before["b"].call("ping") == ("pong", "b")
        assert statuses(sup) == [("a", "running"), ("b", "running"), ("c", "running")]


async def test_one_for_all_stops_the_others_in_reverse_and_restarts_all_in_order():
    log = []
    async with tp.open_supervisor(w(log, "a"), w(log, "b"), w(log, "c"), w(log, "d"), strategy="one_for_all") as sup:
        before = refs(sup)
        log.clear()
        before["b"].cast_nowait("crash")
        await settle()
        assert log == [
            ("terminate", "d", tp.SHUTDOWN),
            ("terminate", "c", tp.SHUTDOWN),
            ("terminate", "a", tp.SHUTDOWN),
            ("init", "a"),
            ("init", "b"),
            ("init", "c"),
            ("init", "d"),
        ]
        assert [r.restarts for r in before.values()] == [1, 1, 1, 1]  # bystanders count too
        assert refs(sup) == before
        for tag, ref in before.items():
            assert await ref.call("ping") == ("pong", tag)


async def test_rest_for_one_restarts_the_crashed_child_and_those_started_after_it():
    log = []
    async with tp.open_supervisor(w(log, "a"), w(log, "b"), w(log, "c"), w(log, "d"), strategy="rest_for_one") as sup:
        before = refs(sup)
        log.clear()
        before["b"].cast_nowait("crash")
        await settle()
        assert log == [
            ("terminate", "d", tp.SHUTDOWN),
            ("terminate", "c", tp.SHUTDOWN),
            ("init", "b"),
            ("init", "c"),
            ("init", "d"),
        ]
        assert [r.restarts for r in before.values()] == [0, 1, 1, 1]
        log.clear()
        before["d"].cast_nowait("crash")  # the last one: nobody after it
        await settle()
        assert log == [("init", "d")]
        assert [r.restarts for r in before.values()] == [0, 1, 1, 2]


async def test_rest_for_one_first_child_crash_restarts_everyone():
    log = []
    async with tp.open_supervisor(w(log, "a"), w(log, "b"), w(log, "c"), strategy="rest_for_one") as sup:
        before = refs(sup)
        log.clear()
        before["a"].kill()
        await settle()
        assert log == [
            ("terminate", "c", tp.SHUTDOWN),
            ("terminate", "b", tp.SHUTDOWN),
            ("init", "a"),
            ("init", "b"),
            ("init", "c"),
        ]


async def test_group_restart_counts_as_one_restart_for_intensity():
    log = []
    async with tp.open_supervisor(
        w(log, "a"), w(log, "b"), w(log, "c"), strategy="one_for_all", max_restarts=1, max_seconds=10
    ) as sup:
        before = refs(sup)
        before["a"].cast_nowait("crash")
        await settle()
        # three children came back: still only one restart in the window
        assert all(r.alive for r in before.values())
        assert [r.restarts for r in before.values()] == [1, 1, 1]
        assert statuses(sup) == [("a", "running"), ("b", "running"), ("c", "running")]


async def test_one_for_all_restarts_a_transient_bystander_but_drops_a_temporary_one():
    log = []
    async with tp.open_supervisor(
        w(log, "a"),
        w(log, "t", restart="transient"),
        w(log, "tmp", restart="temporary"),
        strategy="one_for_all",
    ) as sup:
        before = refs(sup)
        log.clear()
        before["a"].cast_nowait("crash")
        await settle()
        assert ("terminate", "tmp", tp.SHUTDOWN) in log
        assert inits(log) == ["a", "t"]
        assert [i.id for i in sup.which_children()] == ["a", "t"]
        assert not before["tmp"].alive
        assert before["t"].restarts == 1


async def test_group_restart_after_a_permanent_child_stops_normally():
    log = []
    async with tp.open_supervisor(w(log, "a"), w(log, "b"), strategy="one_for_all") as sup:
        before = refs(sup)
        log.clear()
        before["a"].cast_nowait(("stop", "normal"))
        await settle()
        assert log == [
            ("terminate", "a", "normal"),
            ("terminate", "b", tp.SHUTDOWN),
            ("init", "a"),
            ("init", "b"),
        ]


async def test_preserving_child_restores_instead_of_init():
    log = []

    class Counter(tp.GenServer):
        async def init(self, start):
            log.append("init")
            return start

        async def restore(self, state):
            log.append(("restore", state))
            return state

        async def handle_cast(self, message, state):
            if message == "crash":
                raise RuntimeError("crash")
            return tp.NoReply(state + 1)

        async def handle_call(self, request, caller, state):
            return tp.Reply(state, state)

    async with tp.open_supervisor(tp.child(Counter, 10, id="c")) as sup:
        (ref,) = refs(sup).values()
        ref.cast_nowait("inc")
        ref.cast_nowait("crash")
        await settle()
        assert log == ["init", ("restore", 11)]
        assert await ref.call("get") == 11


# ---------------------------------------------------------------- restart types

NORMALISH = [
    pytest.param(("stop", "normal"), id="stop-normal"),
    pytest.param(("stop", tp.SHUTDOWN), id="stop-SHUTDOWN"),
    pytest.param(("stop", tp.Shutdown("bye")), id="stop-Shutdown"),
]
ABNORMAL = [
    pytest.param(("stop", "bad"), id="stop-bad"),
    pytest.param("crash", id="exception"),
    pytest.param("kill", id="kill"),
]


async def _exit_child(ref, how):
    if how == "kill":
        ref.kill()
    else:
        ref.cast_nowait(how)
    await settle()


@pytest.mark.parametrize("how", NORMALISH + ABNORMAL)
async def test_permanent_child_is_always_restarted(how):
    log = []
    async with tp.open_supervisor(w(log, "p"), w(log, "other")) as sup:
        ref = refs(sup)["p"]
        await _exit_child(ref, how)
        assert inits(log) == ["p", "other", "p"]
        assert ref.alive
        assert ref.restarts == 1
        assert statuses(sup) == [("p", "running"), ("other", "running")]


@pytest.mark.parametrize("how", NORMALISH)
async def test_transient_child_exiting_normally_is_not_restarted_and_stays_listed(how):
    log = []
    async with tp.open_supervisor(w(log, "t", restart="transient"), w(log, "other")) as sup:
        ref = refs(sup)["t"]
        monitor = ref.monitor()
        await _exit_child(ref, how)
        assert inits(log) == ["t", "other"]
        assert not ref.alive
        assert ref.restarts == 0
        assert statuses(sup) == [("t", "stopped"), ("other", "running")]
        assert await monitor.wait() == how[1]
        assert sup.count_children() == tp.ChildCounts(specs=2, active=1, supervisors=0, workers=2)


@pytest.mark.parametrize("how", ABNORMAL)
async def test_transient_child_exiting_abnormally_is_restarted(how):
    log = []
    async with tp.open_supervisor(w(log, "t", restart="transient")) as sup:
        ref = refs(sup)["t"]
        await _exit_child(ref, how)
        assert inits(log) == ["t", "t"]
        assert ref.alive
        assert ref.restarts == 1
        assert statuses(sup) == [("t", "running")]


@pytest.mark.parametrize("how", NORMALISH + ABNORMAL)
async def test_temporary_child_is_never_restarted_and_is_removed(how):
    log = []
    async with tp.open_supervisor(w(log, "tmp", restart="temporary"), w(log, "other")) as sup:
        ref = refs(sup)["tmp"]
        await _exit_child(ref, how)
        assert inits(log) == ["tmp", "other"]
        assert not ref.alive
        assert [i.id for i in sup.which_children()] == ["other"]
        assert sup.count_children() == tp.ChildCounts(specs=1, active=1, supervisors=0, workers=1)


async def test_stopped_transient_child_can_be_restarted_with_restart_child():
    log = []
    async with tp.open_supervisor(w(log, "t", restart="transient")) as sup:
        ref = refs(sup)["t"]
        await _exit_child(ref, ("stop", "normal"))
        new = await sup.restart_child("t")
        assert new is not None
        assert new.alive
        assert inits(log) == ["t", "t"]
        assert statuses(sup) == [("t", "running")]


@pytest.mark.parametrize("restart", ["permanent", "transient", "temporary"])
async def test_ref_stop_is_for_good_whatever_the_restart_type(restart):
    log = []
    async with tp.open_supervisor(w(log, "x", restart=restart), w(log, "other")) as sup:
        ref = refs(sup)["x"]
        await ref.stop("normal")
        await settle()
        assert terms(log) == [("x", "normal")]
        assert inits(log) == ["x", "other"]
        assert not ref.alive
        if restart == "temporary":
            assert [i.id for i in sup.which_children()] == ["other"]
        else:
            assert statuses(sup) == [("x", "stopped"), ("other", "running")]
        with pytest.raises(tp.NoProc):
            await ref.call("ping")


async def test_ref_stop_with_an_abnormal_reason_is_still_for_good():
    log = []
    async with tp.open_supervisor(w(log, "p")) as sup:
        ref = refs(sup)["p"]
        await ref.stop("bad")
        await settle()
        assert inits(log) == ["p"]
        assert statuses(sup) == [("p", "stopped")]
        assert await ref.wait_stopped() == "bad"


# ---------------------------------------------------------------- intensity


async def test_max_restarts_within_the_window_are_tolerated():
    log = []
    async with tp.open_supervisor(w(log, "a"), max_restarts=3, max_seconds=5) as sup:
        ref = refs(sup)["a"]
        for _ in range(3):
            ref.cast_nowait("crash")
            await settle()
        assert ref.restarts == 3
        assert ref.alive


async def test_one_restart_too_many_stops_all_children_in_reverse_and_raises():
    log = []
    reached_end = False
    body_finally = False
    with pytest.raises(tp.RestartIntensityExceeded) as excinfo:
        async with tp.open_supervisor(w(log, "a"), w(log, "b"), w(log, "c"), max_restarts=2, max_seconds=5) as sup:
            ref = refs(sup)["b"]
            try:
                for _ in range(2):
                    ref.cast_nowait("crash")
                    await settle()
                assert ref.restarts == 2
                log.clear()
                ref.cast_nowait("crash")
                await trio.sleep_forever()
                reached_end = True
            finally:
                body_finally = True
    err = excinfo.value
    assert type(err) is tp.RestartIntensityExceeded  # itself, not an ExceptionGroup
    assert (err.child, err.restarts, err.window) == ("b", 3, 5.0)  # max_restarts=2: the third restart in the window gives up
    assert isinstance(err.__cause__, RuntimeError)
    assert body_finally
    assert not reached_end  # the body was cancelled
    # b crashed (no terminate); the others were stopped in reverse order
    assert log == [("terminate", "c", tp.SHUTDOWN), ("terminate", "a", tp.SHUTDOWN)]
    assert not any(r.alive for r in refs(sup).values())


async def test_max_restarts_zero_gives_up_on_the_first_exit():
    log = []
    with pytest.raises(tp.RestartIntensityExceeded) as excinfo:
        async with tp.open_supervisor(w(log, "a"), w(log, "b"), max_restarts=0) as sup:
            refs(sup)["a"].kill()
            await trio.sleep_forever()
    assert type(excinfo.value) is tp.RestartIntensityExceeded
    assert excinfo.value.child == "a"
    assert inits(log) == ["a", "b"]
    assert terms(log) == [("b", tp.SHUTDOWN)]


async def test_restarts_spread_beyond_the_window_do_not_accumulate():
    log = []
    async with tp.open_supervisor(w(log, "a"), max_restarts=1, max_seconds=5) as sup:
        ref = refs(sup)["a"]
        for _ in range(5):
            ref.cast_nowait("crash")
            await settle()
            await trio.sleep(6)  # virtual time: past the window
        assert ref.restarts == 5
        assert ref.alive


async def test_restarts_just_inside_the_window_accumulate():
    log = []
    with pytest.raises(tp.RestartIntensityExceeded):
        async with tp.open_supervisor(w(log, "a"), max_restarts=1, max_seconds=5) as sup:
            ref = refs(sup)["a"]
            ref.cast_nowait("crash")
            await settle()
            await trio.sleep(4)
            ref.cast_nowait("crash")
            await trio.sleep_forever()
    assert inits(log) == ["a", "a"]


async def test_restarts_of_different_children_share_the_intensity():
    log = []
    with pytest.raises(tp.RestartIntensityExceeded) as excinfo:
        async with tp.open_supervisor(w(log, "a"), w(log, "b"), max_restarts=1) as sup:
            refs(sup)["a"].cast_nowait("crash")
            await settle()
            refs(sup)["b"].cast_nowait("crash")
            await trio.sleep_forever()
    assert excinfo.value.child == "b"


async def test_a_child_failing_to_restart_counts_as_a_crash_until_the_supervisor_gives_up():
    log = []
    control = {}
    with pytest.raises(tp.RestartIntensityExceeded) as excinfo:
        async with tp.open_supervisor(w(log, "a"), w(log, "b", control), max_restarts=3) as sup:
            control["fail_init"] = True
            refs(sup)["b"].cast_nowait("crash")
            await trio.sleep_forever()
    assert type(excinfo.value) is tp.RestartIntensityExceeded
    assert excinfo.value.child == "b"
    # first start + 3 allowed restart attempts, all failing
    assert inits(log) == ["a", "b", "b", "b", "b"]
    assert terms(log) == [("a", tp.SHUTDOWN)]


async def test_intensity_exceeded_releases_the_supervisor_name():
    log = []
    with pytest.raises(tp.RestartIntensityExceeded):
        async with tp.open_supervisor(w(log, "a"), max_restarts=0, name="gives-up") as sup:
            assert tp.whereis("gives-up") is sup
            refs(sup)["a"].kill()
            await trio.sleep_forever()
    assert tp.whereis("gives-up") is None


# ---------------------------------------------------------------- shutdown


async def test_leaving_the_block_stops_children_in_reverse_order_with_shutdown():
    log = []
    async with tp.open_supervisor(w(log, "a"), w(log, "b"), w(log, "c")) as sup:
        children = refs(sup)
        monitors = {tag: ref.monitor() for tag, ref in children.items()}
    assert terms(log) == [("c", tp.SHUTDOWN), ("b", tp.SHUTDOWN), ("a", tp.SHUTDOWN)]
    assert not any(r.alive for r in children.values())
    for monitor in monitors.values():
        assert await monitor.wait() == tp.SHUTDOWN
    with pytest.raises(tp.NoProc):
        await children["a"].call("ping")


async def test_child_stuck_in_terminate_is_killed_after_its_shutdown_timeout():
    log = []
    start = trio.current_time()
    async with tp.open_supervisor(
        w(log, "a"), w(log, "slow", {"slow_terminate": 100}, shutdown=2.0), w(log, "c")
    ) as sup:
        slow = refs(sup)["slow"]
    assert trio.current_time() - start == pytest.approx(2.0, abs=0.05)
    assert log[3:] == [
        ("terminate", "c", tp.SHUTDOWN),
        ("terminate", "slow", tp.SHUTDOWN),  # never got to ("terminated", "slow")
        ("terminate", "a", tp.SHUTDOWN),
    ]
    assert not slow.alive


async def test_terminate_finishing_within_the_timeout_is_not_killed():
    log = []
    start = trio.current_time()
    async with tp.open_supervisor(w(log, "slow", {"slow_terminate": 3}, shutdown=5.0)):
        pass
    assert trio.current_time() - start == pytest.approx(3.0, abs=0.05)
    assert log[-2:] == [("terminate", "slow", tp.SHUTDOWN), ("terminated", "slow")]


async def test_brutal_kill_skips_terminate():
    log = []
    start = trio.current_time()
    async with tp.open_supervisor(
        w(log, "a"), w(log, "brutal", {"slow_terminate": 100}, shutdown="brutal_kill")
    ) as sup:
        brutal = refs(sup)["brutal"]
        monitor = brutal.monitor()
    assert trio.current_time() == start
    assert terms(log) == [("a", tp.SHUTDOWN)]
    assert not brutal.alive
    assert await monitor.wait() in (tp.SHUTDOWN, tp.KILLED)


async def test_infinite_shutdown_waits_for_terminate():
    log = []
    start = trio.current_time()
    async with tp.open_supervisor(w(log, "patient", {"slow_terminate": 1000}, shutdown=math.inf)):
        pass
    assert trio.current_time() - start == pytest.approx(1000, abs=0.05)
    assert log[-1] == ("terminated", "patient")


async def test_stop_request_waits_for_the_running_callback_and_queued_messages():
    log = []
    start = trio.current_time()
    async with tp.open_supervisor(w(log, "a", shutdown=30)) as sup:
        ref = refs(sup)["a"]
        ref.cast_nowait(("sleep", 10))
        ref.cast_nowait(("note", 1))
        ref.cast_nowait(("note", 2))
        await settle()
        assert log[-1] == ("sleeping", "a")
    assert log[1:] == [
        ("sleeping", "a"),
        ("slept", "a"),
        ("note", "a", 1),
        ("note", "a", 2),
        ("terminate", "a", tp.SHUTDOWN),
    ]
    assert trio.current_time() - start == pytest.approx(10, abs=0.05)


async def test_shutdown_timeout_applies_to_a_long_running_callback():
    log = []
    start = trio.current_time()
    async with tp.open_supervisor(w(log, "a", shutdown=3)) as sup:
        ref = refs(sup)["a"]
        ref.cast_nowait(("sleep", 100))
        ref.cast_nowait(("note", 1))
        await settle()
    assert trio.current_time() - start == pytest.approx(3, abs=0.05)
    assert log[1:] == [("sleeping", "a")]  # killed: no note, no terminate
    assert not ref.alive


async def test_exception_in_the_body_propagates_as_itself_after_children_stopped():
    log = []

    class BodyError(Exception):
        pass

    with pytest.raises(BodyError, match=r"^oops$") as excinfo:
        async with tp.open_supervisor(w(log, "a"), w(log, "b")) as sup:
            children = refs(sup)
            raise BodyError("oops")
    assert type(excinfo.value) is BodyError
    assert terms(log) == [("b", tp.SHUTDOWN), ("a", tp.SHUTDOWN)]
    assert not any(r.alive for r in children.values())


async def test_cancelling_the_body_from_outside_stops_the_children():
    log = []
    with trio.move_on_after(5) as scope:
        async with tp.open_supervisor(w(log, "a"), w(log, "b")) as sup:
            children = refs(sup)
            await trio.sleep_forever()
    assert scope.cancelled_caught
    assert not any(r.alive for r in children.values())
    assert not sup.alive


async def test_supervisor_handle_is_not_alive_after_the_block():
    async with tp.open_supervisor() as sup:
        assert sup.alive
        assert sup.which_children() == []
        assert sup.count_children() == tp.ChildCounts(specs=0, active=0, supervisors=0, workers=0)
    assert not sup.alive


# ---------------------------------------------------------------- auto_shutdown


async def test_any_significant_normal_exit_ends_the_supervisor_without_raising():
    log = []
    reached_end = False
    body_finally = False
    async with tp.open_supervisor(
        w(log, "a"),
        w(log, "sig", restart="transient", significant=True),
        w(log, "c"),
        auto_shutdown="any_significant",
    ) as sup:
        try:
            refs(sup)["sig"].cast_nowait(("stop", "normal"))
            await trio.sleep_forever()
            reached_end = True
        finally:
            body_finally = True
    assert body_finally
    assert not reached_end
    assert terms(log) == [("sig", "normal"), ("c", tp.SHUTDOWN), ("a", tp.SHUTDOWN)]
    assert not sup.alive


async def test_any_significant_abnormal_exit_of_a_transient_child_restarts_it():
    log = []
    async with tp.open_supervisor(
        w(log, "sig", restart="transient", significant=True), auto_shutdown="any_significant"
    ) as sup:
        ref = refs(sup)["sig"]
        ref.cast_nowait("crash")
        await settle()
        assert ref.alive
        assert ref.restarts == 1
        assert sup.alive


async def test_non_significant_child_exit_does_not_trigger_auto_shutdown():
    log = []
    async with tp.open_supervisor(
        w(log, "plain", restart="transient"),
        w(log, "sig", restart="transient", significant=True),
        auto_shutdown="any_significant",
    ) as sup:
        refs(sup)["plain"].cast_nowait(("stop", "normal"))
        await settle()
        assert sup.alive
        assert statuses(sup) == [("plain", "stopped"), ("sig", "running")]


async def test_all_significant_waits_for_every_significant_child():
    log = []
    reached_end = False
    async with tp.open_supervisor(
        w(log, "s1", restart="transient", significant=True),
        w(log, "plain"),
        w(log, "s2", restart="transient", significant=True),
        auto_shutdown="all_significant",
    ) as sup:
        children = refs(sup)
        children["s1"].cast_nowait(("stop", "normal"))
        await settle()
        assert sup.alive
        assert statuses(sup) == [("s1", "stopped"), ("plain", "running"), ("s2", "running")]
        children["s2"].cast_nowait(("stop", tp.Shutdown("done")))
        await trio.sleep_forever()
        reached_end = True
    assert not reached_end
    assert terms(log) == [("s1", "normal"), ("s2", tp.Shutdown("done")), ("plain", tp.SHUTDOWN)]


@pytest.mark.parametrize("how", ["crash", ("stop", "normal"), "kill"])
async def test_significant_temporary_child_ends_the_supervisor_on_any_exit(how):
    log = []
    async with tp.open_supervisor(
        w(log, "a"), w(log, "tmp", restart="temporary", significant=True), auto_shutdown="any_significant"
    ) as sup:
        await _exit_child(refs(sup)["tmp"], how)
        await trio.sleep_forever()
    assert inits(log) == ["a", "tmp"]
    assert terms(log)[-1] == ("a", tp.SHUTDOWN)


async def test_terminate_child_of_a_significant_child_does_not_trigger_auto_shutdown():
    log = []
    async with tp.open_supervisor(
        w(log, "sig", restart="transient", significant=True), w(log, "b"), auto_shutdown="any_significant"
    ) as sup:
        await sup.terminate_child("sig")
        await settle()
        assert sup.alive  # OTP: only an exit the child made by itself counts
        assert statuses(sup) == [("sig", "stopped"), ("b", "running")]


async def test_significant_child_added_with_start_child_triggers_auto_shutdown():
    log = []
    async with tp.open_supervisor(w(log, "a"), auto_shutdown="any_significant") as sup:
        ref = await sup.start_child(w(log, "late", restart="transient", significant=True))
        ref.cast_nowait(("stop", "normal"))
        await trio.sleep_forever()
    assert terms(log) == [("late", "normal"), ("a", tp.SHUTDOWN)]


async def test_start_child_rejects_significant_child_without_auto_shutdown():
    log = []
    async with tp.open_supervisor() as sup:
        with pytest.raises(ValueError, match=r"^child 'x' is significant but auto_shutdown is 'never'$"):
            await sup.start_child(w(log, "x", restart="transient", significant=True))
        assert sup.which_children() == []
    assert log == []


# ---------------------------------------------------------------- methods


async def test_start_child_appends_and_returns_the_ref():
    log = []
    async with tp.open_supervisor(w(log, "a")) as sup:
        ref = await sup.start_child(w(log, "b"))
        assert isinstance(ref, tp.ServerRef)
        assert ref.alive
        assert await ref.call("ping") == ("pong", "b")
        assert [(i.id, i.ref) for i in sup.which_children()][1] == ("b", ref)
        assert statuses(sup) == [("a", "running"), ("b", "running")]
    assert terms(log) == [("b", tp.SHUTDOWN), ("a", tp.SHUTDOWN)]


async def test_start_child_ignore_returns_none_and_lists_the_child_stopped():
    log = []
    async with tp.open_supervisor() as sup:
        assert await sup.start_child(w(log, "ign", {"ignore": True})) is None
        assert statuses(sup) == [("ign", "stopped")]
        assert sup.count_children() == tp.ChildCounts(specs=1, active=0, supervisors=0, workers=1)


async def test_start_child_start_error_leaves_nothing_added():
    log = []
    async with tp.open_supervisor(w(log, "a")) as sup:
        with pytest.raises(tp.StartError) as excinfo:
            await sup.start_child(w(log, "bad", {"fail_init": True}))
        assert isinstance(excinfo.value.__cause__, RuntimeError)
        assert [i.id for i in sup.which_children()] == ["a"]
        # the id is free again
        assert (await sup.start_child(w(log, "bad"))).alive


async def test_start_child_duplicate_id_is_rejected():
    log = []
    async with tp.open_supervisor(w(log, "a")) as sup:
        with pytest.raises(ValueError, match=r"^duplicate child id 'a'$"):
            await sup.start_child(w(log, "a"))
        assert inits(log) == ["a"]
        assert len(sup.which_children()) == 1


async def test_start_child_rejects_what_is_not_a_spec():
    async with tp.open_supervisor() as sup:
        with pytest.raises(TypeError):
            await sup.start_child(Worker)


async def test_terminate_child_keeps_it_listed_stopped_and_runs_terminate_with_shutdown():
    log = []
    async with tp.open_supervisor(w(log, "a"), w(log, "b")) as sup:
        ref = refs(sup)["a"]
        await sup.terminate_child("a")
        assert terms(log) == [("a", tp.SHUTDOWN)]
        assert not ref.alive
        assert statuses(sup) == [("a", "stopped"), ("b", "running")]
        assert sup.count_children() == tp.ChildCounts(specs=2, active=1, supervisors=0, workers=2)
        await settle()
        assert inits(log) == ["a", "b"]  # not restarted: the stop was for good


async def test_terminate_child_of_a_temporary_child_removes_it():
    log = []
    async with tp.open_supervisor(w(log, "tmp", restart="temporary"), w(log, "b")) as sup:
        await sup.terminate_child("tmp")
        assert terms(log) == [("tmp", tp.SHUTDOWN)]
        assert [i.id for i in sup.which_children()] == ["b"]


async def test_terminate_child_uses_the_child_shutdown_timeout():
    log = []
    async with tp.open_supervisor(w(log, "slow", {"slow_terminate": 100}, shutdown=1.5)) as sup:
        start = trio.current_time()
        await sup.terminate_child("slow")
        assert trio.current_time() - start == pytest.approx(1.5, abs=0.05)
        assert log[-1] == ("terminate", "slow", tp.SHUTDOWN)
        assert statuses(sup) == [("slow", "stopped")]


async def test_terminate_child_unknown_id_raises_lookup_error():
    async with tp.open_supervisor() as sup:
        with pytest.raises(LookupError, match=r"^no child with id 'nope'$"):
            await sup.terminate_child("nope")


async def test_restart_child_only_when_stopped():
    log = []
    async with tp.open_supervisor(w(log, "a"), w(log, "b")) as sup:
        old = refs(sup)["a"]
        with pytest.raises(ValueError, match=r"^child 'a' is running, not stopped$"):
            await sup.restart_child("a")
        await sup.terminate_child("a")
        new = await sup.restart_child("a")
        assert new.alive
        assert await new.call("ping") == ("pong", "a")
        assert inits(log) == ["a", "b", "a"]
        assert [(i.id, i.status) for i in sup.which_children()] == [("a", "running"), ("b", "running")]
        assert refs(sup)["a"] is new
        assert new is not old  # a ref stopped for good stays stopped
        assert not old.alive


async def test_restart_child_of_an_ignored_child_runs_init_again():
    log = []
    control = {"ignore": True}
    async with tp.open_supervisor(w(log, "x", control)) as sup:
        control["ignore"] = False
        ref = await sup.restart_child("x")
        assert ref.alive
        assert statuses(sup) == [("x", "running")]
        assert inits(log) == ["x", "x"]


async def test_restart_child_failing_raises_start_error_and_stays_stopped():
    log = []
    control = {}
    async with tp.open_supervisor(w(log, "x", control)) as sup:
        await sup.terminate_child("x")
        control["fail_init"] = True
        with pytest.raises(tp.StartError):
            await sup.restart_child("x")
        assert statuses(sup) == [("x", "stopped")]


async def test_delete_child_only_when_stopped():
    log = []
    async with tp.open_supervisor(w(log, "a"), w(log, "b")) as sup:
        with pytest.raises(ValueError, match=r"^child 'a' is running, not stopped$"):
            sup.delete_child("a")
        await sup.terminate_child("a")
        sup.delete_child("a")
        assert [i.id for i in sup.which_children()] == ["b"]
        with pytest.raises(LookupError):
            sup.delete_child("a")
        with pytest.raises(LookupError):
            await sup.restart_child("a")
        # the id can be used again, appended at the end
        await sup.start_child(w(log, "a"))
        assert [i.id for i in sup.which_children()] == ["b", "a"]


async def test_which_children_fields_and_order():
    log = []
    async with tp.open_supervisor(w(log, "a"), w(log, "b", restart="transient"), strategy="one_for_all") as sup:
        c = await sup.start_child(w(log, "c", restart="temporary"))
        infos = sup.which_children()
        assert all(isinstance(i, tp.ChildInfo) for i in infos)
        assert [(i.id, i.type, i.restart, i.status) for i in infos] == [
            ("a", "worker", "permanent", "running"),
            ("b", "worker", "transient", "running"),
            ("c", "worker", "temporary", "running"),
        ]
        assert infos[2].ref is c
        assert all(isinstance(i.ref, tp.ServerRef) for i in infos)
        with pytest.raises(AttributeError):
            infos[0].status = "stopped"
        # a restart keeps the place
        d = await sup.start_child(w(log, "d"))
        infos[0].ref.cast_nowait("crash")
        await settle()
        assert [i.id for i in sup.which_children()] == ["a", "b", "d"]  # temporary c dropped as bystander
        assert refs(sup)["d"] is d
        assert d.restarts == 1


async def test_which_children_restart_keeps_the_place_one_for_one():
    log = []
    async with tp.open_supervisor(w(log, "a"), w(log, "b")) as sup:
        c = await sup.start_child(w(log, "c"))
        before = sup.which_children()
        refs(sup)["a"].kill()
        c.kill()
        await settle()
        after = sup.which_children()
        assert [(i.id, i.ref) for i in after] == [(i.id, i.ref) for i in before]
        assert all(i.status == "running" for i in after)


async def test_count_children_follows_otp():
    log = []
    async with tp.open_supervisor(
        w(log, "a"), w(log, "b", restart="transient"), w(log, "c"), w(log, "i", {"ignore": True})
    ) as sup:
        assert sup.count_children() == tp.ChildCounts(specs=4, active=3, supervisors=0, workers=4)
        await sup.terminate_child("a")
        refs(sup)["b"].cast_nowait(("stop", "normal"))
        await settle()
        counts = sup.count_children()
        assert counts == tp.ChildCounts(specs=4, active=1, supervisors=0, workers=4)
        assert (counts.specs, counts.active, counts.supervisors, counts.workers) == (4, 1, 0, 4)
        with pytest.raises(AttributeError):
            counts.active = 9


async def test_status_is_restarting_while_a_child_restarts():
    log = []
    gate = trio.Event()

    class SlowRestart(tp.GenServer):
        async def init(self):
            log.append("init")
            if len(log) > 1:
                await gate.wait()
            return None

        async def handle_cast(self, message, state):
            raise RuntimeError("crash")

    async with tp.open_supervisor(tp.child(SlowRestart, id="s", preserve=False), w(log, "other")) as sup:
        ref = refs(sup)["s"]
        ref.cast_nowait("crash")
        await settle()
        assert statuses(sup)[0] == ("s", "restarting")
        assert not ref.alive
        # workers include restarting children; active does not
        assert sup.count_children() == tp.ChildCounts(specs=2, active=1, supervisors=0, workers=2)
        gate.set()
        await settle()
        assert statuses(sup)[0] == ("s", "running")
        assert ref.alive


async def test_methods_work_from_another_task():
    log = []
    results = []

    async def other_task(sup):
        ref = await sup.start_child(w(log, "x"))
        results.append(await ref.call("ping"))
        await sup.terminate_child("x")
        results.append(statuses(sup))
        ref2 = await sup.restart_child("x")
        results.append(ref2.alive)
        await sup.terminate_child("x")
        sup.delete_child("x")
        results.append(sup.count_children())

    async with tp.open_supervisor(w(log, "a")) as sup, trio.open_nursery() as nursery:
        nursery.start_soon(other_task, sup)
    assert results == [
        ("pong", "x"),
        [("a", "running"), ("x", "stopped")],
        True,
        tp.ChildCounts(specs=1, active=1, supervisors=0, workers=1),
    ]
    assert inits(log) == ["a", "x", "x"]


async def test_methods_after_the_supervisor_ended_raise():
    log = []
    async with tp.open_supervisor(w(log, "a")) as sup:
        pass
    with pytest.raises(trio.ClosedResourceError):
        await sup.start_child(w(log, "b"))
    assert inits(log) == ["a"]


# ---------------------------------------------------------------- names


async def test_supervisor_name_registers_the_handle():
    async with tp.open_supervisor(name="the-sup") as sup:
        assert isinstance(sup, tp.Supervisor)
        assert tp.whereis("the-sup") is sup
        assert sup.name == "the-sup"
    assert tp.whereis("the-sup") is None


async def test_second_supervisor_with_a_taken_name_raises_already_started():
    async with tp.open_supervisor(name="taken") as sup:
        with pytest.raises(tp.AlreadyStarted) as excinfo:
            async with tp.open_supervisor(name="taken"):
                pytest.fail("the body must not run")
        assert excinfo.value.ref is sup
        assert tp.whereis("taken") is sup


async def test_named_child_is_found_across_restarts_and_freed_when_stopped():
    log = []
    async with tp.open_supervisor(w(log, "a", name="worker-a")) as sup:
        ref = tp.whereis("worker-a")
        assert ref is refs(sup)["a"]
        ref.kill()
        await settle()
        assert tp.whereis("worker-a") is ref
        assert await tp.call("worker-a", "ping") == ("pong", "a")
        await sup.terminate_child("a")
        assert tp.whereis("worker-a") is None


# ---------------------------------------------------------------- group restarts with stopped children


@pytest.mark.parametrize("strategy", ["one_for_all", "rest_for_one"])
async def test_group_restart_with_an_ignored_child_in_the_group(strategy):
    log = []
    async with tp.open_supervisor(
        w(log, "a"), w(log, "ign", {"ignore": True}), w(log, "c"), strategy=strategy
    ) as sup:
        a = refs(sup)["a"]
        a.cast_nowait("crash")
        await settle()
        assert sup.alive
        assert a.alive
        assert a.restarts == 1
        # whether or not init ran again for it, it returned IGNORE: still not running
        assert statuses(sup) == [("a", "running"), ("ign", "stopped"), ("c", "running")]


@pytest.mark.parametrize("strategy", ["one_for_all", "rest_for_one"])
async def test_group_restart_with_a_terminated_child_in_the_group(strategy):
    log = []
    async with tp.open_supervisor(w(log, "a"), w(log, "b"), w(log, "c"), strategy=strategy) as sup:
        await sup.terminate_child("b")
        a = refs(sup)["a"]
        a.cast_nowait("crash")
        await settle()
        assert sup.alive
        assert a.alive
        assert a.restarts == 1
        assert refs(sup)["c"].alive
        assert [s for i, s in statuses(sup) if i != "b"] == ["running", "running"]


async def test_stop_request_of_terminate_child_waits_for_queued_messages():
    log = []
    async with tp.open_supervisor(w(log, "a", shutdown=30)) as sup:
        ref = refs(sup)["a"]
        ref.cast_nowait(("sleep", 10))
        ref.cast_nowait(("note", 1))
        await settle()
        start = trio.current_time()
        await sup.terminate_child("a")
        assert trio.current_time() - start == pytest.approx(10, abs=0.05)
        assert log[1:] == [("sleeping", "a"), ("slept", "a"), ("note", "a", 1), ("terminate", "a", tp.SHUTDOWN)]


async def test_child_crashing_during_shutdown_is_not_restarted():
    log = []
    async with tp.open_supervisor(w(log, "a"), w(log, "slow", {"slow_terminate": 5}, shutdown=10)) as sup:
        a = refs(sup)["a"]
        a.cast_nowait(("sleep", 1))
        a.cast_nowait("crash")
        await settle()
    # slow's terminate took 5s; a crashed at t=1 meanwhile and must not come back
    assert [e for e in log if e[1] == "a"] == [("init", "a"), ("sleeping", "a"), ("slept", "a")]
    assert ("terminated", "slow") in log
    assert not a.alive
    assert a.restarts == 0


async def test_terminate_raising_during_shutdown_does_not_stop_the_others_from_stopping():
    log = []

    class BadTerminate(tp.GenServer):
        async def init(self):
            return None

        async def terminate(self, reason, state):
            log.append("bad terminate")
            raise RuntimeError("terminate failed")

    async with tp.open_supervisor(w(log, "a"), tp.child(BadTerminate, id="bad"), w(log, "c")) as sup:
        children = refs(sup)
    assert log[-3:] == [
        ("terminate", "c", tp.SHUTDOWN),
        "bad terminate",
        ("terminate", "a", tp.SHUTDOWN),
    ]
    assert not any(r.alive for r in children.values())


async def test_a_top_level_supervisor_tells_its_monitors_when_it_ends():
    async with tp.open_supervisor() as sup:
        monitor = sup.monitor()
        assert sup.alive
    assert await monitor.wait() is tp.SHUTDOWN
    assert await sup.wait_stopped() is tp.SHUTDOWN
    assert not sup.alive


async def test_a_supervisor_that_gives_up_reports_the_failure_to_its_monitors():
    class Crasher(tp.GenServer):
        async def init(self):
            return None

        async def handle_cast(self, message, state):
            raise RuntimeError(message)

    with pytest.raises(tp.RestartIntensityExceeded):
        async with tp.open_supervisor(tp.child(Crasher), max_restarts=0) as sup:
            monitor = sup.monitor()
            sup.which_children()[0].ref.cast_nowait("boom")
            await trio.sleep_forever()
    assert isinstance(await monitor.wait(), tp.RestartIntensityExceeded)
