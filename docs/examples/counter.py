import trio

import trio_peeper as tp


class Counter(tp.GenServer):
    async def handle_call(self, request, caller, state):
        return tp.Reply(state, state)  # any call: reply with the count

    async def handle_cast(self, amount, state):
        return tp.NoReply(state + amount)  # a cast: add to the count


async def main() -> None:
    async with tp.open_supervisor(tp.child(Counter, 0, name="counter")):
        await tp.cast("counter", 2)
        print("count:", await tp.call("counter", "get"))
        tp.whereis("counter").kill()  # crash it: its supervisor restarts it
        print("count:", await tp.call("counter", "get"), "after a restart")


if __name__ == "__main__":
    trio.run(main)
