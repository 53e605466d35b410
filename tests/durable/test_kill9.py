"""kill -9 never loses an acknowledged write (``sync="commit"``), on SQLite and PostgreSQL.

A child process (`_child.py` in ``loop`` mode) increments a durable counter
as fast as it can and prints ``ack N`` after each answered call. The test
reads acks, SIGKILLs the child at a chosen moment (after 1 to 50 acks,
sometimes a few milliseconds later still), reads what the child had printed
before it died, and loads the key: the stored count is the last ack or one
more (a write can be durable before its ack is printed, never the other
way). The next trial's child reuses the key at once (the dead owner is
detected: a SQLite lock file no longer locked, a PostgreSQL session gone) and
must load exactly the count the test verified.

Trials: 15 on SQLite and 10 on PostgreSQL, or ``TRIO_PEEPER_SOAK_TRIALS``
each (``make soak``). The kill moments come from a seeded generator; only the
child's own progress is left to the machine.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import threading
import time
from typing import Any

import trio
import trio.testing

from _child import assemble

DEFAULT_TRIALS = {"sqlite": 15, "postgres": 10}
WATCHDOG = 60.0  # real seconds one child may take before the test kills it and fails


def trials_for(backend: str) -> int:
    soak = os.environ.get("TRIO_PEEPER_SOAK_TRIALS")
    return int(soak) if soak else DEFAULT_TRIALS[backend]


def stored_count(backend: Any, key: str) -> int | None:
    async def load() -> Any:
        return assemble(await backend.load(key))

    data = trio.run(load, clock=trio.testing.MockClock(autojump_threshold=0))
    return None if data is None else int(data["n"])


def ack(line: str) -> int:
    word, n = line.split()
    assert word == "ack", line
    return int(n)


def one_trial(backend: Any, key: str, start: int, target: int, linger: float) -> int:
    """Run a child until *target* more acks, kill -9 it (*linger* s later); the last ack printed."""
    with subprocess.Popen(
        backend.child_args(key, "loop"),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=backend.env(),
        text=True,
    ) as child:
        watchdog = threading.Timer(WATCHDOG, child.kill)
        watchdog.start()
        try:
            assert child.stdout is not None and child.stderr is not None
            first = child.stdout.readline()
            if first != f"ready {start}\n":
                child.kill()
                raise AssertionError(f"child started with {first!r}, expected 'ready {start}': {child.stderr.read()}")
            last = start
            while last < start + target:
                n = ack(child.stdout.readline())
                assert n == last + 1
                last = n
            if linger:
                time.sleep(linger)
            os.kill(child.pid, signal.SIGKILL)
            rest = child.stdout.read()  # what it printed before it died
            for line in rest.splitlines(keepends=True):
                if not line.endswith("\n"):
                    break  # cut short by the kill: not an ack
                n = ack(line)
                assert n == last + 1
                last = n
            assert child.wait() == -signal.SIGKILL
        finally:
            watchdog.cancel()
            if child.poll() is None:
                child.kill()
    return last


def test_kill9_never_loses_an_acknowledged_increment(process_backend: Any) -> None:
    b = process_backend
    rng = random.Random(f"kill9/{b.name}")
    key = "kill9/counter"
    count = 0
    for trial in range(trials_for(b.name)):
        target = rng.randint(1, 50)
        linger = rng.choice([0.0, 0.0, rng.uniform(0.0, 0.005)])
        last = one_trial(b, key, count, target, linger)
        stored = stored_count(b, key)
        assert stored is not None
        assert last <= stored <= last + 1, f"trial {trial}: last ack {last}, stored {stored}"
        count = stored
    # and a fresh process, exiting gracefully, loads the same count
    proc = subprocess.run(
        b.child_args(key), input="get\n", capture_output=True, text=True, env=b.env(), timeout=WATCHDOG, check=False
    )
    assert proc.stdout.splitlines() == [f"ready {count}", f"value {count}", "bye"], proc.stderr
