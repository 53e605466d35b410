"""Tutorial, part 1: a counter server. Calls, casts, infos, a crash, a stop."""

from __future__ import annotations

import trio

import trio_peeper as tp


class Counter(tp.GenServer):
    """A counter. Its state is an int; every callback returns the next one."""

    async def init(self, start: int) -> int:
        # runs once, in the server's own task, before start_server returns
        print(f"  init: starting at {start}")
        return start

    async def handle_call(self, request: str, caller: object, state: int) -> tp.Reply:
        # a call: the caller waits for the reply
        if request == "get":
            return tp.Reply(state, state)  # reply with the count, keep it
        if request == "take":
            return tp.Reply(state, 0)  # reply with the count, reset it
        raise ValueError(f"unknown request {request!r}")  # a crash

    async def handle_cast(self, message: str, state: int) -> tp.NoReply:
        # a cast: fire and forget, no reply
        if message == "inc":
            return tp.NoReply(state + 1)
        return tp.NoReply(state)

    async def handle_info(self, message: object, state: int) -> tp.NoReply:
        # anything sent with send(), and timers
        if message == "reset":
            print("  handle_info: reset")
            return tp.NoReply(0)
        return tp.NoReply(state)

    async def terminate(self, reason: object, state: int) -> None:
        # a graceful stop; never runs after a crash or a kill
        print(f"  terminate: reason={reason!r}, final count {state}")


async def main() -> None:
    async with trio.open_nursery() as nursery:
        counter = await tp.start_server(nursery, Counter, 10, name="counter")
        print("started:", counter)

        counter.cast_nowait("inc")  # never blocks
        await counter.cast("inc")  # a checkpoint
        print("get ->", await counter.call("get"))

        # any ref, name or via-name can be a target of the module functions
        await tp.send("counter", "reset")
        await tp.cast("counter", "inc")
        print("take ->", await tp.call("counter", "take"))
        print("get ->", await tp.call("counter", "get"))

        # a callback that raises crashes the server: the caller is told,
        # and a standalone server restarts itself (at most 3 times in 5 s)
        # from its last committed state (GenServer.restore's default)
        await counter.cast("inc")
        try:
            await counter.call("fly")
        except tp.ServerExited as exc:
            print(f"crash: ServerExited, reason {exc.reason!r}")
        print("get ->", await counter.call("get"), f"(restarts: {counter.restarts})")

        stats = counter.statistics()
        print(f"statistics: {stats.handled} handled, {stats.state_commits} commits")

        await counter.stop()  # graceful and for good: terminate runs
        print("alive:", counter.alive)
        try:
            await counter.call("get")
        except tp.NoProc:
            print("call after stop: NoProc")
        # the nursery has nothing left to wait for: main returns


if __name__ == "__main__":
    trio.run(main)
