"""Testing durable servers: Memory storage, virtual time, FaultyStorage, check_storage."""

from __future__ import annotations

import trio
import trio.testing

import trio_peeper as tp
from trio_peeper.testing import FaultyStorage, check_storage


class Wallet(tp.DurableServer):
    async def handle_call(self, amount, caller, state):
        state["balance"] += amount
        return tp.Reply(state["balance"], state)


def wallet(**options: object) -> tp.ChildSpec:
    return tp.child(Wallet, key="wallet/ann", initial_state={"balance": 0}, **options)


async def stored_balance(storage: tp.storage.Storage) -> int:
    """What a fresh node loads from *storage*: the durable state, nothing else."""
    async with tp.open_node(storage=storage), tp.open_dynamic_supervisor() as dsup:
        ref = await dsup.start_child(wallet(sync="manual"))
        return await ref.call(0)


async def test_a_failed_write_is_not_acknowledged() -> None:
    memory = tp.storage.Memory()
    faulty = FaultyStorage(memory, fail_on=lambda n: n == 3)  # write 1 is the first boot
    async with tp.open_node(storage=faulty), tp.open_dynamic_supervisor() as dsup:
        ref = await dsup.start_child(wallet())
        assert await ref.call(10) == 10  # write 2
        try:
            await ref.call(5)  # write 3 fails: the server crashes, the change is rolled back
        except tp.ServerExited as exc:
            assert isinstance(exc.reason, tp.SyncFailed)
        else:
            raise AssertionError("the caller was told the change was durable")
        assert await ref.call(1) == 11  # restarted from the last durable state
    assert await stored_balance(memory) == 11


async def test_interval_writes_once_per_sync_every() -> None:
    counting = FaultyStorage(tp.storage.Memory(), fail_on=lambda n: False)  # fails nothing: counts
    async with tp.open_node(storage=counting), tp.open_dynamic_supervisor() as dsup:
        ref = await dsup.start_child(wallet(sync="interval", sync_every=60.0))
        assert counting.writes == 1  # the first boot
        for _ in range(10):
            await ref.call(1)  # acknowledged at once, not durable yet
        assert counting.writes == 1
        await trio.sleep(61)
        assert counting.writes == 2  # ten changes, one write
    assert await stored_balance(counting.inner) == 10


async def test_the_conformance_kit_passes() -> None:
    memory = tp.storage.Memory()
    await check_storage(lambda: memory)  # every call: a view of the same data


async def main() -> None:
    for test in (
        test_a_failed_write_is_not_acknowledged,
        test_interval_writes_once_per_sync_every,
        test_the_conformance_kit_passes,
    ):
        start = trio.current_time()
        await test()
        elapsed = trio.current_time() - start
        print(f"passed: {test.__name__} ({elapsed:.0f} virtual seconds)")


if __name__ == "__main__":
    # virtual time: the clock jumps ahead whenever every task is waiting
    trio.run(main, clock=trio.testing.MockClock(autojump_threshold=0))
