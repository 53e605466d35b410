"""How-to: plain async functions as supervised children (Trio's start protocol)."""

from __future__ import annotations

import trio
import trio.testing

import trio_peeper as tp


async def heartbeat(interval: float, *, task_status=trio.TASK_STATUS_IGNORED) -> None:
    """Beats forever. Counts as started when it calls task_status.started()."""
    beats = 0
    task_status.started(
        f"beating every {interval}s"
    )  # the value is TaskRef.started_value
    try:
        while True:
            await trio.sleep(interval)
            beats += 1
    finally:
        # a stop or a kill is a cancellation: finally blocks run
        print(f"  heartbeat: cancelled after {beats} beats")


async def worker(
    jobs: trio.MemoryReceiveChannel[str], *, task_status=trio.TASK_STATUS_IGNORED
) -> None:
    """Does jobs from a channel; raises on a bad one."""
    print("  worker: ready")
    task_status.started()
    async for job in jobs:
        if job == "bad":
            raise ValueError(f"cannot do {job!r}")
        print(f"  worker: did {job}")


async def migrate(*, task_status=trio.TASK_STATUS_IGNORED) -> None:
    """Runs once and returns: its exit reason is "normal"."""
    task_status.started()
    await trio.sleep(0.1)
    print("  migrate: done")


async def main() -> None:
    send_job, jobs = trio.open_memory_channel[str](10)
    async with tp.open_supervisor(
        tp.child(heartbeat, 0.1, id="heartbeat"),
        # permanent (the default): restarted even after a normal return
        tp.child(worker, jobs, id="worker"),
        # transient: not restarted after a normal return
        tp.child(migrate, id="migrate", restart="transient"),
    ) as sup:
        children = {info.id: info.ref for info in sup.which_children()}
        beat = children["heartbeat"]
        print(f"heartbeat: {beat}, started with {beat.started_value!r}")

        print("the worker crashes on a bad job and is restarted; queued jobs wait")
        for job in ("job 1", "bad", "job 2"):
            await send_job.send(job)
        await trio.testing.wait_all_tasks_blocked()
        print(f"worker restarts: {children['worker'].restarts}")

        reason = await children["migrate"].wait_stopped()
        print(f"migrate returned: exit reason {reason!r}; transient: stays stopped")

        await trio.sleep(0.35)
        print(
            "kill the heartbeat: a plain child's kill is a cancellation, then a restart"
        )
        children["heartbeat"].kill()
        await trio.testing.wait_all_tasks_blocked()
        for info in sup.which_children():
            print(f"  {info.id}: {info.status}, restarts={info.ref.restarts}")
        print("leaving the block: the children are cancelled in reverse start order")
    print("done")


if __name__ == "__main__":
    trio.run(main)
