import trio

import trio_peeper as tp


class Counter(tp.GenServer):
    async def init(self, start):
        return start

    async def handle_call(self, request, caller, state):
        if request == "get":
            return tp.Reply(state, state)
        raise RuntimeError("boom")

    async def handle_cast(self, message, state):
        return tp.NoReply(state + 1)


async def test_counter_round_trip() -> None:
    async with trio.open_nursery() as nursery:
        ref = await tp.start_server(nursery, Counter, 5)
        ref.cast_nowait("inc")
        assert await ref.call("get") == 6
        await ref.stop()
        assert not ref.alive
