"""How-to: strategies, restart types, shutdown timeouts, intensity, auto_shutdown."""

from __future__ import annotations

import contextlib

import trio
import trio.testing

import trio_peeper as tp


class Worker(tp.GenServer):
    """Says when it starts and stops; crashes on "crash"; stops on "finish"."""

    async def init(self, label, slow_terminate=0.0):
        print(f"  {label}: init")
        return (label, slow_terminate)  # terminate takes slow_terminate seconds

    async def restore(self, state):
        print(f"  {state[0]}: restarted (restart #{tp.current_server().restarts})")
        return state

    async def handle_call(self, request, caller, state):
        if request == "crash":
            raise RuntimeError(f"{state[0]} crashed")
        if request == "finish":
            return tp.Stop("normal", state, reply="finished")
        return tp.Reply(request, state)

    async def terminate(self, reason, state):
        label, slow = state
        print(f"  {label}: terminate({reason}) takes {slow}s")
        await trio.sleep(slow)


async def crash(name: str) -> None:
    with contextlib.suppress(tp.ServerExited):  # the caller is told of the crash
        await tp.call(name, "crash")
    await trio.testing.wait_all_tasks_blocked()  # let the supervisor react


async def main() -> None:
    print("1. one_for_all: one crash restarts every child")
    async with tp.open_supervisor(
        tp.child(Worker, "reader", id="reader", name="reader"),
        tp.child(Worker, "writer", id="writer", name="writer"),
        strategy="one_for_all",
    ):
        await crash("reader")
        restarts = tp.whereis("writer").restarts
        print(f"  writer restarts: {restarts} (a bystander of the group restart)")

    print("2. shutdown: a graceful stop, then a kill when the timeout runs out")
    async with tp.open_supervisor(
        tp.child(Worker, "patient", 0.5, id="patient", shutdown=1.0),
        tp.child(Worker, "stubborn", 60.0, id="stubborn", shutdown=1.0),
        tp.child(Worker, "brutal", id="brutal", shutdown="brutal_kill"),
    ):
        t0 = trio.current_time()
    # reverse start order: brutal is killed at once (no terminate), stubborn is
    # killed when its 1s runs out, patient finishes its terminate in 0.5s
    print(f"  all stopped after {trio.current_time() - t0:.1f}s")

    print(
        "3. restart intensity: too many restarts too fast, and the supervisor gives up"
    )
    try:
        async with tp.open_supervisor(
            tp.child(Worker, "fragile", id="fragile", name="fragile"),
            max_restarts=1,
            max_seconds=5.0,
        ):
            await crash("fragile")
            await crash("fragile")
            await trio.sleep_forever()  # cancelled when the supervisor gives up
    except tp.RestartIntensityExceeded as exc:
        print(f"  RestartIntensityExceeded: {exc}")
        print(f"  caused by: {exc.__cause__!r}")

    print("4. auto_shutdown: the supervisor ends when a significant child exits")
    async with tp.open_supervisor(
        tp.child(
            Worker, "job", id="job", name="job", restart="transient", significant=True
        ),
        tp.child(Worker, "helper", id="helper"),
        auto_shutdown="any_significant",
    ):
        print(f"  {await tp.call('job', 'finish')}")
        await trio.sleep_forever()  # cancelled by the auto-shutdown; no exception
    print("  the supervisor shut itself down")


if __name__ == "__main__":
    trio.run(main)
