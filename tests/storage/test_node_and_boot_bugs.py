"""Three library bugs found while writing benches/bench_durable.py and docs/durability.md.

1. A node opens its storage once per durable server whose first claim
   arrives while the first ``storage.open()`` is still running:
   `Node._ensure_storage` checks ``self._opened`` before awaiting
   ``open()``. `SQLite.open` (and `Memory.open`) count nested opens, while
   the node's close calls ``aclose()`` only once: the count never reaches
   zero, the SQLite writer thread never stops, and it keeps its connection
   and the node's owner lock file (``flock``) for the rest of the process. A
   later node in the same process then gets `AlreadyStarted` for every key
   the first node had not released yet (seen with 10k servers started from
   100 tasks).
2. What ``init`` changes on a later boot (stored state loaded, same vsn) is
   never written: only the first boot and a migration mark the state dirty,
   and later writes carry only the top-level keys that callbacks changed. The
   server serves a state that storage never gets, not even at the final
   sync of a graceful stop.
3. In-place changes to a mutable dataclass state are acknowledged under
   ``sync="commit"`` and never written: `ServerRef._sync_commit` marks
   ``journal.changes()`` dirty *before* the journal's commit, and a dataclass
   field assignment becomes a change only in that commit
   (``_readopt``), so nothing is dirty and the sync writes nothing.
   Returning a new dataclass instance is written.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from pathlib import Path

import trio

import trio_peeper as tp


class Box(tp.DurableServer):
    async def handle_call(self, request, caller, state):
        return tp.Reply(state, state)


def writer_threads(path: Path) -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == f"trio_peeper SQLite writer {path}" and t.is_alive()]


async def test_concurrent_first_starts_open_the_storage_once(tmp_path: Path) -> None:
    path = tmp_path / "state.db"
    storage = tp.storage.SQLite(path)
    async with tp.open_node(storage=storage):
        async with tp.open_dynamic_supervisor() as dsup, trio.open_nursery() as nursery:
            for i in range(3):
                nursery.start_soon(dsup.start_child, tp.child(Box, key=f"box/{i}", initial_state={"n": i}))
    # every open was matched by a close: the writer thread is gone with its owner lock
    assert storage._open == 0
    assert writer_threads(path) == []
    assert list((tmp_path / "state.db.owners").iterdir()) == []


class Boots(tp.DurableServer):
    async def init(self, state):
        state["boots"] += 1
        return state

    async def handle_call(self, request, caller, state):
        state["calls"] += 1
        return tp.Reply(dict(state), state)


async def test_what_init_changes_on_a_later_boot_is_stored() -> None:
    storage = tp.storage.Memory()
    seen = []
    for _ in range(3):
        async with tp.open_node(storage=storage):
            async with tp.open_supervisor(tp.child(Boots, key="boots", initial_state={"boots": 0, "calls": 0}, name="boots")):
                seen.append(await tp.call("boots", "hello"))
    assert seen == [{"boots": 1, "calls": 1}, {"boots": 2, "calls": 2}, {"boots": 3, "calls": 3}]


@dataclass
class Purse:
    cents: int


class PurseServer(tp.DurableServer):
    def dump_state(self, purse):
        return {"cents": purse.cents}

    def load_state(self, old_vsn, data):
        return Purse(data["cents"])

    async def handle_call(self, cents, caller, purse):
        purse.cents += cents  # in place: the dataclass is tracked field by field
        return tp.Reply(purse.cents, purse)


async def test_in_place_changes_to_a_dataclass_state_are_written() -> None:
    storage = tp.storage.Memory()
    async with tp.open_node(storage=storage):
        async with tp.open_dynamic_supervisor() as dsup:
            ref = await dsup.start_child(tp.child(PurseServer, key="purse", initial_state=Purse(0)))
            assert await ref.call(5) == 5  # acknowledged under sync="commit"
    async with tp.open_node(storage=storage):
        async with tp.open_dynamic_supervisor() as dsup:
            ref = await dsup.start_child(tp.child(PurseServer, key="purse", initial_state=Purse(0)))
            assert await ref.call(0) == 5
