"""A durable counter in a process of its own (the kill -9 and cross-process tests).

Usage::

    PYTHONPATH=src python tests/durable/_child.py <backend> <target> <key> [stdin|loop]

*backend* is ``sqlite`` (*target*: the database path) or ``postgres``
(*target*: ``"<dsn>|<schema>"``). The child opens a node on that storage,
starts `Counter` (``sync="commit"``) under *key* in a dynamic supervisor and
prints ``ready N`` (the loaded count). Then:

- ``stdin`` (the default): one command per line: ``inc`` (prints ``ack N``
  once the call was answered), ``get`` (prints ``value N``), ``quit`` or end
  of input (a graceful shutdown, then ``bye``);
- ``loop``: increments forever, printing ``ack N`` after each answered call.

Every line is flushed at once: an ``ack N`` is printed only after the reply,
so storage holds N or more by then. A start refused because another live
owner holds the key prints ``already-started`` and exits with status 3.

The test modules import `Counter` and `assemble` from here too.
"""

from __future__ import annotations

import sys
from typing import Any

import trio

import trio_peeper as tp
from trio_peeper.storage import Postgres, SQLite, Storage, Stored
from trio_peeper.storage._base import WHOLE
from trio_peeper.storage._codec import decode_record, part_key


class Counter(tp.DurableServer, sync="commit"):
    """State ``{"n": count}``; ``"inc"`` adds one and replies the new count."""

    async def handle_call(self, request: Any, caller: Any, state: Any) -> Any:
        if request == "inc":
            state["n"] += 1
            return tp.Reply(state["n"], state)
        if request == "get":
            return tp.Reply(state["n"], state)
        raise AssertionError(request)


def open_storage(backend: str, target: str) -> Storage:
    if backend == "sqlite":
        return SQLite(target)
    if backend == "postgres":
        dsn, schema = target.rsplit("|", 1)
        return Postgres(dsn, schema=schema)
    raise SystemExit(f"unknown backend {backend!r}")


def assemble(stored: Stored | None) -> Any:
    """The data a `Stored` holds (its parts decoded and put together); None for None."""
    if stored is None:
        return None
    if WHOLE in stored.parts:
        return decode_record(stored.parts[WHOLE])
    return {part_key(name): decode_record(rec) for name, rec in stored.parts.items()}


def say(line: str) -> None:
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


async def main(backend: str, target: str, key: str, mode: str) -> int:
    async with tp.open_node(storage=open_storage(backend, target)):
        async with tp.open_dynamic_supervisor() as dsup:
            try:
                ref = await dsup.start_child(tp.child(Counter, key=key, initial_state={"n": 0}))
            except tp.AlreadyStarted:
                say("already-started")
                return 3
            say(f"ready {await ref.call('get')}")
            if mode == "loop":
                while True:
                    n = await ref.call("inc")
                    say(f"ack {n}")
            stdin = trio.wrap_file(sys.stdin)
            while True:
                line = (await stdin.readline()).strip()
                if line == "inc":
                    say(f"ack {await ref.call('inc')}")
                elif line == "get":
                    say(f"value {await ref.call('get')}")
                elif line in ("quit", ""):
                    break
                else:
                    say(f"unknown {line!r}")
    say("bye")
    return 0


if __name__ == "__main__":
    backend, target, key = sys.argv[1:4]
    mode = sys.argv[4] if len(sys.argv) > 4 else "stdin"
    sys.exit(trio.run(main, backend, target, key, mode))
