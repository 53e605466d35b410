"""Plain async-function children and nested supervisors (API.md sections 4 and 10).

Function children follow Trio's start protocol: they count as started when they
call ``task_status.started()``; their handle is a `tp.TaskRef`. Nested
supervisors are ``tp.supervisor(...)`` / ``tp.dynamic_supervisor(...)`` targets
whose handle is a `tp.Supervisor`.
"""

from __future__ import annotations

import pytest
import trio
from trio.testing import wait_all_tasks_blocked

import trio_peeper as tp

# ---------------------------------------------------------------- helpers


async def forever(log, tag, task_status=trio.TASK_STATUS_IGNORED):
    """Starts, then runs until cancelled; records both."""
    log.append(("start", tag))
    task_status.started()
    try:
        await trio.sleep_forever()
    finally:
        log.append(("end", tag))


async def returns_once(log, tag, task_status=trio.TASK_STATUS_IGNORED):
    """Returns at once on its first run; later runs stay up."""
    log.append(("start", tag))
    task_status.started()
    await trio.sleep(1)
    if sum(1 for e in log if e == ("start", tag)) == 1:
        log.append(("return", tag))
        return
    await trio.sleep_forever()


async def raises_once(log, tag, task_status=trio.TASK_STATUS_IGNORED):
    """Raises on its first run; later runs stay up."""
    log.append(("start", tag))
    task_status.started()
    await trio.sleep(1)
    if sum(1 for e in log if e == ("start", tag)) == 1:
        msg = f"{tag} failed"
        raise RuntimeError(msg)
    await trio.sleep_forever()


async def never_started(log, task_status=trio.TASK_STATUS_IGNORED):
    log.append("ran")


async def raises_before_started(log, task_status=trio.TASK_STATUS_IGNORED):
    log.append("ran")
    msg = "no luck"
    raise ValueError(msg)


class Worker(tp.GenServer):
    """Records ``("init", tag)`` and ``("terminate", tag, reason)`` in *log*."""

    async def init(self, log, tag):
        log.append(("init", tag))
        return {"log": log, "tag": tag}

    async def handle_call(self, request, caller, state):
        return tp.Reply(("pong", state["tag"]), state)

    async def handle_cast(self, message, state):
        msg = f"{state['tag']} crashed"
        raise RuntimeError(msg)

    async def terminate(self, reason, state):
        state["log"].append(("terminate", state["tag"], reason))


class Quitter(tp.GenServer):
    """Stops with reason "normal" on any cast."""

    async def init(self, log):
        log.append(("init", "q"))

    async def handle_cast(self, message, state):
        return tp.Stop("normal", state)


def w(log, tag, **kwargs):
    return tp.child(Worker, log, tag, id=tag, preserve=False, **kwargs)


def refs(sup):
    return {info.id: info.ref for info in sup.which_children()}


def statuses(sup):
    return [(info.id, info.status) for info in sup.which_children()]


async def settle():
    await wait_all_tasks_blocked()


# ---------------------------------------------------------------- function children


async def test_function_child_starts_in_order_and_has_a_task_ref():
    log = []
    async with tp.open_supervisor(
        tp.child(forever, log, "f", id="f"), w(log, "after")
    ) as sup:
        assert log == [("start", "f"), ("init", "after")]
        info = sup.which_children()[0]
        assert (info.id, info.type, info.restart, info.status) == ("f", "worker", "permanent", "running")
        assert isinstance(info.ref, tp.TaskRef)
        assert info.ref.alive
        assert sup.count_children() == tp.ChildCounts(specs=2, active=2, supervisors=0, workers=2)
    # shutdown cancels the function: its finally runs, after the later child stopped
    assert log[2:] == [("terminate", "after", tp.SHUTDOWN), ("end", "f")]
    assert not info.ref.alive


async def test_function_child_id_defaults_to_its_qualname():
    log = []
    async with tp.open_supervisor(tp.child(forever, log, "f")) as sup:
        assert [i.id for i in sup.which_children()] == [forever.__qualname__]


async def test_killed_function_child_is_restarted_with_the_same_ref():
    log = []
    async with tp.open_supervisor(tp.child(forever, log, "f", id="f")) as sup:
        ref = refs(sup)["f"]
        ref.kill()
        await settle()
        assert log == [("start", "f"), ("end", "f"), ("start", "f")]
        assert refs(sup)["f"] is ref
        assert ref.alive
        assert ref.restarts == 1


async def test_permanent_function_that_returns_is_restarted():
    log = []
    async with tp.open_supervisor(tp.child(returns_once, log, "f", id="f")) as sup:
        ref = refs(sup)["f"]
        await trio.sleep(2)
        assert log == [("start", "f"), ("return", "f"), ("start", "f")]
        assert ref.alive
        assert ref.restarts == 1
        assert statuses(sup) == [("f", "running")]


async def test_transient_function_that_returns_exits_normal_and_is_not_restarted():
    log = []
    async with tp.open_supervisor(
        tp.child(returns_once, log, "f", id="f", restart="transient"), w(log, "other")
    ) as sup:
        ref = refs(sup)["f"]
        monitor = ref.monitor()
        assert await ref.wait_stopped() == "normal"
        assert await monitor.wait() == "normal"
        await settle()
        assert not ref.alive
        assert log == [("start", "f"), ("init", "other"), ("return", "f")]
        assert statuses(sup) == [("f", "stopped"), ("other", "running")]
        assert sup.count_children() == tp.ChildCounts(specs=2, active=1, supervisors=0, workers=2)


async def test_temporary_function_that_returns_is_removed():
    log = []
    async with tp.open_supervisor(tp.child(returns_once, log, "f", id="f", restart="temporary")) as sup:
        ref = refs(sup)["f"]
        assert await ref.wait_stopped() == "normal"
        await settle()
        assert sup.which_children() == []


@pytest.mark.parametrize("restart", ["permanent", "transient"])
async def test_function_that_raises_is_restarted(restart):
    log = []
    async with tp.open_supervisor(tp.child(raises_once, log, "f", id="f", restart=restart)) as sup:
        ref = refs(sup)["f"]
        await trio.sleep(2)
        assert log == [("start", "f"), ("start", "f")]
        assert ref.alive
        assert ref.restarts == 1


async def test_temporary_function_that_raises_reports_the_exception():
    log = []
    async with tp.open_supervisor(tp.child(raises_once, log, "f", id="f", restart="temporary")) as sup:
        ref = refs(sup)["f"]
        reason = await ref.wait_stopped()
        assert isinstance(reason, RuntimeError)
        assert str(reason) == "f failed"
        await settle()
        assert sup.which_children() == []


async def test_function_crashing_too_often_exceeds_the_intensity():
    log = []

    async def always_raises(task_status=trio.TASK_STATUS_IGNORED):
        log.append("start")
        task_status.started()
        await trio.sleep(0.1)
        raise RuntimeError("again")

    with pytest.raises(tp.RestartIntensityExceeded) as excinfo:
        async with tp.open_supervisor(tp.child(always_raises, id="f"), max_restarts=2):
            await trio.sleep_forever()
    assert type(excinfo.value) is tp.RestartIntensityExceeded
    assert isinstance(excinfo.value.__cause__, RuntimeError)
    assert log == ["start"] * 3


async def test_function_that_never_calls_started_is_a_start_error():
    log = []
    with pytest.raises(tp.StartError) as excinfo:
        async with tp.open_supervisor(w(log, "a"), tp.child(never_started, log, id="f")):
            pytest.fail("the body must not run")
    assert type(excinfo.value) is tp.StartError
    assert log == [("init", "a"), "ran", ("terminate", "a", tp.SHUTDOWN)]


async def test_function_raising_before_started_is_a_start_error_with_cause():
    log = []
    with pytest.raises(tp.StartError) as excinfo:
        async with tp.open_supervisor(tp.child(raises_before_started, log, id="f")):
            pytest.fail("the body must not run")
    assert type(excinfo.value) is tp.StartError
    assert isinstance(excinfo.value.__cause__, ValueError)
    assert str(excinfo.value.__cause__) == "no luck"


async def test_start_child_of_a_function_that_never_starts_adds_nothing():
    log = []
    async with tp.open_supervisor() as sup:
        with pytest.raises(tp.StartError):
            await sup.start_child(tp.child(never_started, log, id="f"))
        assert sup.which_children() == []
        ref = await sup.start_child(tp.child(forever, log, "g", id="g"))
        assert isinstance(ref, tp.TaskRef)
        assert ref.alive


async def test_terminate_child_cancels_a_function_for_good():
    log = []
    async with tp.open_supervisor(tp.child(forever, log, "f", id="f")) as sup:
        ref = refs(sup)["f"]
        monitor = ref.monitor()
        await sup.terminate_child("f")
        assert log == [("start", "f"), ("end", "f")]
        assert await monitor.wait() == tp.SHUTDOWN
        assert await ref.wait_stopped() == tp.SHUTDOWN
        assert not ref.alive
        await settle()
        assert statuses(sup) == [("f", "stopped")]
        new = await sup.restart_child("f")
        assert new.alive
        assert log[-1] == ("start", "f")


async def test_function_children_follow_one_for_all():
    log = []
    async with tp.open_supervisor(
        tp.child(forever, log, "a", id="a"),
        w(log, "b"),
        tp.child(forever, log, "c", id="c"),
        strategy="one_for_all",
    ) as sup:
        children = refs(sup)
        log.clear()
        children["a"].kill()
        await settle()
        assert log == [
            ("end", "a"),
            ("end", "c"),
            ("terminate", "b", tp.SHUTDOWN),
            ("start", "a"),
            ("init", "b"),
            ("start", "c"),
        ]
        assert [r.restarts for r in children.values()] == [1, 1, 1]


async def test_function_child_start_value_does_not_change_the_ref():
    async def gives_value(task_status=trio.TASK_STATUS_IGNORED):
        task_status.started("hello")
        await trio.sleep_forever()

    async with tp.open_supervisor() as sup:
        ref = await sup.start_child(tp.child(gives_value, id="v"))
        assert isinstance(ref, tp.TaskRef)
        assert refs(sup)["v"] is ref


# ---------------------------------------------------------------- nested supervisors


async def test_nested_supervisor_is_listed_and_counted_as_a_supervisor():
    log = []
    async with tp.open_supervisor(
        w(log, "a"),
        tp.child(tp.supervisor(w(log, "x"), w(log, "y")), id="inner"),
        tp.child(tp.dynamic_supervisor(), id="dyn"),
    ) as sup:
        assert log == [("init", "a"), ("init", "x"), ("init", "y")]
        infos = sup.which_children()
        assert [(i.id, i.type, i.status) for i in infos] == [
            ("a", "worker", "running"),
            ("inner", "supervisor", "running"),
            ("dyn", "supervisor", "running"),
        ]
        inner, dyn = infos[1].ref, infos[2].ref
        assert isinstance(inner, tp.Supervisor)
        assert isinstance(dyn, tp.Supervisor)
        assert inner.alive
        assert dyn.alive
        assert sup.count_children() == tp.ChildCounts(specs=3, active=3, supervisors=2, workers=1)
        assert [i.id for i in inner.which_children()] == ["x", "y"]
        assert inner.count_children() == tp.ChildCounts(specs=2, active=2, supervisors=0, workers=2)
        ref = await dyn.start_child(w(log, "d"))
        assert await ref.call("ping") == ("pong", "d")
        assert dyn.count_children() == tp.ChildCounts(specs=1, active=1, supervisors=0, workers=1)
        assert [i.id for i in dyn.which_children()] == [None]


async def test_nested_supervisor_ids_default_by_kind():
    async with tp.open_supervisor(tp.child(tp.supervisor()), tp.child(tp.dynamic_supervisor())) as sup:
        assert [i.id for i in sup.which_children()] == ["supervisor", "dynamic_supervisor"]


async def test_nested_supervisor_with_a_name_is_registered():
    async with tp.open_supervisor(tp.child(tp.supervisor(name="inner-sup"), id="inner")) as sup:
        inner = refs(sup)["inner"]
        assert tp.whereis("inner-sup") is inner
    assert tp.whereis("inner-sup") is None


async def test_nested_supervisor_child_restarts_stay_inside_it():
    log = []
    async with tp.open_supervisor(
        w(log, "a"), tp.child(tp.supervisor(w(log, "x"), w(log, "y"), strategy="one_for_all"), id="inner")
    ) as sup:
        inner = refs(sup)["inner"]
        log.clear()
        refs(inner)["x"].cast_nowait("crash")
        await settle()
        assert log == [("terminate", "y", tp.SHUTDOWN), ("init", "x"), ("init", "y")]
        assert inner.restarts == 0
        assert refs(sup)["a"].restarts == 0


async def test_nested_supervisor_exceeding_its_intensity_is_restarted_by_its_parent():
    log = []
    async with tp.open_supervisor(
        w(log, "a"),
        tp.child(tp.supervisor(w(log, "x"), w(log, "y"), max_restarts=0), id="inner"),
        w(log, "b"),
    ) as sup:
        inner = refs(sup)["inner"]
        old_x = refs(inner)["x"]
        log.clear()
        old_x.cast_nowait("crash")
        await settle()
        # the inner supervisor gave up (y stopped), its parent restarted it: x and y start again
        assert log == [("terminate", "y", tp.SHUTDOWN), ("init", "x"), ("init", "y")]
        assert statuses(sup) == [("a", "running"), ("inner", "running"), ("b", "running")]
        inner = refs(sup)["inner"]
        assert inner.alive
        assert inner.restarts == 1
        assert [i.status for i in inner.which_children()] == ["running", "running"]
        assert await refs(inner)["x"].call("ping") == ("pong", "x")
        assert refs(sup)["a"].restarts == 0
        assert refs(sup)["b"].restarts == 0


async def test_nested_supervisor_keeps_its_handle_across_its_restart():
    log = []
    async with tp.open_supervisor(tp.child(tp.supervisor(w(log, "x"), max_restarts=0), id="inner")) as sup:
        inner = refs(sup)["inner"]
        refs(inner)["x"].cast_nowait("crash")
        await settle()
        assert refs(sup)["inner"] is inner
        assert inner.restarts == 1


async def test_nested_supervisor_crash_follows_the_parent_strategy():
    log = []
    async with tp.open_supervisor(
        w(log, "a"),
        tp.child(tp.supervisor(w(log, "x"), max_restarts=0), id="inner"),
        w(log, "b"),
        strategy="rest_for_one",
    ) as sup:
        inner = refs(sup)["inner"]
        log.clear()
        refs(inner)["x"].cast_nowait("crash")
        await settle()
        assert log == [("terminate", "b", tp.SHUTDOWN), ("init", "x"), ("init", "b")]
        assert refs(sup)["b"].restarts == 1
        assert refs(sup)["a"].restarts == 0


async def test_nested_supervisor_giving_up_repeatedly_escalates_to_the_top():
    log = []
    with pytest.raises(tp.RestartIntensityExceeded) as excinfo:
        async with tp.open_supervisor(
            w(log, "a"), tp.child(tp.supervisor(w(log, "x"), max_restarts=0), id="inner"), max_restarts=1
        ) as sup:
            for _ in range(2):
                refs(refs(sup)["inner"])["x"].cast_nowait("crash")
                await settle()
            await trio.sleep_forever()
    assert type(excinfo.value) is tp.RestartIntensityExceeded
    assert excinfo.value.child == "inner"
    assert log[-1] == ("terminate", "a", tp.SHUTDOWN)


async def test_nested_supervisor_failing_to_start_is_a_start_error_for_the_parent():
    log = []

    class Broken(tp.GenServer):
        async def init(self):
            raise RuntimeError("broken")

    with pytest.raises(tp.StartError) as excinfo:
        async with tp.open_supervisor(
            w(log, "a"), tp.child(tp.supervisor(w(log, "x"), tp.child(Broken, id="broken")), id="inner")
        ):
            pytest.fail("the body must not run")
    assert type(excinfo.value) is tp.StartError
    assert log == [("init", "a"), ("init", "x"), ("terminate", "x", tp.SHUTDOWN), ("terminate", "a", tp.SHUTDOWN)]


async def test_shutdown_of_a_tree_stops_grandchildren_deepest_last_first():
    log = []
    async with tp.open_supervisor(
        w(log, "a"),
        tp.child(
            tp.supervisor(
                w(log, "b1"),
                tp.child(tp.supervisor(w(log, "c1"), w(log, "c2")), id="deep"),
                w(log, "b2"),
            ),
            id="mid",
        ),
        w(log, "z"),
    ) as sup:
        mid = refs(sup)["mid"]
        deep = refs(mid)["deep"]
        assert [e[1] for e in log] == ["a", "b1", "c1", "c2", "b2", "z"]
        log.clear()
    assert log == [
        ("terminate", "z", tp.SHUTDOWN),
        ("terminate", "b2", tp.SHUTDOWN),
        ("terminate", "c2", tp.SHUTDOWN),
        ("terminate", "c1", tp.SHUTDOWN),
        ("terminate", "b1", tp.SHUTDOWN),
        ("terminate", "a", tp.SHUTDOWN),
    ]
    assert not mid.alive
    assert not deep.alive


async def test_terminate_child_of_a_nested_supervisor_stops_its_children():
    log = []
    async with tp.open_supervisor(
        tp.child(tp.supervisor(w(log, "x"), w(log, "y")), id="inner"), w(log, "b")
    ) as sup:
        inner = refs(sup)["inner"]
        monitor = inner.monitor()
        log.clear()
        await sup.terminate_child("inner")
        assert log == [("terminate", "y", tp.SHUTDOWN), ("terminate", "x", tp.SHUTDOWN)]
        assert not inner.alive
        assert await monitor.wait() == tp.SHUTDOWN
        assert statuses(sup) == [("inner", "stopped"), ("b", "running")]
        assert sup.count_children() == tp.ChildCounts(specs=2, active=1, supervisors=1, workers=1)
        again = await sup.restart_child("inner")
        assert isinstance(again, tp.Supervisor)
        assert again.alive
        assert log[-2:] == [("init", "x"), ("init", "y")]


async def test_nested_dynamic_supervisor_children_are_stopped_with_the_tree():
    log = []
    async with tp.open_supervisor(tp.child(tp.dynamic_supervisor(), id="dyn"), w(log, "b")) as sup:
        dyn = refs(sup)["dyn"]
        r1 = await dyn.start_child(w(log, "d1"))
        r2 = await dyn.start_child(w(log, "d2"))
        log.clear()
    assert log[0] == ("terminate", "b", tp.SHUTDOWN)
    assert sorted(log[1:]) == [("terminate", "d1", tp.SHUTDOWN), ("terminate", "d2", tp.SHUTDOWN)]
    assert not r1.alive
    assert not r2.alive


async def test_killed_nested_supervisor_is_restarted_without_terminate():
    log = []
    async with tp.open_supervisor(tp.child(tp.supervisor(w(log, "x")), id="inner")) as sup:
        inner = refs(sup)["inner"]
        log.clear()
        inner.kill()
        await settle()
        assert log == [("init", "x")]  # killed: x got no terminate; then restarted
        assert refs(sup)["inner"].alive
        assert refs(sup)["inner"].restarts == 1


async def test_nested_supervisor_with_a_brutal_kill_shutdown():
    log = []
    async with tp.open_supervisor(
        tp.child(tp.supervisor(w(log, "x")), id="inner", shutdown="brutal_kill"), w(log, "b")
    ) as sup:
        inner = refs(sup)["inner"]
        x = refs(inner)["x"]
        log.clear()
    assert log == [("terminate", "b", tp.SHUTDOWN)]
    assert not inner.alive
    assert not x.alive


async def test_nested_supervisor_spec_is_validated_where_it_is_built():
    with pytest.raises(ValueError, match=r"^strategy must be .*, got 'nope'$"):
        tp.supervisor(strategy="nope")
    with pytest.raises(TypeError):
        tp.child(tp.supervisor(), "an arg")


async def test_nested_supervisor_auto_shutdown_is_a_normal_exit_for_its_parent():
    log = []
    async with tp.open_supervisor(
        tp.child(
            tp.supervisor(
                w(log, "x"),
                tp.child(Quitter, log, id="q", restart="transient", significant=True),
                auto_shutdown="any_significant",
            ),
            id="inner",
            restart="transient",
        ),
        w(log, "b"),
    ) as sup:
        inner = refs(sup)["inner"]
        monitor = inner.monitor()
        log.clear()
        refs(inner)["q"].cast_nowait("quit")
        reason = await monitor.wait()
        await settle()
        assert tp.is_normal(reason)
        assert log == [("terminate", "x", tp.SHUTDOWN)]  # not restarted: a transient child exiting normally
        assert not inner.alive
        assert sup.alive
        assert statuses(sup) == [("inner", "stopped"), ("b", "running")]


async def test_nested_auto_shutdown_cascades_through_a_significant_transient_supervisor():
    log = []

    reached_end = False
    async with tp.open_supervisor(
        w(log, "a"),
        tp.child(
            tp.supervisor(
                w(log, "x"),
                tp.child(Quitter, log, id="q", restart="transient", significant=True),
                auto_shutdown="any_significant",
            ),
            id="inner",
            restart="transient",
            significant=True,
        ),
        auto_shutdown="any_significant",
    ) as sup:
        inner = refs(sup)["inner"]
        refs(inner)["q"].cast_nowait("quit")
        await trio.sleep_forever()
        reached_end = True
    assert not reached_end
    assert log[-2:] == [("terminate", "x", tp.SHUTDOWN), ("terminate", "a", tp.SHUTDOWN)]
    assert not inner.alive


async def test_named_nested_supervisor_keeps_its_name_across_its_restart():
    log = []
    async with tp.open_supervisor(
        tp.child(tp.supervisor(w(log, "x"), max_restarts=0, name="named-inner"), id="inner")
    ) as sup:
        inner = tp.whereis("named-inner")
        assert inner is refs(sup)["inner"]
        refs(inner)["x"].cast_nowait("crash")
        await settle()
        assert tp.whereis("named-inner") is refs(sup)["inner"]
        assert tp.whereis("named-inner").alive
    assert tp.whereis("named-inner") is None


async def test_restarted_nested_dynamic_supervisor_comes_back_empty():
    log = []
    async with tp.open_supervisor(tp.child(tp.dynamic_supervisor(), id="dyn")) as sup:
        dyn = refs(sup)["dyn"]
        child = await dyn.start_child(w(log, "d"))
        dyn.kill()
        await settle()
        dyn = refs(sup)["dyn"]
        assert dyn.alive
        assert dyn.which_children() == []
        assert not child.alive
        assert log == [("init", "d")]  # killed with its supervisor: no terminate, no restart
