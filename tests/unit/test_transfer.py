"""``tp.transfer(ref, source, target)``: moving a running server between dynamic supervisors.

API.md section 6: the server keeps its state, mailbox, tables, process dictionary, name
and ref; no message is lost and the ref stays valid. If it cannot move (not a child of
*source*, *target* full), it raises and leaves the server untouched. The scenario of
Peeper's own "transfers process between supervisors with state preservation" and
"handles transfer error scenarios" tests comes first.
"""

from __future__ import annotations

import pytest
import trio
import trio.testing

import trio_peeper as tp
from _shared import Log

settle = trio.testing.wait_all_tasks_blocked

TABLE_ROWS = [("a", 42), ("b", "foo"), ("c", (42, "foo"))]


class Mover(tp.GenServer):
    """State ``{"n": int, "log": Log, "gate": trio.Event | None}``; logs every message it handles."""

    async def init(self, log, gate=None, n=0):
        return {"n": n, "log": log, "gate": gate}

    async def handle_call(self, request, caller, state):
        state["log"].append(("call", request))
        match request:
            case "n":
                return tp.Reply(state["n"], state)
            case ("pd_get", key):
                return tp.Reply(tp.pdict().get(key), state)
            case ("table", name):
                return tp.Reply(tp.whereis_table(name).items(), state)
            case "task":
                return tp.Reply(trio.lowlevel.current_task(), state)
            case "boom":
                raise RuntimeError("boom")
        state["n"] += request
        return tp.Reply(state["n"], state)

    async def handle_cast(self, message, state):
        state["log"].append(("cast", message))
        match message:
            case "hold":
                await state["gate"].wait()
            case "hold_then_crash":
                await state["gate"].wait()
                raise RuntimeError("crash after the gate")
            case ("pd_set", key, value):
                tp.pdict()[key] = value
            case ("table", name):
                tp.Table("ordered_set", name=name).insert_many(TABLE_ROWS)
            case "hibernate":
                return tp.NoReply(state, hibernate=True)
            case int(n):
                state["n"] += n
            case (sender, seq):
                state["n"] += 1
                del sender, seq
        return tp.NoReply(state)

    async def handle_info(self, message, state):
        state["log"].append(("info", message))
        state["n"] += 1
        return tp.NoReply(state)

    async def terminate(self, reason, state):
        state["log"].append(("terminate", reason))


def mover(log, *args, **options):
    return tp.child(Mover, log, *args, **options)


def statuses(sup):
    return [(c.ref, c.status) for c in sup.which_children()]


async def test_transfer_keeps_state_tables_dictionary_name_and_ref():
    log = Log()
    async with (
        tp.open_dynamic_supervisor(name="source") as source,
        tp.open_dynamic_supervisor(name="target") as target,
    ):
        ref = await source.start_child(mover(log, name="p3"))
        await ref.cast(("table", "my_table"))
        await ref.cast(("pd_set", "foo", 42))
        await ref.cast(1)
        assert await tp.call("p3", "n") == 1
        table = tp.whereis_table("my_table")
        handled = ref.statistics().handled

        await tp.transfer(ref, source, target)

        assert source.which_children() == []
        assert target.which_children() == [tp.ChildInfo(None, ref, "worker", "permanent", "running")]
        assert target.count_children() == tp.ChildCounts(1, 1, 0, 1)
        assert source.count_children() == tp.ChildCounts(0, 0, 0, 0)
        assert tp.whereis("p3") is ref
        assert ref.alive
        assert ref.restarts == 0
        assert await tp.call("p3", "n") == 1
        assert await tp.call("p3", ("pd_get", "foo")) == 42
        assert await tp.call("p3", ("table", "my_table")) == TABLE_ROWS
        assert tp.whereis_table("my_table") is table
        assert table.owner is ref
        assert ref.statistics().handled == handled + 3
        # no terminate: the server gave up its task, it did not stop
        assert not any(entry[0] == "terminate" for entry in log)


async def test_the_moved_server_runs_in_a_new_task_under_the_target():
    log = Log()
    async with tp.open_dynamic_supervisor() as target:
        async with tp.open_dynamic_supervisor() as source:
            ref = await source.start_child(mover(log))
            before = await ref.call("task")
            await tp.transfer(ref, source, target)
            after = await ref.call("task")
            assert after is not before
            assert after.parent_nursery is not before.parent_nursery
        # the source is gone; the moved server is not
        assert ref.alive
        assert await ref.call(5) == 5
        assert not any(entry[0] == "terminate" for entry in log)
    # the target's shutdown stops it, gracefully
    assert log[-1] == ("terminate", tp.SHUTDOWN)
    assert not ref.alive


async def test_messages_queued_while_the_server_finishes_its_callback_move_with_it():
    log, gate = Log(), trio.Event()
    replies = []
    async with tp.open_dynamic_supervisor() as source, tp.open_dynamic_supervisor() as target:
        ref = await source.start_child(mover(log, gate))
        async with trio.open_nursery() as nursery:
            await ref.cast("hold")
            await settle()
            nursery.start_soon(tp.transfer, ref, source, target)
            await settle()
            # the transfer waits for the running callback; it is not interrupted
            assert statuses(source) == [(ref, "running")]
            assert target.which_children() == []
            ref.cast_nowait(1)
            ref.send_nowait("info")

            async def client():
                replies.append(await ref.call(10))

            nursery.start_soon(client)
            await settle()
            assert ref.statistics().mailbox_len == 3
            gate.set()
        assert statuses(target) == [(ref, "running")]
        assert source.which_children() == []
        assert replies == [12]
        assert list(log) == [("cast", "hold"), ("cast", 1), ("info", "info"), ("call", 10)]
        assert ref.restarts == 0


async def test_no_message_is_lost_while_casts_race_with_transfers():
    log = Log()
    senders, per_sender, moves = 5, 40, 12
    replies = []
    async with tp.open_dynamic_supervisor() as a, tp.open_dynamic_supervisor() as b:
        ref = await a.start_child(mover(log))

        async def sender(s):
            for seq in range(per_sender):
                if seq % 3 == 0:
                    ref.cast_nowait((s, seq))
                elif seq % 3 == 1:
                    await ref.cast((s, seq))
                else:
                    replies.append(await ref.call(0))  # a call in between, answered wherever it is
                    ref.cast_nowait((s, seq))
                await trio.sleep((s + seq) % 4 / 1000)

        async def mover_task():
            here, there = a, b
            for _ in range(moves):
                await trio.sleep(0.003)
                await tp.transfer(ref, here, there)
                here, there = there, here

        async with trio.open_nursery() as nursery:
            for s in range(senders):
                nursery.start_soon(sender, s)
            nursery.start_soon(mover_task)

        assert await ref.call("n") == senders * per_sender
        casts = [entry[1] for entry in log if entry[0] == "cast"]
        assert len(casts) == senders * per_sender
        for s in range(senders):  # each sender's messages, once each and in order
            assert [seq for who, seq in casts if who == s] == list(range(per_sender))
        assert len(replies) == senders * (per_sender // 3)
        assert ref.restarts == 0
        assert statuses(a) == [(ref, "running")]  # an even number of moves
        assert b.which_children() == []


async def test_transfer_of_a_hibernating_server():
    log = Log()
    async with tp.open_dynamic_supervisor() as target:
        async with tp.open_dynamic_supervisor() as source:
            ref = await source.start_child(mover(log, None, 7))
            await ref.cast("hibernate")
            await settle()
            assert ref._hibernating  # no task of its own now
            assert ref.alive
            await tp.transfer(ref, source, target)
            assert statuses(target) == [(ref, "running")]
            assert source.which_children() == []
        # the source closed with the server moved out: it is alive and keeps its state
        assert ref.alive
        assert await ref.call(1) == 8
        assert ref.restarts == 0
        assert not any(entry[0] == "terminate" for entry in log)


async def test_a_transferred_server_is_restarted_by_the_target_after_a_crash():
    log = Log()
    async with tp.open_dynamic_supervisor() as source, tp.open_dynamic_supervisor() as target:
        ref = await source.start_child(mover(log))
        await ref.call(3)
        await tp.transfer(ref, source, target)
        with pytest.raises(tp.ServerExited):
            await ref.call("boom")
        assert await ref.call("n") == 3
        assert ref.restarts == 1
        assert statuses(target) == [(ref, "running")]
        assert source.which_children() == []
        ref.kill()
        assert await ref.call("n") == 3
        assert ref.restarts == 2
        assert target.count_children() == tp.ChildCounts(1, 1, 0, 1)


@pytest.mark.parametrize("hibernating", [False, True])
async def test_a_kill_right_after_a_transfer_is_not_lost(hibernating):
    # ref.alive is True as soon as transfer() returns, so kill() must act (API.md section 2)
    log = Log()
    async with tp.open_dynamic_supervisor() as source, tp.open_dynamic_supervisor() as target:
        ref = await source.start_child(mover(log, None, 4))
        if hibernating:
            await ref.cast("hibernate")
            await settle()
            assert ref._hibernating
        await tp.transfer(ref, source, target)
        assert ref.alive
        ref.kill()
        await settle()
        assert ref.restarts == 1
        assert await ref.call("n") == 4
        assert statuses(target) == [(ref, "running")]


async def test_the_targets_restart_intensity_governs_the_moved_server():
    log = Log()
    async with tp.open_dynamic_supervisor(max_restarts=0) as source:
        other = await source.start_child(mover(Log()))
        ref = await source.start_child(mover(log))
        with pytest.raises(tp.RestartIntensityExceeded):
            async with tp.open_dynamic_supervisor(max_restarts=0) as target:
                await tp.transfer(ref, source, target)
                await settle()
                ref.kill()  # the target gives up at once
                await trio.sleep_forever()
        assert not ref.alive
        with pytest.raises(tp.NoProc):
            await ref.call("n")
        # the source never saw that crash
        assert statuses(source) == [(other, "running")]
        assert await other.call(1) == 1


async def test_transfer_of_a_server_that_is_not_a_child_of_source_changes_nothing():
    log = Log()
    async with (
        tp.open_dynamic_supervisor() as source,
        tp.open_dynamic_supervisor() as another,
        tp.open_dynamic_supervisor() as target,
    ):
        ref = await source.start_child(mover(log, None, 42))
        with pytest.raises(LookupError):
            await tp.transfer(ref, another, target)
        assert statuses(source) == [(ref, "running")]
        assert another.which_children() == []
        assert target.which_children() == []
        assert await ref.call("n") == 42
        # still the source's child: the source restarts it
        ref.kill()
        assert await ref.call("n") == 42
        assert statuses(source) == [(ref, "running")]


async def test_transfer_of_a_stopped_server_raises_lookup_error():
    log = Log()
    async with tp.open_dynamic_supervisor() as source, tp.open_dynamic_supervisor() as target:
        ref = await source.start_child(mover(log))
        await ref.stop()
        with pytest.raises(LookupError):
            await tp.transfer(ref, source, target)
        assert source.which_children() == []
        assert target.which_children() == []


async def test_transfer_to_a_full_target_raises_max_children_and_changes_nothing():
    log = Log()
    async with (
        tp.open_dynamic_supervisor() as source,
        tp.open_dynamic_supervisor(max_children=1) as target,
    ):
        ref = await source.start_child(mover(log, None, 1))
        occupant = await target.start_child(mover(Log()))
        with pytest.raises(tp.MaxChildren):
            await tp.transfer(ref, source, target)
        assert statuses(source) == [(ref, "running")]
        assert statuses(target) == [(occupant, "running")]
        assert await ref.call("n") == 1
        assert ref.restarts == 0
        assert log == [("call", "n")]  # it never stopped handling its mailbox
        await target.terminate_child(occupant)
        await tp.transfer(ref, source, target)  # now there is room
        assert statuses(target) == [(ref, "running")]


async def test_transfer_with_a_static_supervisor_or_the_same_supervisor_is_refused():
    log = Log()
    async with (
        tp.open_dynamic_supervisor() as source,
        tp.open_supervisor(tp.child(Mover, Log(), id="static_child")) as static,
    ):
        ref = await source.start_child(mover(log, None, 5))
        (static_child,) = static.which_children()
        with pytest.raises(TypeError):
            await tp.transfer(ref, source, static)
        with pytest.raises(TypeError):
            await tp.transfer(static_child.ref, static, source)
        with pytest.raises(ValueError, match="two different supervisors"):
            await tp.transfer(ref, source, source)
        with pytest.raises(TypeError):
            await tp.transfer("not a ref", source, source)
        assert statuses(source) == [(ref, "running")]
        assert [c.status for c in static.which_children()] == ["running"]
        assert await ref.call("n") == 5
        assert await static_child.ref.call("n") == 0
        assert ref.restarts == 0


async def test_a_server_that_crashes_while_the_transfer_waits_stays_with_the_source():
    log, gate = Log(), trio.Event()
    async with tp.open_dynamic_supervisor() as source, tp.open_dynamic_supervisor() as target:
        ref = await source.start_child(mover(log, gate, 9))
        outcome = []

        async def move():
            try:
                await tp.transfer(ref, source, target)
            except LookupError as e:
                outcome.append(e)

        async with trio.open_nursery() as nursery:
            await ref.cast("hold_then_crash")
            await settle()
            nursery.start_soon(move)
            await settle()
            gate.set()
        await settle()
        # the transfer fails (its docstring: "stopped before it could move") and the
        # source, which still has it, restarts it with its state
        (err,) = outcome
        assert isinstance(err, LookupError)
        assert ref.restarts == 1
        assert await ref.call("n") == 9
        assert statuses(source) == [(ref, "running")]
        assert target.which_children() == []
