"""Server benches: each trio_peeper figure against plain Trio measured in the same process.

What is measured and why (targets from DESIGN.md, "Performance targets"):

1. ``call`` round trip of a preserving server with a small state, default
   ``timeout=5.0``, against (a) the fastest plain-task request/response
   (request over ``open_memory_channel(inf)``, reply through a `trio.Event`
   slot), (b) a reply memory channel per call and (c) the floor, a two-task
   ping-pong over ``wait_task_rescheduled``/``reschedule``. Also the same
   server with ``preserve=False`` (what preservation costs) and a call with
   ``timeout=math.inf`` (what the deadline costs). Targets: ≤ 1.0 × (a),
   ≤ 1.4 × (c), preserving ≤ 1.10 × non-preserving.
2. casts: ``cast_nowait`` enqueue alone (≥ 2 M/s) against a memory channel's
   ``send_nowait``; casts handled end to end (N casts, then one call to wait
   for them; ≥ 500 k/s) against a plain task draining a memory channel.
3. ``tp.start_server`` against ``nursery.start`` of a plain task that calls
   ``task_status.started()`` and parks (≤ 2 ×).
4. memory per idle server (tracemalloc over many servers, divided) against a
   parked plain task (``start_soon``), one with its own memory channel, and
   one started with ``nursery.start`` inside its own `trio.CancelScope` (what
   any killable, started task costs before trio_peeper adds anything); ≤ 4 kB.
5. restart latency: a cast that raises, then a call; the time to its reply
   minus a normal call's, for a standalone server and for a one_for_one
   supervised child (≤ 100 µs).

Each group is an ``async def`` run in its own ``trio.run`` with the real
clock; variants of a group share that run and are interleaved run by run
(see ``_harness``). No figure here is asserted on.

Usage: ``python benches/bench_server.py [--quick] [--json PATH] [--runs N] [--only GROUP]``
(groups: call, cast, start, memory, restart); ``--merge A.json B.json ...``
rebuilds the table from the samples of earlier runs (``run_all.py`` alternates
the two cores in rounds and merges them).
"""

from __future__ import annotations

import gc
import math
import tracemalloc
from collections.abc import Awaitable, Callable

import _harness as h

h.ensure_importable()

import trio  # noqa: E402
import trio.testing  # noqa: E402
from outcome import Value  # noqa: E402
from trio.lowlevel import Abort, current_task, reschedule, wait_task_rescheduled  # noqa: E402

import trio_peeper as tp  # noqa: E402

REQUEST = "get"

# ------------------------------------------------------------------ servers


class Echo(tp.GenServer):
    """Small state; ``handle_call`` replies with the state and keeps it."""

    async def init(self, start: int) -> int:
        return start

    async def handle_call(self, request: object, caller: object, state: int) -> tp.Reply:
        return tp.Reply(state, state)

    async def handle_cast(self, message: object, state: int) -> tp.NoReply:
        return tp.NoReply(state + 1)


class Crashy(Echo):
    """Crashes on any cast (the restart bench)."""

    async def handle_cast(self, message: object, state: int) -> tp.NoReply:
        raise RuntimeError("boom")


# --------------------------------------------------------- plain references


def _abort(_: object) -> Abort:
    return Abort.SUCCEEDED


class Slot:
    """The reply slot of pattern (a): an event and the value it guards."""

    __slots__ = ("event", "value")

    def __init__(self) -> None:
        self.event = trio.Event()
        self.value: object = None


async def serve_event_slots(
    recv: trio.MemoryReceiveChannel[tuple[object, Slot]],
    task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
) -> None:
    """(a): requests over an unbounded memory channel, replies through an Event slot."""
    state = 0
    task_status.started()
    async for _request, slot in recv:
        slot.value = state
        slot.event.set()


async def serve_reply_channels(
    recv: trio.MemoryReceiveChannel[tuple[object, trio.MemorySendChannel[object]]],
    task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
) -> None:
    """(b): requests carry their own reply memory channel."""
    state = 0
    task_status.started()
    async for _request, reply_to in recv:
        reply_to.send_nowait(state)


class PingPong:
    """(c), the floor: one parked server task, woken with the request, wakes its caller."""

    __slots__ = ("client", "server")

    def __init__(self) -> None:
        self.server: trio.lowlevel.Task | None = None
        self.client: trio.lowlevel.Task | None = None

    async def serve(self, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        state = 0
        task_status.started()
        while True:
            self.server = current_task()
            await wait_task_rescheduled(_abort)  # the request
            client, self.client = self.client, None
            reschedule(client, Value(state))  # type: ignore[arg-type]

    async def call(self, request: object) -> object:
        server, self.server = self.server, None
        if server is None:
            raise RuntimeError("ping-pong server not parked")
        self.client = current_task()
        reschedule(server, Value(request))
        return await wait_task_rescheduled(_abort)


async def drain_counting(
    recv: trio.MemoryReceiveChannel[object],
    task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
) -> None:
    """A plain task draining a memory channel; a `Slot` in the stream is a sync request."""
    count = 0
    task_status.started()
    async for msg in recv:
        if type(msg) is Slot:
            msg.value = count
            msg.event.set()
        else:
            count += 1


async def sync_plain(send: trio.MemorySendChannel[object]) -> None:
    slot = Slot()
    send.send_nowait(slot)
    await slot.event.wait()


async def parked(task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
    task_status.started()
    await trio.sleep_forever()


async def parked_in_scope(task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
    with trio.CancelScope():  # killable on its own, as a server is
        task_status.started()
        await trio.sleep_forever()


async def parked_with_channel() -> None:
    send, recv = trio.open_memory_channel[object](math.inf)
    async with send, recv:
        await recv.receive()


# ------------------------------------------------------------------ 1. call


async def measure_call(rec: h.Recorder) -> None:
    async with trio.open_nursery() as nursery:
        ref = await tp.start_server(nursery, Echo, 0)
        ref_np = await tp.start_server(nursery, Echo, 0, preserve=False)
        send_a, recv_a = trio.open_memory_channel[tuple[object, Slot]](math.inf)
        await nursery.start(serve_event_slots, recv_a)
        send_b, recv_b = trio.open_memory_channel[
            tuple[object, trio.MemorySendChannel[object]]
        ](math.inf)
        await nursery.start(serve_reply_channels, recv_b)
        pp = PingPong()
        await nursery.start(pp.serve)

        async def ours(n: int) -> int:
            t0 = h.now_ns()
            for _ in range(n):
                await ref.call(REQUEST)
            return h.now_ns() - t0

        async def ours_np(n: int) -> int:
            t0 = h.now_ns()
            for _ in range(n):
                await ref_np.call(REQUEST)
            return h.now_ns() - t0

        async def ours_inf(n: int) -> int:
            t0 = h.now_ns()
            for _ in range(n):
                await ref.call(REQUEST, timeout=math.inf)
            return h.now_ns() - t0

        async def plain_a(n: int) -> int:
            t0 = h.now_ns()
            for _ in range(n):
                slot = Slot()
                send_a.send_nowait((REQUEST, slot))
                await slot.event.wait()
            return h.now_ns() - t0

        async def plain_b(n: int) -> int:
            t0 = h.now_ns()
            for _ in range(n):
                reply_send, reply_recv = trio.open_memory_channel[object](1)
                send_b.send_nowait((REQUEST, reply_send))
                await reply_recv.receive()
            return h.now_ns() - t0

        async def floor_c(n: int) -> int:
            t0 = h.now_ns()
            for _ in range(n):
                await pp.call(REQUEST)
            return h.now_ns() - t0

        await rec.measure(
            "call",
            {
                "call": ours,
                "call preserve=False": ours_np,
                "call timeout=inf": ours_inf,
                "(a) channel + Event slot": plain_a,
                "(b) reply channel per call": plain_b,
                "(c) floor ping-pong": floor_c,
            },
            rec.cfg.iters(1000, 300),
        )
        nursery.cancel_scope.cancel()


def rows_call(m: h.Medians) -> list[h.Row]:
    call = m("call")
    return [
        h.Row(
            "call, preserving (timeout=5)",
            call,
            h.TIME,
            "(a) chan+Event",
            m("(a) channel + Event slot"),
            h.ratio_at_most(1.0),
        ),
        h.Row("  same", call, h.TIME, "(c) floor", m("(c) floor ping-pong"), h.ratio_at_most(1.4)),
        h.Row("  same", call, h.TIME, "(b) reply chan/call", m("(b) reply channel per call")),
        h.Row(
            "  same", call, h.TIME, "preserve=False", m("call preserve=False"), h.ratio_at_most(1.1)
        ),
        h.Row("call timeout=inf", m("call timeout=inf"), h.TIME, "timeout=5", call),
    ]


# ------------------------------------------------------------------ 2. cast


async def measure_cast(rec: h.Recorder) -> None:
    async with trio.open_nursery() as nursery:
        ref = await tp.start_server(nursery, Echo, 0)
        send, recv = trio.open_memory_channel[object](math.inf)
        await nursery.start(drain_counting, recv)

        async def ours_enqueue(n: int) -> int:
            cast_nowait = ref.cast_nowait
            t0 = h.now_ns()
            for _ in range(n):
                cast_nowait("inc")
            t1 = h.now_ns()
            await ref.call(REQUEST)  # let the server drain (not timed)
            return t1 - t0

        async def plain_enqueue(n: int) -> int:
            send_nowait = send.send_nowait
            t0 = h.now_ns()
            for _ in range(n):
                send_nowait("inc")
            t1 = h.now_ns()
            await sync_plain(send)
            return t1 - t0

        async def ours_e2e(n: int) -> int:
            cast_nowait = ref.cast_nowait
            t0 = h.now_ns()
            for _ in range(n):
                cast_nowait("inc")
            await ref.call(REQUEST)
            return h.now_ns() - t0

        async def plain_e2e(n: int) -> int:
            send_nowait = send.send_nowait
            t0 = h.now_ns()
            for _ in range(n):
                send_nowait("inc")
            await sync_plain(send)
            return h.now_ns() - t0

        await rec.measure(
            "cast",
            {
                "cast_nowait enqueue": ours_enqueue,
                "send_nowait enqueue": plain_enqueue,
                "cast end to end": ours_e2e,
                "channel drained end to end": plain_e2e,
            },
            rec.cfg.iters(10000, 2000),
        )
        nursery.cancel_scope.cancel()


def rows_cast(m: h.Medians) -> list[h.Row]:
    return [
        h.Row(
            "cast_nowait enqueue",
            h.rate(m("cast_nowait enqueue")),
            h.RATE,
            "chan send_nowait",
            h.rate(m("send_nowait enqueue")),
            h.at_least(2e6, h.RATE),
        ),
        h.Row(
            "cast handled end to end",
            h.rate(m("cast end to end")),
            h.RATE,
            "task draining chan",
            h.rate(m("channel drained end to end")),
            h.at_least(500e3, h.RATE),
        ),
    ]


# ----------------------------------------------------------------- 3. start


async def measure_start(rec: h.Recorder) -> None:
    async def ours(n: int) -> int:
        async with trio.open_nursery() as nursery:
            t0 = h.now_ns()
            for _ in range(n):
                await tp.start_server(nursery, Echo, 0)
            t1 = h.now_ns()
            nursery.cancel_scope.cancel()
        return t1 - t0

    async def plain(n: int) -> int:
        async with trio.open_nursery() as nursery:
            t0 = h.now_ns()
            for _ in range(n):
                await nursery.start(parked)
            t1 = h.now_ns()
            nursery.cancel_scope.cancel()
        return t1 - t0

    await rec.measure(
        "start", {"tp.start_server": ours, "nursery.start": plain}, rec.cfg.iters(200, 50)
    )


def rows_start(m: h.Medians) -> list[h.Row]:
    return [
        h.Row(
            "start_server",
            m("tp.start_server"),
            h.TIME,
            "nursery.start",
            m("nursery.start"),
            h.ratio_at_most(2.0),
        )
    ]


# ---------------------------------------------------------------- 4. memory


async def _traced_bytes(n: int, spawn: Callable[[trio.Nursery], Awaitable[object]]) -> int:
    """Bytes still allocated after *n* spawns, once every task is parked."""
    async with trio.open_nursery() as nursery:
        gc.collect()
        tracemalloc.start()
        try:
            before = tracemalloc.get_traced_memory()[0]
            for _ in range(n):
                await spawn(nursery)
            await trio.testing.wait_all_tasks_blocked()
            gc.collect()
            after = tracemalloc.get_traced_memory()[0]
        finally:
            tracemalloc.stop()
        nursery.cancel_scope.cancel()
    return after - before


async def _spawn_server(nursery: trio.Nursery) -> object:
    return await tp.start_server(nursery, Echo, 0)


async def _spawn_parked(nursery: trio.Nursery) -> object:
    nursery.start_soon(parked)
    return None


async def _spawn_parked_with_channel(nursery: trio.Nursery) -> object:
    nursery.start_soon(parked_with_channel)
    return None


async def _spawn_started_in_scope(nursery: trio.Nursery) -> object:
    return await nursery.start(parked_in_scope)


async def measure_memory(rec: h.Recorder) -> None:
    def variant(spawn: Callable[[trio.Nursery], Awaitable[object]]) -> h.Variant:
        async def run(n: int) -> int:
            return await _traced_bytes(n, spawn)

        return run

    await rec.measure(
        "memory",
        {
            "idle server": variant(_spawn_server),
            "parked task": variant(_spawn_parked),
            "parked task + own channel": variant(_spawn_parked_with_channel),
            "nursery.start-ed task in own CancelScope": variant(_spawn_started_in_scope),
        },
        rec.cfg.iters(2000, 300),
        runs=3,  # deterministic up to allocator noise
        warmup=50,
    )


def rows_memory(m: h.Medians) -> list[h.Row]:
    server = m("idle server")
    return [
        h.Row(
            "memory per idle server",
            server,
            h.BYTES,
            "parked task",
            m("parked task"),
            h.at_most(4000, h.BYTES, "≤ 4 kB"),
        ),
        h.Row("  same", server, h.BYTES, "task + own chan", m("parked task + own channel")),
        h.Row(
            "  same",
            server,
            h.BYTES,
            "started task + scope",
            m("nursery.start-ed task in own CancelScope"),
        ),
    ]


# --------------------------------------------------------------- 5. restart


async def measure_restart(rec: h.Recorder) -> None:
    async with trio.open_nursery() as nursery:
        # a standalone server restarts at most 3 times in 5 s: use each one for 3 crashes
        current: list[tp.ServerRef] = [await tp.start_server(nursery, Crashy, 0)]
        crashes = [0]

        async def standalone_crash(n: int) -> int:
            total = 0
            for _ in range(n):
                if crashes[0] == 3:
                    await current[0].stop()
                    current[0] = await tp.start_server(nursery, Crashy, 0)
                    crashes[0] = 0
                ref = current[0]
                crashes[0] += 1
                t0 = h.now_ns()
                ref.cast_nowait("boom")
                await ref.call(REQUEST)
                total += h.now_ns() - t0
            return total

        async def standalone_call(n: int) -> int:
            ref = current[0]
            t0 = h.now_ns()
            for _ in range(n):
                await ref.call(REQUEST)
            return h.now_ns() - t0

        async with tp.open_supervisor(
            tp.child(Crashy, 0, id="c"), max_restarts=1_000_000, max_seconds=1.0
        ) as sup:
            sref = sup.which_children()[0].ref

            async def supervised_crash(n: int) -> int:
                total = 0
                for _ in range(n):
                    t0 = h.now_ns()
                    sref.cast_nowait("boom")
                    await sref.call(REQUEST)
                    total += h.now_ns() - t0
                return total

            async def supervised_call(n: int) -> int:
                t0 = h.now_ns()
                for _ in range(n):
                    await sref.call(REQUEST)
                return h.now_ns() - t0

            await rec.measure(
                "restart",
                {
                    "standalone crash+call": standalone_crash,
                    "standalone call": standalone_call,
                    "supervised crash+call": supervised_crash,
                    "supervised call": supervised_call,
                },
                rec.cfg.iters(200, 30),
            )
        nursery.cancel_scope.cancel()


def rows_restart(m: h.Medians) -> list[h.Row]:
    rows = []
    for kind in ("standalone", "supervised"):
        call = m(f"{kind} call")
        rows.append(
            h.Row(
                f"crash → serving, {kind}",
                m(f"{kind} crash+call") - call,
                h.TIME,
                "normal call",
                call,
                h.at_most(100_000, h.TIME, "≤ 100 µs"),
            )
        )
    return rows


GROUPS: dict[str, h.Group] = {
    "call": h.Group(measure_call, rows_call),
    "cast": h.Group(measure_cast, rows_cast),
    "start": h.Group(measure_start, rows_start),
    "memory": h.Group(measure_memory, rows_memory),
    "restart": h.Group(measure_restart, rows_restart),
}


if __name__ == "__main__":
    h.main("bench_server", __doc__, GROUPS, trio.run)
