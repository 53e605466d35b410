"""A durable counter: its count survives the whole program stopping."""

import tempfile
from pathlib import Path

import trio

import trio_peeper as tp


class Counter(tp.DurableServer):
    async def handle_call(self, request, caller, state):
        if request == "add":
            state["count"] += 1
        return tp.Reply(state["count"], state)  # sent once the change is on disk


async def program(db: Path) -> None:
    """One run of a program that counts its runs in SQLite."""
    async with tp.open_node(storage=tp.storage.SQLite(db)):
        counter = tp.child(Counter, key="counter/runs", initial_state={"count": 0}, name="runs")
        async with tp.open_supervisor(counter):
            before = await tp.call("runs", "get")
            after = await tp.call("runs", "add")
            print(f"runs: {before} -> {after}")


async def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        db = Path(tmp) / "state.db"
        for _ in range(3):
            await program(db)  # as if the program were started three times


if __name__ == "__main__":
    trio.run(main)
