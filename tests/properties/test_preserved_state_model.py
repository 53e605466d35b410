"""Property: a preserving server's state is exactly what its validly returning callbacks made.

The server's state is a dict of ints, lists of ints and small dicts holding a list. Each
example runs a random sequence of calls, casts, sends, and casts whose ``handle_continue``
does the work. The handlers apply random in-place operations to the state (append, extend,
pop, insert, sort, clear, assigning a container from another key, deleting keys, nested
appends...) and then end one way:

- ``ok``: return the same state, or ``ok_new_root``: return a new dict built from it;
- ``raise``: raise after the changes;
- ``invalid``: return something that is not a ``tp.Reply``/``tp.NoReply`` (``tp.InvalidReturn``);
- ``kill``: await forever after the changes, and the test kills the server there.

Commands also include a kill of the idle server. Model (API.md section 6): the state is a
plain dict to which only the validly returning callbacks were applied (with value
semantics: assigning a container stores a copy). After every step the server's live
state equals the model, and so does what a ``"get"`` call replies; after a failure the
state is the same root object with the same containers as before the failed callback; a
failed call's caller gets ``tp.ServerExited``; every failure is exactly one restart.

Each example is its own ``trio.run`` on a fresh autojump ``MockClock`` (STYLE.md S8.3).
"""

from __future__ import annotations

import copy
from typing import Any

import trio
import trio.testing
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

import trio_peeper as tp

# the conftest's autouse clock fixture is function-scoped; these sync tests never use it
SETTINGS = settings(
    deadline=None, max_examples=150, suppress_health_check=[HealthCheck.function_scoped_fixture]
)

KEYS = st.sampled_from("abc")
INTS = st.integers(-5, 5)
SMALL_LISTS = st.lists(INTS, max_size=3)
OPS = st.one_of(
    st.tuples(st.just("set"), KEYS, INTS),
    st.tuples(st.just("list"), KEYS, SMALL_LISTS),
    st.tuples(st.just("append"), KEYS, INTS),
    st.tuples(st.just("extend"), KEYS, SMALL_LISTS),
    st.tuples(st.just("insert"), KEYS, INTS),
    st.tuples(st.just("pop"), KEYS),
    st.tuples(st.just("sort"), KEYS),
    st.tuples(st.just("clear"), KEYS),
    st.tuples(st.just("incr"), KEYS, INTS),
    st.tuples(st.just("del"), KEYS),
    st.tuples(st.just("copy"), KEYS, KEYS),
    st.tuples(st.just("dict"), KEYS),
    st.tuples(st.just("sub"), KEYS, INTS),
)
INITIAL = st.dictionaries(KEYS, st.one_of(INTS, SMALL_LISTS), max_size=3)
OUTCOMES = st.sampled_from(["ok", "ok", "ok_new_root", "raise", "invalid", "kill"])
COMMANDS = st.sampled_from(["call", "call", "cast", "cast", "send", "continue", "kill_idle"])


def apply(state: dict[str, Any], op: tuple[Any, ...], *, model: bool) -> None:
    """One in-place operation; the same code runs on the server's state and on the model."""
    kind, key, *rest = op
    current = state.get(key)
    if kind == "set":
        state[key] = rest[0]
    elif kind == "list":
        state[key] = list(rest[0])
    elif kind == "dict":
        state[key] = {"x": [key]}
    elif kind == "del":
        state.pop(key, None)
    elif kind == "incr":
        if type(current) is int:
            state[key] += rest[0]
    elif kind == "copy":
        target = rest[0]
        if key in state:
            # the server stores a copy (value semantics); the model must copy by hand
            state[target] = copy.deepcopy(state[key]) if model else state[key]
    elif kind == "sub":
        if isinstance(current, dict):
            current["x"].append(rest[0])
    elif isinstance(current, list):
        if kind == "append":
            current.append(rest[0])
        elif kind == "extend":
            current.extend(rest[0])
        elif kind == "insert":
            current.insert(0, rest[0])
        elif kind == "pop":
            if current:
                current.pop()
        elif kind == "sort":
            current.sort(reverse=True)
        elif kind == "clear":
            current.clear()


class Boom(Exception):
    pass


async def run(ops: list[tuple[Any, ...]], outcome: str, state: dict[str, Any], *, reply: bool) -> object:
    for op in ops:
        apply(state, op, model=False)
    if outcome == "raise":
        raise Boom("after in-place changes")
    if outcome == "invalid":
        return ("not a tp.Reply", state)
    if outcome == "kill":
        await trio.sleep_forever()
    new = dict(state) if outcome == "ok_new_root" else state
    return tp.Reply(len(new), new) if reply else tp.NoReply(new)


class Mutator(tp.GenServer):
    async def handle_call(self, request: Any, caller: object, state: Any) -> object:
        if request == "get":
            return tp.Reply(state, state)
        ops, outcome = request
        return await run(ops, outcome, state, reply=True)

    async def handle_cast(self, message: Any, state: Any) -> object:
        if message[0] == "continue":
            return tp.NoReply(state, continue_=message[1:])
        ops, outcome = message
        return await run(ops, outcome, state, reply=False)

    async def handle_continue(self, arg: Any, state: Any) -> object:
        ops, outcome = arg
        return await run(ops, outcome, state, reply=False)

    async def handle_info(self, message: Any, state: Any) -> object:
        ops, outcome = message
        return await run(ops, outcome, state, reply=False)


def containers(value: object, path: tuple[Any, ...] = ()) -> dict[tuple[Any, ...], int]:
    out = {path: id(value)}
    if isinstance(value, dict):
        for k, v in value.items():
            if isinstance(v, (dict, list)):
                out.update(containers(v, (*path, k)))
    return out


@SETTINGS
@given(st.data())
def test_the_state_is_what_the_valid_callbacks_made(data: st.DataObject) -> None:
    trio.run(_drive, data, clock=trio.testing.MockClock(autojump_threshold=0))


async def _drive(data: st.DataObject) -> None:
    settle = trio.testing.wait_all_tasks_blocked
    initial = data.draw(INITIAL, label="initial")
    failures = 0
    async with tp.open_dynamic_supervisor(max_restarts=1000, max_seconds=1.0) as dsup:
        ref = await dsup.start_child(tp.child(Mutator, initial))
        model = copy.deepcopy(initial)
        for _ in range(data.draw(st.integers(1, 25), label="steps")):
            command = data.draw(COMMANDS, label="command")
            before = ref._keeper.state
            ids = containers(before)
            if command == "kill_idle":
                ref.kill()
                await settle()
                ok = False
            else:
                ops = data.draw(st.lists(OPS, max_size=6), label="ops")
                outcome = data.draw(OUTCOMES, label="outcome")
                event(f"{command} {outcome}")
                candidate = copy.deepcopy(model)
                for op in ops:
                    apply(candidate, op, model=True)
                ok = outcome.startswith("ok")
                result: list[object] = []

                async def client(ops: list[tuple[Any, ...]] = ops, outcome: str = outcome) -> None:
                    try:
                        result.append(await ref.call((ops, outcome)))
                    except tp.ServerExited as e:
                        result.append(e)

                async with trio.open_nursery() as nursery:
                    if command == "call":
                        nursery.start_soon(client)
                    elif command == "cast":
                        await ref.cast((ops, outcome))
                    elif command == "continue":  # a cast whose handle_continue does the work
                        await ref.cast(("continue", ops, outcome))
                    else:
                        await ref.send((ops, outcome))
                    await settle()
                    if outcome == "kill":
                        ref.kill()
                await settle()
                if command == "call":
                    (got,) = result
                    if ok:
                        assert got == len(candidate)
                    else:
                        assert isinstance(got, tp.ServerExited)
                        cause = {"raise": Boom, "invalid": tp.InvalidReturn, "kill": type(None)}[outcome]
                        assert type(got.__cause__) is cause
                if ok:
                    model = candidate
            if not ok:
                failures += 1
                # rolled back in place: the same root, the same containers
                assert ref._keeper.state is before
                assert containers(ref._keeper.state) == ids
            assert ref.restarts == failures
            assert ref._keeper.state == model
            reply = await ref.call("get")
            assert reply == model
            assert type(reply) is dict
