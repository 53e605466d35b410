"""Listeners (API.md section 6): ``on_state_changed``, ``on_terminate``, ``on_crash``, ``on_restart``.

Hooks are plain functions called in the server's task, in order, after the commit;
``on_state_changed`` only when the state changed; the states they get are plain
copies; a hook that raises is logged (logger ``"trio_peeper"``) and never crashes
the server. A listener is given as a class keyword or a start option (which wins).
"""

from __future__ import annotations

import copy
import logging

import pytest
import trio
import trio.testing

import trio_peeper as tp
from _shared import Log

settle = trio.testing.wait_all_tasks_blocked

HOOKS = ("on_state_changed", "on_terminate", "on_crash", "on_restart")


class Recording:
    """Records every hook call in ``events``; ``ref`` (set by the test) is inspected at each call."""

    def __init__(self, events=None):
        self.events = Log() if events is None else events
        self.ref = None
        self.seen = []  # (hook, commits, committed state) at the time of the call

    def _seen(self, hook):
        if self.ref is not None:
            keeper = self.ref._keeper
            state = copy.deepcopy(keeper.state) if keeper.has_state else None
            self.seen.append((hook, keeper.commits, state))

    def on_state_changed(self, old, new):
        self._seen("changed")
        self.events.append(("changed", old, new))

    def on_terminate(self, reason, state):
        self._seen("terminate")
        self.events.append(("terminate", reason, state))

    def on_crash(self, exception, state):
        self._seen("crash")
        self.events.append(("crash", exception, state))

    def on_restart(self, state, restarts):
        self._seen("restart")
        self.events.append(("restart", state, restarts))


class Box(tp.GenServer):
    """A dict state ``{"n": int, "items": list}``, changed in place."""

    async def handle_call(self, request, caller, state):
        match request:
            case "get":
                return tp.Reply(state, state)
            case ("add", n):
                state["n"] += n
                state["items"].append(n)
                return tp.Reply(state["n"], state)
            case "same":
                return tp.Reply(None, state)  # nothing changed
            case "boom":
                state["n"] = "half-done"
                state["items"].clear()
                raise RuntimeError("boom")
            case "stop":
                state["n"] += 100
                return tp.Stop("normal", state, reply="bye")
        raise AssertionError(request)

    async def handle_cast(self, message, state):
        if message == "stop":
            return tp.Stop(tp.SHUTDOWN, state)
        state["n"] += message
        return tp.NoReply(state)

    async def handle_info(self, message, state):
        if message == "noop":
            return tp.NoReply(state)
        state["items"].append(message)
        return tp.NoReply(state)

    async def terminate(self, reason, state):
        state["n"] = "changed by terminate"  # not kept: hooks see the committed state


def box(**options):
    return tp.child(Box, {"n": 0, "items": []}, **options)


async def start(dsup, listener, **options):
    ref = await dsup.start_child(box(listener=listener, **options))
    listener.ref = ref
    return ref


async def test_on_state_changed_gets_plain_copies_after_the_commit():
    listener = Recording()
    async with tp.open_dynamic_supervisor() as dsup:
        ref = await start(dsup, listener)
        assert await ref.call(("add", 5)) == 5
        listener.events.append("reply")  # the hook ran before the caller got its reply
        await ref.cast(2)
        await ref.send("x")
        await settle()
        assert list(listener.events) == [
            ("changed", {"n": 0, "items": []}, {"n": 5, "items": [5]}),
            "reply",
            ("changed", {"n": 5, "items": [5]}, {"n": 7, "items": [5]}),
            ("changed", {"n": 7, "items": [5]}, {"n": 7, "items": [5, "x"]}),
        ]
        # after the commit: the count and the keeper's state were already the new ones
        assert [(h, c, s) for h, c, s in listener.seen] == [
            ("changed", 1, {"n": 5, "items": [5]}),
            ("changed", 2, {"n": 7, "items": [5]}),
            ("changed", 3, {"n": 7, "items": [5, "x"]}),
        ]
        # plain copies: the listener may keep and change them, the server is untouched
        _, old, new = listener.events[0]
        assert type(old) is dict and type(new) is dict
        assert type(new["items"]) is list
        new["items"].append("listener")
        old["n"] = "listener"
        assert await ref.call("get") == {"n": 7, "items": [5, "x"]}


async def test_on_state_changed_is_not_called_when_nothing_changed():
    listener = Recording()
    async with tp.open_dynamic_supervisor() as dsup:
        ref = await start(dsup, listener)
        assert await ref.call("get") == {"n": 0, "items": []}
        await ref.call("same")
        await ref.send("noop")  # returns the same state, writes nothing
        await ref.call(("add", 1))
        await ref.call("get")
        await settle()
    changed = [e for e in listener.events if e[0] == "changed"]
    assert changed == [("changed", {"n": 0, "items": []}, {"n": 1, "items": [1]})]


class Counter(tp.GenServer):
    async def handle_call(self, request, caller, state):
        if request == "get":
            return tp.Reply(state, state)
        return tp.Reply(state + request, state + request)


async def test_on_state_changed_with_a_scalar_state_compares_values():
    listener = Recording()
    async with trio.open_nursery() as nursery:
        ref = await tp.start_server(nursery, Counter, 10, listener=listener)
        await ref.call(0)  # a new int object, equal: no change
        await ref.call("get")
        await ref.call(5)
        await ref.stop()
    assert [e[:3] for e in listener.events] == [("changed", 10, 15), ("terminate", "normal", 15)]


async def test_a_crash_calls_on_crash_with_the_rolled_back_state_then_on_restart():
    listener = Recording()
    async with tp.open_dynamic_supervisor() as dsup:
        ref = await start(dsup, listener)
        await ref.call(("add", 1))
        listener.events.clear()
        listener.seen.clear()
        with pytest.raises(tp.ServerExited) as info:
            await ref.call("boom")
        await settle()
        (crash, restart) = listener.events
        assert crash[0] == "crash"
        assert crash[1] is info.value.__cause__
        assert crash[2] == {"n": 1, "items": [1]}  # the committed state, not "half-done"
        assert type(crash[2]) is dict
        assert restart == ("restart", {"n": 1, "items": [1]}, 1)
        assert type(restart[1]) is dict
        # the rollback happened before on_crash ran
        assert listener.seen[0] == ("crash", 1, {"n": 1, "items": [1]})
        crash[2]["items"].append("listener")
        restart[1]["n"] = "listener"
        assert await ref.call("get") == {"n": 1, "items": [1]}


async def test_a_kill_calls_only_on_restart():
    listener = Recording()
    async with tp.open_dynamic_supervisor() as dsup:
        ref = await start(dsup, listener)
        await ref.call(("add", 3))
        ref.kill()
        await settle()
        ref.kill()
        await settle()
    # a kill has no exception: on_crash is for exceptions raised by callbacks
    assert [e[0] for e in listener.events] == ["changed", "restart", "restart", "terminate"]
    assert listener.events[1] == ("restart", {"n": 3, "items": [3]}, 1)
    assert listener.events[2] == ("restart", {"n": 3, "items": [3]}, 2)
    # the supervisor's shutdown on leaving the block is a graceful stop
    assert listener.events[3] == ("terminate", tp.SHUTDOWN, {"n": 3, "items": [3]})


async def test_a_stop_returned_by_a_callback_calls_changed_then_terminate_then_restart():
    listener = Recording()
    async with tp.open_dynamic_supervisor() as dsup:
        ref = await start(dsup, listener)
        assert await ref.call("stop") == "bye"  # a permanent child: restarted
        await settle()
        assert list(listener.events) == [
            ("changed", {"n": 0, "items": []}, {"n": 100, "items": []}),
            # terminate's own change is not kept, and not shown
            ("terminate", "normal", {"n": 100, "items": []}),
            ("restart", {"n": 100, "items": []}, 1),
        ]
        assert await ref.call("get") == {"n": 100, "items": []}


async def test_a_stop_for_good_calls_on_terminate_only():
    listener = Recording()
    async with trio.open_nursery() as nursery:
        ref = await tp.start_server(nursery, Box, {"n": 1, "items": []}, listener=listener)
        listener.ref = ref
        await ref.stop("bye")
    assert list(listener.events) == [("terminate", "bye", {"n": 1, "items": []})]
    (hook, commits, state) = listener.seen[0]
    assert (hook, commits) == ("terminate", 0)
    assert type(listener.events[0][2]) is dict


async def test_hooks_are_called_in_the_server_task():
    tasks = []

    class Where:
        def on_state_changed(self, old, new):
            tasks.append((trio.lowlevel.current_task(), tp.current_server()))

    async with trio.open_nursery() as nursery:
        ref = await tp.start_server(nursery, Counter, 0, listener=Where())
        await ref.call(1)
        ((task, current),) = tasks
        assert current is ref
        assert task is ref._task
        await ref.stop()


class Raising:
    """Every hook raises."""

    def __init__(self):
        self.calls = []

    def _boom(self, hook):
        self.calls.append(hook)
        raise ValueError(f"listener fails in {hook}")

    def on_state_changed(self, old, new):
        self._boom("on_state_changed")

    def on_terminate(self, reason, state):
        self._boom("on_terminate")

    def on_crash(self, exception, state):
        self._boom("on_crash")

    def on_restart(self, state, restarts):
        self._boom("on_restart")


async def test_a_raising_hook_is_logged_and_never_crashes_the_server(caplog):
    caplog.set_level(logging.ERROR, logger="trio_peeper")
    listener = Raising()
    async with tp.open_dynamic_supervisor() as dsup:
        ref = await dsup.start_child(box(listener=listener))
        assert await ref.call(("add", 2)) == 2
        assert ref.restarts == 0
        with pytest.raises(tp.ServerExited):
            await ref.call("boom")
        assert await ref.call(("add", 3)) == 5
        assert ref.restarts == 1  # the crash we asked for, and nothing else
        await ref.stop()
    assert listener.calls == [
        "on_state_changed",
        "on_crash",
        "on_restart",
        "on_state_changed",
        "on_terminate",
    ]
    records = [r for r in caplog.records if r.name == "trio_peeper"]
    assert len(records) == 5
    for record, hook in zip(records, listener.calls, strict=True):
        assert record.levelno >= logging.ERROR
        assert hook in record.getMessage()
        assert isinstance(record.exc_info[1], ValueError)
        assert str(record.exc_info[1]) == f"listener fails in {hook}"


class Partial:
    """Only one hook: the others are simply not called."""

    def __init__(self):
        self.restarts = []

    def on_restart(self, state, restarts):
        self.restarts.append(restarts)


async def test_a_listener_may_have_any_subset_of_the_hooks():
    listener = Partial()
    async with tp.open_dynamic_supervisor() as dsup:
        ref = await dsup.start_child(box(listener=listener))
        await ref.call(("add", 1))
        ref.kill()
        await settle()
        await ref.call(("add", 1))
    assert listener.restarts == [1]


CLASS_EVENTS = Log()


class Listened(Box, listener=Recording(CLASS_EVENTS)):
    pass


async def test_a_listener_given_as_class_keyword_and_as_start_option():
    CLASS_EVENTS.clear()
    option = Recording()
    async with tp.open_dynamic_supervisor() as dsup:
        by_class = await dsup.start_child(tp.child(Listened, {"n": 0, "items": []}))
        await by_class.call(("add", 1))
        by_option = await dsup.start_child(tp.child(Listened, {"n": 0, "items": []}, listener=option))
        await by_option.call(("add", 2))
    # the start option wins over the class keyword
    assert [e[0] for e in CLASS_EVENTS] == ["changed", "terminate"]
    assert CLASS_EVENTS[0][2] == {"n": 1, "items": [1]}
    assert [e[0] for e in option.events] == ["changed", "terminate"]
    assert option.events[0][2] == {"n": 2, "items": [2]}


async def test_a_listener_with_no_hook_is_a_type_error_at_start():
    async with trio.open_nursery() as nursery:
        with pytest.raises(TypeError, match="listener must have at least one of"):
            await tp.start_server(nursery, Counter, 0, listener=object())
        with pytest.raises(TypeError, match="listener"):
            tp.child(Counter, 0, listener=object())
    with pytest.raises(TypeError, match="listener"):

        class Bad(tp.GenServer, listener=object()):
            pass


async def test_a_listener_attribute_that_is_not_callable_does_not_count_as_a_hook():
    class NotAHook:
        on_crash = "not callable"

    async with trio.open_nursery() as nursery:
        with pytest.raises(TypeError, match="listener"):
            await tp.start_server(nursery, Counter, 0, listener=NotAHook())
