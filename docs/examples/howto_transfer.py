"""How-to: move running servers between dynamic supervisors with tp.transfer."""

from __future__ import annotations

import trio

import trio_peeper as tp


class Session(tp.GenServer):
    """A user session that handles messages slowly, so some wait in its mailbox."""

    async def init(self, pool, user):
        # pool comes from the dynamic supervisor's extra_args
        tp.pdict()["started in"] = pool
        print(f"  {user}: init in the {pool} pool")
        return {"user": user, "seen": []}

    async def restore(self, state):  # after a crash; a transfer is not a restart
        print(f"  {state['user']}: restore after a crash")
        return state

    async def handle_cast(self, n, state):
        await trio.sleep(0.01)  # a transfer waits for this callback to finish
        state["seen"].append(n)
        return tp.NoReply(state)

    async def handle_call(self, request, caller, state):
        seen = state["seen"]
        in_order = seen == list(range(len(seen)))
        pool = tp.pdict()["started in"]
        report = f"{len(seen)} messages, in order: {in_order}, started in {pool}"
        return tp.Reply(report, state)

    async def terminate(self, reason, state):
        print(f"  {state['user']}: terminate({reason})")


async def producer(refs, count):
    """Casts to every session twice as fast as they handle messages."""
    for n in range(count):
        for ref in refs:
            ref.cast_nowait(n)
        await trio.sleep(0.005)


def children(pool: tp.Supervisor) -> list[str]:
    return [info.ref.name for info in pool.which_children()]


async def main() -> None:
    users = ("ann", "bob")
    async with tp.open_dynamic_supervisor(extra_args=("new",)) as new_pool:
        async with tp.open_dynamic_supervisor(extra_args=("old",)) as old_pool:
            refs = []
            for user in users:
                spec = tp.child(Session, user, name=user)
                refs.append(await old_pool.start_child(spec))

            print("move both sessions while a producer keeps casting to them")
            async with trio.open_nursery() as nursery:
                nursery.start_soon(producer, refs, 20)
                await trio.sleep(0.03)
                for ref in refs:
                    waiting = ref.statistics().mailbox_len > 0
                    await tp.transfer(ref, old_pool, new_pool)  # no terminate runs
                    print(f"  moved {ref.name} (messages waiting: {waiting})")
            print(f"old pool: {children(old_pool)}, new pool: {children(new_pool)}")
            print("closing the old pool: it has nothing left to stop")
        print("the old pool is closed; the sessions run on, same refs, same names")
        for user in users:
            print(f"  {user}: {await tp.call(user, 'report')}")

        print("a refused transfer changes nothing")
        async with tp.open_dynamic_supervisor(
            max_children=1, extra_args=("small",)
        ) as small_pool:
            await small_pool.start_child(tp.child(Session, "cy"))
            try:
                await tp.transfer(refs[0], new_pool, small_pool)
            except tp.MaxChildren as exc:
                print(f"  MaxChildren: {exc}")
            try:
                await tp.transfer(refs[0], old_pool, new_pool)
            except trio.ClosedResourceError:
                print("  the old pool is closed: ClosedResourceError")
            print(f"  new pool: {children(new_pool)}")
            await small_pool.terminate_child(small_pool.which_children()[0].ref)

        print("a crash after the move: the new pool restarts it")
        tp.whereis("ann").kill()
        print(f"  ann: {await tp.call('ann', 'report')}")
        for ref in refs:
            await new_pool.terminate_child(ref)
    print("done")


if __name__ == "__main__":
    trio.run(main)
