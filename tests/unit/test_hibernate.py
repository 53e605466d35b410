"""hibernate=True: the server gives up its Trio task while idle and comes back on the next message."""

import gc

import pytest
import trio
import trio.testing

import trio_peeper as tp


class Sleeper(tp.GenServer):
    """Hibernates after every message; its log rides in the args (instances are per incarnation)."""

    @property
    def log(self) -> list[object]:
        return tp.current_server()._args[0]

    async def init(self, log):
        log.append("init")
        return tp.Init(0, hibernate=True)

    async def restore(self, state):
        return tp.Init(state, hibernate=True)

    async def handle_call(self, request, caller, state):
        if request == "boom":
            raise RuntimeError("boom")
        if request == "current":
            return tp.Reply(tp.current_server(), state, hibernate=True)
        return tp.Reply(state, state + 1, hibernate=True)

    async def handle_cast(self, message, state):
        return tp.NoReply(state + message, hibernate=True)

    async def handle_info(self, message, state):
        return tp.NoReply(state + 100, hibernate=True)

    async def terminate(self, reason, state):
        tp.current_server()  # still works in terminate after waking
        self.log.append(("terminate", reason, state))


def server_tasks(nursery: trio.Nursery) -> list[str]:
    return sorted(t.name for t in nursery.child_tasks)


async def test_a_hibernating_server_has_no_task_but_is_alive():
    async with trio.open_nursery() as nursery:
        ref = await tp.start_server(nursery, Sleeper, [])
        await trio.testing.wait_all_tasks_blocked()
        # only the nursery's hibernation anchor remains, whatever the number of servers
        assert server_tasks(nursery) == ["trio_peeper.hibernation_anchor"]
        assert ref.alive
        assert await ref.call("get") == 0
        assert await ref.call("get") == 1
        assert await ref.call("current") is ref
        await ref.stop()
        assert not ref.alive
    assert nursery.child_tasks == frozenset()


async def test_many_hibernating_servers_share_one_anchor_task():
    async with trio.open_nursery() as nursery:
        refs = [await tp.start_server(nursery, Sleeper, []) for _ in range(20)]
        await trio.testing.wait_all_tasks_blocked()
        assert server_tasks(nursery) == ["trio_peeper.hibernation_anchor"]
        for i, ref in enumerate(refs):
            ref.cast_nowait(i)
        assert [await ref.call("get") for ref in refs] == list(range(20))
        for ref in refs:
            await ref.stop()


async def test_messages_of_every_kind_wake_it_and_keep_the_state():
    async with trio.open_nursery() as nursery:
        ref = await tp.start_server(nursery, Sleeper, [])
        ref.cast_nowait(5)
        await trio.testing.wait_all_tasks_blocked()
        ref.send_nowait("tick")
        await trio.testing.wait_all_tasks_blocked()
        tp.send_after(ref, "tick", 3.0)
        await trio.sleep(4)
        assert await ref.call("get") == 205
        await ref.stop()


async def test_stop_of_a_hibernating_server_runs_terminate():
    log: list[object] = []
    async with trio.open_nursery() as nursery:
        ref = await tp.start_server(nursery, Sleeper, log)
        await trio.testing.wait_all_tasks_blocked()
        await ref.stop("bye")
    assert log == ["init", ("terminate", "bye", 0)]


async def test_kill_of_a_hibernating_server_restarts_it_without_terminate():
    log: list[object] = []
    async with trio.open_nursery() as nursery:
        ref = await tp.start_server(nursery, Sleeper, log)
        await ref.call("get")
        await trio.testing.wait_all_tasks_blocked()
        ref.kill()
        await trio.testing.wait_all_tasks_blocked()
        assert ref.restarts == 1
        assert await ref.call("get") == 1  # preserved state, restored
        await ref.stop()
    assert log == ["init", ("terminate", "normal", 2)]


async def test_a_crash_after_waking_restarts_it():
    async with trio.open_nursery() as nursery:
        ref = await tp.start_server(nursery, Sleeper, [])
        await trio.testing.wait_all_tasks_blocked()
        with pytest.raises(tp.ServerExited):
            await ref.call("boom")
        assert await ref.call("get") == 0
        assert ref.restarts == 1
        await ref.stop()


async def test_hibernating_children_of_a_supervisor():
    log: list[object] = []
    async with tp.open_supervisor(
        tp.child(Sleeper, log, id="a"), tp.child(Sleeper, log, id="b"), strategy="one_for_all"
    ) as sup:
        a, b = (info.ref for info in sup.which_children())
        await trio.testing.wait_all_tasks_blocked()
        assert [info.status for info in sup.which_children()] == ["running", "running"]
        assert await a.call("get") == 0
        with pytest.raises(tp.ServerExited):
            await a.call("boom")
        await trio.testing.wait_all_tasks_blocked()
        assert (a.restarts, b.restarts) == (1, 1)
        assert await b.call("get") == 0
    # shutdown wakes each hibernating child to run terminate, in reverse order
    assert log[-2:] == [("terminate", tp.SHUTDOWN, 1), ("terminate", tp.SHUTDOWN, 1)]


async def test_idle_timeout_reaches_a_hibernating_server():
    class Idle(tp.GenServer):
        async def init(self):
            return tp.Init([], hibernate=True, timeout=2.0)

        async def handle_call(self, request, caller, state):
            return tp.Reply(state, state)

        async def handle_info(self, message, state):
            return tp.NoReply([*state, (message, trio.current_time())], hibernate=True)

    async with trio.open_nursery() as nursery:
        start = trio.current_time()
        ref = await tp.start_server(nursery, Idle)
        await trio.sleep(5)
        assert await ref.call("get") == [(tp.TIMEOUT, start + 2.0)]
        await ref.stop()


async def test_cancelling_the_nursery_ends_hibernating_servers():
    async with trio.open_nursery() as nursery:
        ref = await tp.start_server(nursery, Sleeper, [])
        monitor = ref.monitor()
        await trio.testing.wait_all_tasks_blocked()
        nursery.cancel_scope.cancel()
    assert not ref.alive
    assert await monitor.wait() is tp.KILLED


async def test_the_task_is_really_given_up():
    async with trio.open_nursery() as nursery:
        ref = await tp.start_server(nursery, Sleeper, [])
        await trio.testing.wait_all_tasks_blocked()
        gc.collect()
        tasks = [o for o in gc.get_objects() if isinstance(o, trio.lowlevel.Task) and o.name.endswith("_standalone_loop")]
        assert tasks == []
        await ref.stop()
