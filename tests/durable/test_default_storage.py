"""open_node() with no storage: SQLite("trio_peeper.db") in the working directory, opened only when needed.

Starts use timeout=None: under the autojump clock, virtual time runs ahead while SQLite's thread works.
"""

from pathlib import Path

import pytest
import trio

import trio_peeper as tp
from trio_peeper.storage import SQLite


class Counter(tp.DurableServer):
    async def handle_call(self, request, caller, state):
        state["n"] += 1
        return tp.Reply(state["n"], state)


async def test_the_default_storage_is_sqlite_opened_at_the_first_durable_start(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    async with tp.open_node() as node:
        assert node.storage is None  # nothing opened yet
        assert not (tmp_path / "trio_peeper.db").exists()
        async with trio.open_nursery() as nursery:
            ref = await tp.start_server(nursery, Counter, key="c", initial_state={"n": 0}, timeout=None)
            assert isinstance(node.storage, SQLite)
            assert await ref.call("inc", timeout=None) == 1
            await ref.stop()
    assert (tmp_path / "trio_peeper.db").exists()
    async with tp.open_node() as node, trio.open_nursery() as nursery:
        ref = await tp.start_server(nursery, Counter, key="c", initial_state={"n": 0}, timeout=None)
        assert await ref.call("inc", timeout=None) == 2  # continued from the file
        await ref.stop()
