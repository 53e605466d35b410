"""How-to: call timeouts, idle timeouts (timeout=) and timers (send_after)."""

from __future__ import annotations

import trio

import trio_peeper as tp


def now(t0: float) -> str:
    return f"t={trio.current_time() - t0:.1f}s"


class Slow(tp.GenServer):
    """Takes a second to answer "slow"; answers "ping" at once."""

    async def handle_call(self, request: str, caller: object, state: None) -> tp.Reply:
        if request == "slow":
            await trio.sleep(1.0)
            return tp.Reply("slow answer", state)
        return tp.Reply("pong", state)


class Session(tp.GenServer):
    """Expires after 0.5 s without a message: the idle timeout= option."""

    async def init(self, user: str) -> tp.Init:
        return tp.Init(user, timeout=0.5)  # every return may carry timeout=

    async def handle_call(self, request: str, caller: object, state: str) -> tp.Reply:
        return tp.Reply(f"{state} is active", state, timeout=0.5)  # re-arm it

    async def handle_info(self, message: object, state: str) -> tp.NoReply | tp.Stop:
        if message is tp.TIMEOUT:  # 0.5 s passed with no message
            return tp.Stop("normal", state)
        return tp.NoReply(state, timeout=0.5)


class Heartbeat(tp.GenServer):
    """Ticks every 0.5 s with send_after, three times, then stops."""

    async def init(self, t0: float) -> dict[str, object]:
        timer = tp.send_after(tp.current_server(), "tick", 0.5)
        return {"t0": t0, "ticks": 0, "timer": timer}

    async def handle_info(self, message: object, state: dict) -> tp.NoReply | tp.Stop:
        if message != "tick":
            return tp.NoReply(state)
        ticks = state["ticks"] + 1
        print(f"  {now(state['t0'])} tick {ticks}")
        if ticks == 3:
            return tp.Stop("normal", state)
        timer = tp.send_after(tp.current_server(), "tick", 0.5)  # schedule the next one
        return tp.NoReply({**state, "ticks": ticks, "timer": timer})

    async def terminate(self, reason: object, state: dict) -> None:
        state["timer"].cancel()  # nothing pending after a stop (a no-op if it fired)


async def main() -> None:
    t0 = trio.current_time()
    async with trio.open_nursery() as nursery:
        print("1. call timeouts")
        slow = await tp.start_server(nursery, Slow)
        try:
            await slow.call("slow", timeout=0.5)
        except tp.CallTimeout as exc:
            print(f"  {now(t0)} CallTimeout: {exc}")
        print(f"  alive after the timeout: {slow.alive}")
        # the late "slow answer" is dropped: it never answers a later call
        answer = await slow.call("ping")  # queued behind the slow call
        print(f"  {now(t0)} ping -> {answer}")
        answer = await slow.call("slow", timeout=None)
        print(f"  timeout=None waits as long as it takes: {answer}")
        await slow.stop()

        print("2. idle timeout")
        t0 = trio.current_time()
        session = await tp.start_server(nursery, Session, "ann")
        await trio.sleep(0.4)
        print(f"  {now(t0)} {await session.call('touch')}")
        reason = await session.wait_stopped()
        print(f"  {now(t0)} session expired, reason {reason!r}")

        print("3. timers")
        t0 = trio.current_time()
        beat = await tp.start_server(nursery, Heartbeat, t0)
        await beat.wait_stopped()
        # cancel() is True while the timer was pending; a timer that fires for a
        # server that has stopped is dropped silently
        timer = tp.send_after(beat, "tick", 1.0)
        print(f"  cancel a pending timer: {timer.cancel()}; again: {timer.cancel()}")


if __name__ == "__main__":
    trio.run(main)
