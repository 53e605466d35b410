"""Shared machinery of the benches: interleaved medians, versions, the result table.

Why interleaved medians: on a small shared machine the speed drifts (turbo,
other tenants, the garbage collector). Every run of a measurement times all
of its variants one after the other, in an order that rotates and reverses
from run to run, so drift hits every variant alike; the figure reported is
the median over the runs (robust to the odd slow run), and ratios are taken
between figures of the same process. The raw per-run samples go to JSON.

A variant is ``async def variant(n: int) -> int``: it performs ``n``
operations and returns their total cost (nanoseconds from
`time.perf_counter_ns`, or bytes for memory), timing only what it measures:
set-up and draining stay outside its clock. Its figure is cost / n.

Nothing here asserts on time: a missed target is reported, never raised.
"""

from __future__ import annotations

import argparse
import gc
import json
import math
import os
import platform
import statistics
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

Variant = Callable[[int], Awaitable[int]]
Medians = Callable[[str], float]  # variant name -> median figure, within one group

_SRC = Path(__file__).resolve().parent.parent / "src"


def ensure_importable() -> None:
    """Make ``trio_peeper`` importable when a bench is run from a bare checkout."""
    try:
        import trio_peeper  # noqa: F401, PLC0415
    except ImportError:
        sys.path.insert(0, str(_SRC))


# ----------------------------------------------------------------- config


@dataclass
class Config:
    """What the command line asked for."""

    quick: bool
    json_path: str | None
    runs: int
    only: list[str] = field(default_factory=list)
    skip: list[str] = field(default_factory=list)
    merge: list[str] = field(default_factory=list)
    quiet: bool = False

    def iters(self, full: int, quick: int) -> int:
        """Operations per run: *full* normally, *quick* under ``--quick``."""
        return quick if self.quick else full


def parse_args(description: str, argv: Sequence[str] | None = None) -> Config:
    """The options every bench accepts (see `main`)."""
    p = argparse.ArgumentParser(description=description)
    p.add_argument("--quick", action="store_true", help="few iterations: a smoke run")
    p.add_argument("--json", metavar="PATH", help="also write the results as JSON to PATH")
    p.add_argument("--runs", type=int, help="runs per variant (median taken); default 31, quick 5")
    p.add_argument(
        "--only", action="append", default=[], metavar="GROUP", help="only this group (repeatable)"
    )
    p.add_argument(
        "--skip", action="append", default=[], metavar="GROUP", help="skip this group (repeatable)"
    )
    p.add_argument(
        "--merge",
        nargs="+",
        default=[],
        metavar="JSON",
        help="measure nothing: rebuild the table from the samples in these JSON files",
    )
    p.add_argument("--quiet", action="store_true", help="do not print the table")
    a = p.parse_args(argv)
    runs = a.runs if a.runs else (5 if a.quick else 31)
    return Config(
        quick=a.quick,
        json_path=a.json,
        runs=max(1, runs),
        only=a.only,
        skip=a.skip,
        merge=a.merge,
        quiet=a.quiet,
    )


# --------------------------------------------------------------- versions



def measure_sync(benches: Mapping[str, Callable[[int], float]], n: int, runs: int) -> dict[str, float]:
    """Median of *runs* interleaved runs of each sync micro-bench (``bench(n)`` returns its figure)."""
    samples: dict[str, list[float]] = {name: [] for name in benches}
    for _ in range(runs):
        for name, bench in benches.items():  # interleaved: drift hits every variant alike
            samples[name].append(bench(n))
    return {name: statistics.median(values) for name, values in samples.items()}

def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _commit() -> str:
    try:
        out = subprocess.run(
            ["git", "-C", str(_SRC), "describe", "--always", "--dirty"],
            capture_output=True,
            text=True,
            timeout=5,
            check=False,
        )
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return out.stdout.strip() or "unknown"


def versions() -> dict[str, Any]:
    """Everything a figure depends on: interpreter, libraries, core, machine, its load."""
    import trio  # noqa: PLC0415

    import _fastcore  # noqa: PLC0415
    import trio_peeper  # noqa: PLC0415

    return {
        "python": f"{platform.python_implementation()} {platform.python_version()}",
        "trio": trio.__version__,
        "trio_peeper": trio_peeper.__version__,
        "fastcore": _fastcore.IMPLEMENTATION,
        "TRIO_PEEPER_FASTCORE": os.environ.get("TRIO_PEEPER_FASTCORE", "auto"),
        "machine": f"{platform.machine()}, {_cpu_model()}, {os.cpu_count()} CPUs",
        "platform": platform.platform(),
        "commit": _commit(),
        "loadavg_1min": round(os.getloadavg()[0], 2) if hasattr(os, "getloadavg") else None,
    }


# ------------------------------------------------------------ measuring


@dataclass
class Stat:
    """Per-operation figures of one variant over the runs."""

    name: str
    samples: list[float]  # cost per operation, one per run (ns or bytes)

    @property
    def median(self) -> float:
        return statistics.median(self.samples)

    @property
    def spread(self) -> float:
        """Interquartile range relative to the median (0.05 = 5 %)."""
        if len(self.samples) < 4:
            return (max(self.samples) - min(self.samples)) / self.median if self.median else 0.0
        q = statistics.quantiles(self.samples, n=4)
        return (q[2] - q[0]) / self.median if self.median else 0.0


class Recorder:
    """Collects the stats and result rows of one bench process."""

    def __init__(self, title: str, cfg: Config) -> None:
        self.title = title
        self.cfg = cfg
        self.stats: dict[str, Stat] = {}
        self.rows: list[Row] = []
        self.params: dict[str, Any] = {}  # {group: {"n", "runs", "warmup", "seconds"}}
        self.versions = versions()

    def load(self, paths: Sequence[str]) -> None:
        """Pool the samples of earlier runs (same bench, same core) to rebuild the table."""
        for i, path in enumerate(paths):
            data = json.loads(Path(path).read_text())
            v = data["versions"]
            if i == 0:
                self.versions = v
            elif v["fastcore"] != self.versions["fastcore"]:
                msg = f"{path}: core {v['fastcore']} differs from {self.versions['fastcore']}"
                raise SystemExit(msg)
            self.cfg.quick = data["mode"] == "quick"
            for key, st in data["stats"].items():
                self.stats.setdefault(key, Stat(key, [])).samples.extend(st["samples"])
            for group, p in data["params"].items():
                mine = self.params.setdefault(group, {**p, "runs": 0, "seconds": 0.0})
                mine["runs"] += p["runs"]
                mine["seconds"] += p.get("seconds", 0.0)

    def medians(self, group: str) -> Medians:
        """``m(variant)``: the median per-operation figure of *variant* in *group*."""

        def m(variant: str) -> float:
            return self.stats[f"{group}: {variant}"].median

        return m

    async def measure(
        self,
        group: str,
        variants: Mapping[str, Variant],
        n: int,
        *,
        runs: int | None = None,
        warmup: int | None = None,
    ) -> dict[str, Stat]:
        """Median per-operation cost of each variant over interleaved runs.

        Every variant first runs once with *warmup* operations (discarded).
        Run ``r`` then times every variant with *n* operations, in an order
        rotated by ``r`` and reversed on odd runs; the collector runs between
        batches, never inside one.
        """
        runs = self.cfg.runs if runs is None else runs
        warmup = max(1, n // 10) if warmup is None else warmup
        names = list(variants)
        for name in names:
            gc.collect()
            await variants[name](warmup)
        samples: dict[str, list[float]] = {name: [] for name in names}
        for r in range(runs):
            k = r % len(names)
            order = names[k:] + names[:k]
            if r % 2:
                order.reverse()
            for name in order:
                gc.collect()
                cost = await variants[name](n)
                samples[name].append(cost / n)
        out = {name: Stat(name, s) for name, s in samples.items()}
        for name, st in out.items():
            self.stats[f"{group}: {name}"] = st
        self.params.setdefault(group, {}).update(n=n, runs=runs, warmup=warmup)
        return out

    def add(self, row: Row) -> None:
        self.rows.append(row)

    # ---------------------------------------------------------- output

    def table(self) -> str:
        v = self.versions
        runs = ", ".join(f"{g} {p['runs']}" for g, p in self.params.items())
        head = [
            f"== {self.title} ({'quick' if self.cfg.quick else 'full'}; "
            f"medians of interleaved runs: {runs}) ==",
            f"   python {v['python']} | trio {v['trio']} | trio_peeper {v['trio_peeper']} | "
            f"_fastcore {v['fastcore']} (TRIO_PEEPER_FASTCORE={v['TRIO_PEEPER_FASTCORE']})",
            f"   {v['machine']} | {v['platform']} | commit {v.get('commit')} | "
            f"load {v.get('loadavg_1min')} at start",
        ]
        return "\n".join(head) + "\n" + format_rows(self.rows)

    def to_json(self) -> dict[str, Any]:
        return {
            "bench": self.title,
            "mode": "quick" if self.cfg.quick else "full",
            "versions": self.versions,
            "params": self.params,
            "rows": [r.to_json() for r in self.rows],
            "stats": {
                k: {"median": s.median, "iqr_rel": s.spread, "samples": s.samples}
                for k, s in self.stats.items()
            },
        }

    def finish(self) -> None:
        """Print the table (unless ``--quiet``); write JSON when asked."""
        if not self.cfg.quiet:
            print(self.table(), flush=True)
        if self.cfg.json_path:
            path = Path(self.cfg.json_path)
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(json.dumps(self.to_json(), indent=1, ensure_ascii=False) + "\n")


def now_ns() -> int:
    """The clock of every bench."""
    return time.perf_counter_ns()


# ----------------------------------------------------------------- rows

# units: a figure is kept in base units and formatted by its unit
TIME = "time"  # ns per op, shown in µs
RATE = "rate"  # ops per second, shown in M/s or k/s
BYTES = "bytes"  # bytes, shown in B or kB


def fmt(value: float | None, unit: str) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "—"
    if unit == TIME:
        us = value / 1000
        return f"{us:.2f} µs" if abs(us) < 100 else f"{us:.0f} µs"
    if unit == RATE:
        return f"{value / 1e6:.2f} M/s" if value >= 1e6 else f"{value / 1e3:.0f} k/s"
    if unit == BYTES:
        return f"{value:.0f} B" if value < 10_000 else f"{value / 1000:.1f} kB"
    return f"{value:.3g}"


@dataclass
class Target:
    """A target from DESIGN.md: on the ratio to the reference, or on our absolute figure.

    ``kind``: ``"ratio<="`` (ours / reference), ``"<="`` or ``">="`` (ours, in base units).
    """

    kind: str
    value: float
    text: str

    def meets(self, ours: float, ratio: float | None) -> bool | None:
        if self.kind == "ratio<=":
            return None if ratio is None else ratio <= self.value
        if self.kind == "<=":
            return ours <= self.value
        if self.kind == ">=":
            return ours >= self.value
        raise ValueError(self.kind)


def ratio_at_most(x: float) -> Target:
    return Target("ratio<=", x, f"≤ {x:.2f} ×")


def at_most(x: float, unit: str, text: str | None = None) -> Target:
    return Target("<=", x, text or "≤ " + fmt(x, unit))


def at_least(x: float, unit: str, text: str | None = None) -> Target:
    return Target(">=", x, text or "≥ " + fmt(x, unit))


@dataclass
class Row:
    """One line of the table: our figure against a reference from the same run."""

    what: str
    ours: float
    unit: str
    ref_name: str | None = None
    ref: float | None = None
    target: Target | None = None
    note: str = ""

    @property
    def ratio(self) -> float | None:
        """ours / reference (for rates, > 1 means we are faster)."""
        if self.ref is None or not self.ref:
            return None
        return self.ours / self.ref

    @property
    def meets(self) -> bool | None:
        return None if self.target is None else self.target.meets(self.ours, self.ratio)

    def cells(self) -> list[str]:
        ref = "—" if self.ref_name is None else f"{self.ref_name}: {fmt(self.ref, self.unit)}"
        ratio = "—" if self.ratio is None else f"{self.ratio:.2f} ×"
        meets = {None: "—", True: "yes", False: "NO"}[self.meets]
        return [
            self.what,
            fmt(self.ours, self.unit),
            ref,
            ratio,
            "—" if self.target is None else self.target.text,
            meets,
        ]

    def to_json(self) -> dict[str, Any]:
        d = asdict(self)
        d["ratio"] = self.ratio
        d["meets"] = self.meets
        d["target"] = None if self.target is None else self.target.text
        return d


HEADER = ["what", "ours", "reference (same run)", "ratio", "target", "meets?"]


def format_table(header: list[str], lines: list[list[str]], notes: Sequence[str] = ()) -> str:
    widths = [max(len(r[i]) for r in [header, *lines]) for i in range(len(header))]
    right = {1, 3} if header is HEADER else set(range(1, len(header)))

    def line(cells: list[str]) -> str:
        parts = [
            c.rjust(w) if i in right else c.ljust(w)
            for i, (c, w) in enumerate(zip(cells, widths))
        ]
        return "  ".join(parts).rstrip()

    out = [line(header), line(["-" * w for w in widths])]
    out += [line(c) for c in lines]
    out += [f"  * {n}" for n in notes]
    return "\n".join(out)


def format_rows(rows: list[Row]) -> str:
    notes: list[str] = []
    lines = []
    for r in rows:
        cells = r.cells()
        if r.note:
            notes.append(f"{r.what}: {r.note}")
            cells[0] += " *"
        lines.append(cells)
    return format_table(HEADER, lines, notes)


def rate(stat_ns: float) -> float:
    """Operations per second from a per-operation time in ns."""
    return 1e9 / stat_ns if stat_ns > 0 else math.inf


# ----------------------------------------------------------------- main


@dataclass
class Group:
    """One measurement: ``measure(rec)`` runs in its own ``trio.run``; ``rows(m)`` judges it.

    Keeping the two apart lets ``--merge`` rebuild the rows from pooled samples.
    """

    measure: Callable[[Recorder], Awaitable[None]]
    rows: Callable[[Medians], list[Row]]


def main(
    title: str,
    doc: str | None,
    groups: Mapping[str, Group],
    run: Callable[[Callable[[Recorder], Awaitable[None]], Recorder], object],
) -> None:
    """Command line of a bench: measure the groups (or ``--merge``), print, write JSON.

    *run* is ``trio.run``: each group gets a fresh run (fresh runtime, real clock).
    """
    cfg = parse_args((doc or title).strip().splitlines()[0])
    unknown = [g for g in cfg.only + cfg.skip if g not in groups]
    if unknown:
        raise SystemExit(f"unknown group(s) {unknown}; expected some of {list(groups)}")
    rec = Recorder(title, cfg)
    if cfg.merge:
        rec.load(cfg.merge)
    else:
        for name, group in groups.items():
            if (cfg.only and name not in cfg.only) or name in cfg.skip:
                continue
            t0 = time.monotonic()
            run(group.measure, rec)
            rec.params[name]["seconds"] = round(time.monotonic() - t0, 2)
    for name, group in groups.items():
        if name in rec.params:
            rec.rows += group.rows(rec.medians(name))
    rec.finish()
