"""How-to: test your servers in virtual time. Run it as a script or with pytest-trio."""

from __future__ import annotations

import trio
import trio.testing

import trio_peeper as tp

HOUR = 3600.0


class Session(tp.GenServer):
    """A login session: expires after an idle hour; a touch sets a 50 min reminder."""

    async def init(self, user: str) -> tp.Init:
        return tp.Init({"user": user, "reminded": 0}, timeout=HOUR)

    async def handle_call(self, request: str, caller: object, state: dict) -> tp.Reply:
        if request == "touch":
            tp.send_after(tp.current_server(), "remind", 50 * 60)
        return tp.Reply(state, state, timeout=HOUR)

    async def handle_info(self, message: object, state: dict) -> tp.NoReply | tp.Stop:
        if message is tp.TIMEOUT:
            return tp.Stop(tp.Shutdown("idle"), state)
        return tp.NoReply({**state, "reminded": state["reminded"] + 1}, timeout=HOUR)


async def test_session_expires_after_an_idle_hour() -> None:
    async with trio.open_nursery() as nursery:
        session = await tp.start_server(nursery, Session, "ann")
        await trio.sleep(59 * 60)
        assert session.alive
        await session.call("touch")  # activity re-arms the idle timeout
        start = trio.current_time()
        reason = await session.wait_stopped()
        assert reason == tp.Shutdown("idle")
        assert tp.is_normal(reason)  # a normal-ish exit: not restarted
        # 50 min to the reminder (which is a message too), then an idle hour
        assert abs(trio.current_time() - start - (50 * 60 + HOUR)) < 0.1


async def test_a_crash_is_restarted_and_the_caller_told() -> None:
    async with tp.open_supervisor(tp.child(Session, "bob", name="session")):
        ref = tp.whereis("session")
        ref.kill()
        state = await tp.call("session", "get")  # waits for the restart
        assert state["user"] == "bob"
        assert ref.restarts == 1
        await trio.testing.wait_all_tasks_blocked()  # until every task is idle


async def main() -> None:
    for test in (
        test_session_expires_after_an_idle_hour,
        test_a_crash_is_restarted_and_the_caller_told,
    ):
        start = trio.current_time()
        await test()
        elapsed = trio.current_time() - start
        print(f"passed: {test.__name__} ({elapsed:.0f} virtual seconds)")


if __name__ == "__main__":
    # virtual time: the clock jumps ahead whenever every task is waiting
    trio.run(main, clock=trio.testing.MockClock(autojump_threshold=0))
