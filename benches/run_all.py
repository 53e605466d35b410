"""Run every bench and print every table (what ``make bench`` calls).

``bench_server.py``, ``bench_preserve.py`` and ``bench_snapshot.py`` run under
``TRIO_PEEPER_FASTCORE=cython`` (skipped, with a note, when the compiled
``_fastcore`` does not import) and ``=python``, each as a subprocess; after
each, a table compares the two cores row by row (the cython/python ratio of
STYLE.md S9). ``bench_durable.py`` runs once, under the compiled core (its
figures are bound by the disk and the drivers). ``bench_fastcore.py`` runs
too when it exists.

The core is fixed per process, so the two cores cannot be interleaved inside
one run as variants are. To keep machine drift from favouring one core, a full
run alternates them in rounds (cython, python, cython, python, ...), each round
doing a share of the runs, and pools the samples of all rounds per core
(``--merge``). Memory is deterministic and slow to trace: only
the first round measures it (in the benches that have a ``memory`` group).

Each subprocess gets this checkout's ``src`` first on ``PYTHONPATH``
(``--installed`` leaves ``PYTHONPATH`` alone, to bench an installed wheel).

Usage: ``python benches/run_all.py [--quick] [--json DIR] [--runs N] [--rounds R]``

The exit status is non-zero only when a bench process failed; a missed target
is reported in the tables, never turned into a failure.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import _harness as h

HERE = Path(__file__).resolve().parent
SRC = HERE.parent / "src"
CORES = ("cython", "python")
BENCHES = ("bench_server", "bench_preserve", "bench_snapshot")  # each under both cores
UNTIMED_GROUPS = {  # per bench: groups measured in the first round only
    "bench_server": ("memory",),
    "bench_preserve": ("memory",),
}


def child_env(args: argparse.Namespace, **extra: str) -> dict[str, str]:
    env = dict(os.environ)
    if not args.installed:
        old = env.get("PYTHONPATH")
        env["PYTHONPATH"] = str(SRC) + (os.pathsep + old if old else "")
    env.update(extra)
    return env


def core_available(env: dict[str, str]) -> tuple[bool, str]:
    """Whether ``_fastcore`` imports under *env*; else the last line of the error."""
    probe = subprocess.run(
        [sys.executable, "-c", "import _fastcore, trio_peeper; print(_fastcore.IMPLEMENTATION)"],
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    if probe.returncode == 0:
        return True, probe.stdout.strip()
    lines = (probe.stderr or probe.stdout).strip().splitlines()
    return False, lines[-1] if lines else f"exit status {probe.returncode}"


def accepts_json(script: Path, env: dict[str, str]) -> bool:
    """Whether *script* (not ours) takes ``--json PATH``."""
    out = subprocess.run(
        [sys.executable, str(script), "--help"],
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    return "--json" in out.stdout


def run(cmd: list[str], env: dict[str, str], label: str) -> int:
    """Run one bench process, its output going straight to ours; returns its exit status."""
    sys.stdout.flush()
    t0 = time.monotonic()
    rc = subprocess.run(cmd, env=env, check=False).returncode
    status = "" if rc == 0 else f", FAILED with exit status {rc}"
    print(f"   ({label}: {time.monotonic() - t0:.1f} s{status})", flush=True)
    return rc


def speedup(unit: str, cy: float, py: float) -> float | None:
    """How many times better the compiled core does (> 1: compiled is better)."""
    if unit == h.RATE:
        return cy / py if py else None
    return py / cy if cy else None


def compare_cores(results: dict[str, dict[str, Any]], name: str = "bench_server") -> str:
    """Row-by-row table of our figures under both cores."""
    cy, py = results["cython"]["rows"], results["python"]["rows"]
    lines = []
    for a, b in zip(cy, py):
        if (a["what"], a["ref_name"]) != (b["what"], b["ref_name"]):
            continue
        if a["what"].strip() == "same":  # the same figure again, against another reference
            continue
        unit = a["unit"]
        s = speedup(unit, a["ours"], b["ours"])
        lines.append(
            [
                a["what"],
                h.fmt(a["ours"], unit),
                h.fmt(b["ours"], unit),
                "—" if s is None else f"{s:.2f} ×",
                "—" if a["ratio"] is None else f"{a['ratio']:.2f} ×",
                "—" if b["ratio"] is None else f"{b['ratio']:.2f} ×",
            ]
        )
    header = ["what", "cython", "python", "cython gain", "ratio (cy)", "ratio (py)"]
    notes = [
        "cython gain > 1: the compiled core does better; figures of different processes,",
        "  so drift between rounds shows up here (the ratio columns are same-process)",
    ]
    return f"== cython vs python core ({name}, ours) ==\n" + h.format_table(
        header, lines, notes
    )


def summary(core: str, data: dict[str, Any]) -> str:
    judged = [r for r in data["rows"] if r["meets"] is not None]
    missed = [f"{r['what'].strip()} vs {r['ref_name']}" for r in judged if not r["meets"]]
    text = f"   {core}: {len(judged) - len(missed)}/{len(judged)} targets met"
    return text + (f"; missed: {'; '.join(missed)}" if missed else "")


def main() -> int:
    p = argparse.ArgumentParser(description="Run all trio_peeper benches.")
    p.add_argument("--quick", action="store_true", help="smoke run: few iterations, one round")
    p.add_argument("--json", metavar="DIR", help="write the JSON results into DIR")
    p.add_argument("--runs", type=int, help="runs per variant in all (default 31, quick 5)")
    p.add_argument("--rounds", type=int, help="alternations of the two cores (default 3, quick 1)")
    p.add_argument(
        "--installed", action="store_true", help="do not put this checkout's src on PYTHONPATH"
    )
    args = p.parse_args()

    runs = args.runs or (5 if args.quick else 31)
    rounds = max(1, args.rounds or (1 if args.quick else 3))
    per_round = max(1, math.ceil(runs / rounds))
    common = (["--quick"] if args.quick else []) + ["--runs", str(per_round)]
    tmp = None
    if args.json:
        out_dir = Path(args.json)
        out_dir.mkdir(parents=True, exist_ok=True)
    else:
        tmp = tempfile.TemporaryDirectory(prefix="trio_peeper_bench_")
        out_dir = Path(tmp.name)

    t0 = time.monotonic()
    failures = 0
    notes: list[str] = []
    envs: dict[str, dict[str, str]] = {}
    for core in CORES:
        env = child_env(args, TRIO_PEEPER_FASTCORE=core)
        ok, info = core_available(env)
        if ok:
            envs[core] = env
        else:
            note = (
                f"NOTE: {', '.join(BENCHES)} under TRIO_PEEPER_FASTCORE={core} skipped: "
                f"_fastcore does not import ({info})"
            )
            print(note, flush=True)
            notes.append(note)

    all_results: dict[str, dict[str, dict[str, Any]]] = {}
    for name in BENCHES:
        bench = str(HERE / f"{name}.py")
        parts: dict[str, list[str]] = {core: [] for core in envs}
        for r in range(rounds):
            for core, env in envs.items():
                if rounds == 1:
                    path = out_dir / f"{name}-{core}.json"
                    cmd = [sys.executable, bench, *common, "--json", str(path)]
                    failures += run(cmd, env, f"{name}, {core}") != 0
                    print(flush=True)
                else:
                    path = out_dir / f"{name}-{core}-round{r + 1}.json"
                    skip = [f"--skip={g}" for g in UNTIMED_GROUPS.get(name, ())] if r else []
                    cmd = [sys.executable, bench, *common, *skip, "--quiet", "--json", str(path)]
                    failures += run(cmd, env, f"{name} round {r + 1}/{rounds}, {core}") != 0
                if path.exists():
                    parts[core].append(str(path))

        results = all_results[name] = {}
        for core, env in envs.items():
            merged = out_dir / f"{name}-{core}.json"
            if rounds > 1 and parts[core]:
                print(flush=True)
                cmd = [sys.executable, bench, "--merge", *parts[core], "--json", str(merged)]
                label = f"{name}, {core}, {len(parts[core])} rounds pooled"
                failures += run(cmd, env, label) != 0
            if merged.exists():
                results[core] = json.loads(merged.read_text())
        print(flush=True)

        if len(results) == 2:
            print(compare_cores(results, name) + "\n", flush=True)

    # durability: bound by the disk and the drivers, not by the core; run once, compiled core
    durable = HERE / "bench_durable.py"
    durable_env = envs.get("cython")
    if durable_env is not None:
        path = out_dir / "bench_durable-cython.json"
        cmd = [sys.executable, str(durable), *(["--quick"] if args.quick else []), "--json", str(path)]
        failures += run(cmd, durable_env, "bench_durable, cython") != 0
        print(flush=True)
        if path.exists():
            all_results["bench_durable"] = {"cython": json.loads(path.read_text())}
    else:
        notes.append("NOTE: bench_durable skipped: it runs under the compiled core only")

    fastcore = HERE / "bench_fastcore.py"
    if fastcore.exists():
        env = child_env(args)
        cmd = [sys.executable, str(fastcore), *(["--quick"] if args.quick else [])]
        if accepts_json(fastcore, env):
            cmd += ["--json", str(out_dir / "bench_fastcore.json")]
        failures += run(cmd, env, "bench_fastcore") != 0
        print(flush=True)
    else:
        notes.append("NOTE: benches/bench_fastcore.py not present; skipped")

    print("== summary ==")
    for name, results in all_results.items():
        for core, data in results.items():
            print(summary(f"{name}, {core}", data))
    for note in notes:
        print("   " + note)
    if args.json:
        print(f"   JSON written to {out_dir}")
    elapsed = time.monotonic() - t0
    print(f"   total {elapsed:.1f} s; {failures} bench process(es) failed", flush=True)
    if tmp is not None:
        tmp.cleanup()
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
