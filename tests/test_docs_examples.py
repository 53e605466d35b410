"""The documentation's code is tested code.

Every file in docs/examples is imported and its ``main()`` run under a
`trio.testing.MockClock` (virtual time: the examples' sleeps and timeouts take
no real time), in a fresh temporary working directory (an example may create
files there, as the demo's SQLite database), and its output is checked line
by line. Every ```python block of
README.md and docs/*.md must be preceded by a marker line
``<!-- example: docs/examples/NAME.py -->`` and be exactly that file, so the
docs can never show code that was not run here; a ```text block after
``<!-- output: docs/examples/NAME.py -->`` must be exactly what that file
prints. docs/reference.md must document every public name of ``trio_peeper``.

These are sync tests on purpose: each runs its own ``trio.run``.
"""

from __future__ import annotations

import importlib.util
import re
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
import trio
import trio.testing

import trio_peeper as tp

if TYPE_CHECKING:
    from types import ModuleType

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES_DIR = ROOT / "docs" / "examples"
EXAMPLES = sorted(EXAMPLES_DIR.glob("*.py"))
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]

# For each example: lines its output must contain, in this order (each one a
# whole line, compared without surrounding whitespace), then lines it must
# contain in any order (concurrent events).
EXPECTED: dict[str, tuple[list[str], list[str]]] = {
    "counter.py": (
        [
            "count: 2",
            "count: 2 after a restart",
        ],
        [],
    ),
    "tutorial_1_counter.py": (
        [
            "init: starting at 10",
            "started: <ServerRef 'counter' running>",
            "get -> 12",
            "handle_info: reset",
            "take -> 1",
            "get -> 0",
            "crash: ServerExited, reason ValueError(\"unknown request 'fly'\")",
            "get -> 1 (restarts: 1)",
            "statistics: 10 handled, 9 commits",
            "terminate: reason='normal', final count 1",
            "alive: False",
            "call after stop: NoProc",
        ],
        [],
    ),
    "tutorial_2_supervised.py": (
        [
            "cache: init",
            "db: init",
            "api: init",
            "cache: worker, permanent, running, restarts=0",
            "backend: supervisor, permanent, running, restarts=0",
            "db: worker, permanent, running, restarts=0",
            "api: worker, permanent, running, restarts=0",
            "api: GET /",
            # a one_for_one child restarts in its own task, before its caller runs
            "cache: restarted, continues from {'label': 'cache', 'served': 0}",
            "the caller gets ServerExited: RuntimeError('cache crashed on purpose')",
            "cache: lookup",
            # rest_for_one: api is stopped first, then db and api start again
            "api: terminate(tp.SHUTDOWN)",
            "db: restarted, continues from {'label': 'db', 'served': 0}",
            "api: restarted, continues from {'label': 'api', 'served': 1}",
            "api: GET /users",
            "api: restarted, continues from {'label': 'api', 'served': 2}",
            "cache: worker, permanent, running, restarts=1",
            "backend: supervisor, permanent, running, restarts=0",
            "db: worker, permanent, running, restarts=1",
            "api: worker, permanent, running, restarts=2",
            # reverse start order
            "api: terminate(tp.SHUTDOWN)",
            "db: terminate(tp.SHUTDOWN)",
            "cache: terminate(tp.SHUTDOWN)",
            "stopped",
        ],
        ["db: SELECT 1"],
    ),
    "tutorial_3_dynamic.py": (
        [
            "room 'lobby' opens (keeps 2 messages)",
            "welcome",
            "lobby history: ['bob: hello', 'bob: how are you?']",
            "same server: True",
            "room 'python' opens (keeps 2 messages)",
            "room 'trio' opens (keeps 2 messages)",
            "registered: [('lobby', 'chat room'), ('python', 'chat room'),"
            " ('trio', 'chat room')]",
            "a 4th room: MaxChildren (dynamic supervisor is full: max_children=3)",
            "trio room crashed: ValueError(\"unknown request ('dance',)\")",
            "trio room after the crash: welcome",
            "restarts of the trio room: 1",
            "room 'python' closes (tp.SHUTDOWN)",
            "python room registered: []",
            "room 'erlang' opens (keeps 2 messages)",
            "children: 3 active of 3; ids: [None, None, None]",
            "leaving the block: the rooms close concurrently",
            "registry entries left: 0",
        ],
        [
            "room 'lobby' closes (tp.SHUTDOWN)",
            "room 'trio' closes (tp.SHUTDOWN)",
            "room 'erlang' closes (tp.SHUTDOWN)",
        ],
    ),
    "howto_timeouts.py": (
        [
            "t=0.5s CallTimeout: call to <ServerRef Slow running> timed out after 0.5s",
            "alive after the timeout: True",
            "t=1.0s ping -> pong",
            "timeout=None waits as long as it takes: slow answer",
            "t=0.4s ann is active",
            "t=0.9s session expired, reason 'normal'",
            "t=0.5s tick 1",
            "t=1.0s tick 2",
            "t=1.5s tick 3",
            "cancel a pending timer: True; again: False",
        ],
        [],
    ),
    "howto_plain_tasks.py": (
        [
            "heartbeat: <TaskRef 'heartbeat' running>,"
            " started with 'beating every 0.1s'",
            "worker: did job 1",
            "worker: ready",
            "worker: did job 2",
            "worker restarts: 1",
            "migrate: done",
            "migrate returned: exit reason 'normal'; transient: stays stopped",
            "heartbeat: cancelled after 4 beats",
            "heartbeat: running, restarts=1",
            "worker: running, restarts=1",
            "migrate: stopped, restarts=0",
            "heartbeat: cancelled after 0 beats",
            "done",
        ],
        [],
    ),
    "howto_restarts.py": (
        [
            "1. one_for_all: one crash restarts every child",
            "writer: terminate(tp.SHUTDOWN) takes 0.0s",
            "reader: restarted (restart #1)",
            "writer: restarted (restart #1)",
            "writer restarts: 1 (a bystander of the group restart)",
            "stubborn: terminate(tp.SHUTDOWN) takes 60.0s",
            "patient: terminate(tp.SHUTDOWN) takes 0.5s",
            "all stopped after 1.5s",
            "fragile: restarted (restart #1)",
            "RestartIntensityExceeded:"
            " child 'fragile' restarted 2 times in 5s; giving up",
            "caused by: RuntimeError('fragile crashed')",
            "job: terminate(normal) takes 0.0s",
            "finished",
            "helper: terminate(tp.SHUTDOWN) takes 0.0s",
            "the supervisor shut itself down",
        ],
        [],
    ),
    "howto_testing.py": (
        [
            "passed: test_session_expires_after_an_idle_hour (10140 virtual seconds)",
            "passed: test_a_crash_is_restarted_and_the_caller_told (0 virtual seconds)",
        ],
        [],
    ),
    "tutorial_4_survival.py": (
        [
            "init: first start",
            "view / -> <h1>/</h1>",
            "view / -> <h1>/</h1> (cached)",
            "stats: {'total': 3, 'pages': {'/': {'views': 2}, '/about': {'views': 1}},"
            " 'recent': ['/about', '/']}",
            "restore: incarnation 2, total 3",
            "the caller gets ServerExited: ValueError(\"cannot render '/broken'\")",
            # the crashed call's in-place changes were rolled back
            "stats: {'total': 3, 'pages': {'/': {'views': 2}, '/about': {'views': 1}},"
            " 'recent': ['/about', '/']}",
            "restore: incarnation 3, total 3",
            # the table and its contents survived the kill
            "view /about -> <h1>/about</h1> (cached)",
            "cache: ['/', '/about'], owner <ServerRef 'views' running>",
            # the process dictionary survived, not rolled back
            "process dictionary: {'incarnation': 3, 'attempts': 5}",
            "restarts: 2, commits: 8",
            "table after the supervisor stopped: None",
        ],
        [],
    ),
    "howto_transfer.py": (
        [
            "ann: init in the old pool",
            "bob: init in the old pool",
            "moved ann (messages waiting: True)",
            "moved bob (messages waiting: True)",
            "old pool: [], new pool: ['ann', 'bob']",
            # no message lost, none reordered, no terminate, no restore
            "ann: 20 messages, in order: True, started in old",
            "bob: 20 messages, in order: True, started in old",
            "MaxChildren: dynamic supervisor is full: max_children=1",
            "the old pool is closed: ClosedResourceError",
            "new pool: ['ann', 'bob']",
            "ann: restore after a crash",
            "ann: 20 messages, in order: True, started in old",
            "ann: terminate(tp.SHUTDOWN)",
            "bob: terminate(tp.SHUTDOWN)",
            "done",
        ],
        [],
    ),
    "survival_state.py": (
        [
            "listener: ann 100 -> 70",
            "pay 30 -> 70",
            "listener: crash ValueError('ann would be overdrawn by 30');"
            " committed: ann has 70",
            "ann: Account(balance=70, history=[-30]) (a dataclass: rolled back)",
            "per day: {'monday': 1} (a defaultdict: rolled back)",
            "quota: 1 of 3 used (@tp.snapshotted: rolled back)",
            "outbox: ['receipt: ann paid 30', 'receipt: ann paid 100']"
            " (not marked: not rolled back)",
            "limits {'max': 500}, ann 70, quota used 1",
            "RuntimeError: the state of <ServerRef 'bank' running> was changed"
            " outside its callbacks; change it only in the server's own callbacks",
        ],
        [],
    ),
    "survival_diffs.py": (
        [
            "(): {'users': {'ann': {'visits': 3}}, 'total': 3, 'log': []}",
            "('total',): 4",
            "('users', 'ann', 'visits'): 4",
            "('log',): ['bob joined']",
            "('users', 'bob'): {'visits': 1}",
            "('users', 'ann'): DELETED",
            "apply(diff, before) == state: True",
            "('users',): {}",
            "rolled back: {'users': {}, 'log': ['bob joined'], 'total': 4}",
        ],
        [],
    ),
    "survival_tables.py": (
        [
            "<Table 'prices' ordered_set protected size=2>: owner loader, heir heir",
            "AccessError: only the owner may write to a protected table",
            "[('apple', 3), ('pear', 5), ('plum', 1)], owner loader",
            "heir: now owns 'prices', from <ServerRef 'loader' stopped>, None",
            "owner heir, heir None: ['apple', 'kiwi', 'pear', 'plum']",
            "shop: now owns 'prices', from <ServerRef 'heir' running>, 'a gift'",
            "owner shop, 5 items",
            "TableDeleted: table 'prices' was deleted; whereis_table: None",
            "after the crash: None",
        ],
        [],
    ),
    "demo.py": (
        [
            "[ledger] init (first start): empty ledger",
            "[seats] init (first start): {'hamlet': 2, 'macbeth': 40}",
            "[cashier] init (first start)",
            "[announcer] init (first start)",
            "[promo] init (first start)",
            "[printer] init (first start) with a fresh roll of paper",
            "buy hamlet: sold out: hamlet",
            "ledger totals: {'hamlet': 2, 'macbeth': 1}",
            # one_for_one
            "== 1. ledger crashes (a cast it cannot handle)",
            "[ledger] restore (restart #1):"
            " keeps its last state {'hamlet': 2, 'macbeth': 1}",
            "ledger restarts: 1",
            # rest_for_one: cashier is stopped, then seats and cashier come back
            "== 2. seats is killed (ref.kill(): no terminate, exit reason tp.KILLED)",
            "[cashier] terminate(tp.SHUTDOWN)",
            "[seats] restore (restart #1): keeps {'hamlet': 0, 'macbeth': 39}",
            "buy macbeth: ticket for macbeth",
            "seats restarts: 1",
            "cashier restarts: 1",
            # transient
            # a one_for_one child restarts in its own task, before its caller runs
            "[announcer] restore (restart #1)",
            "caller got ServerExited, reason ValueError('empty announcement')",
            "[announcer] announces: the show starts in 5 minutes",
            "close: doors closed",
            # temporary
            "whereis('promo'): None",
            # intensity
            "[printer] restore (restart #1): 0 printed so far",
            "jam 1: caller got ServerExited(RuntimeError('paper jam'))",
            "[printer] restore (restart #2): 0 printed so far",
            "jam 2: caller got ServerExited(RuntimeError('paper jam'))",
            "jam 3: caller got ServerExited(RuntimeError('paper jam'))",
            "[printer] init (first start) with a fresh roll of paper",
            "print: printed",
            # the final tree (which_children of every supervisor)
            "ledger           worker     permanent running  1",
            "sales            supervisor permanent running  0",
            "seats          worker     permanent running  1",
            "cashier        worker     permanent running  1",
            "announcer        worker     transient stopped  1",
            "printers         supervisor permanent running  1",
            "printer        worker     permanent running  0",
            "count_children(): 4 specs, 3 active, 2 supervisors, 2 workers",
            # orderly shutdown, reverse start order
            "[printer] terminate(tp.SHUTDOWN)",
            "[cashier] terminate(tp.SHUTDOWN)",
            "[seats] terminate(tp.SHUTDOWN)",
            "[ledger] terminate(tp.SHUTDOWN)",
            "Booth closed.",
            # durability: in .demo/booth.db under the working directory
            "stored in .demo/booth.db (delete .demo/ to start over)",
            "first run: counters start at 0",
            "3 people through: 3 in all",
            "killed and restarted: still 3",
        ],
        ["[cashier] restore (restart #1): has sold 3 tickets so far"],
    ),
    "durable_counter.py": (
        ["runs: 0 -> 1", "runs: 1 -> 2", "runs: 2 -> 3"],
        [],
    ),
    "durable_migration.py": (
        [
            "AccountV1: balance 12.5, stored with vsn 1",
            "AccountV2: balance 1500, stored with vsn 2",
            "AccountV2: balance 1501, stored with vsn 2",
            "AccountV1: VersionError: key 'account/ann' is stored with vsn 2,"
            " newer than AccountV1.vsn = 1",
        ],
        [],
    ),
    "durable_testing.py": (
        [
            "passed: test_a_failed_write_is_not_acknowledged (0 virtual seconds)",
            "passed: test_interval_writes_once_per_sync_every (61 virtual seconds)",
            "passed: test_the_conformance_kit_passes (0 virtual seconds)",
        ],
        [],
    ),
}

# Examples whose storage works in threads (SQLite). Under autojump the clock
# would jump to the next deadline (a call's timeout) whenever every task waits
# for such a thread, so they run on a MockClock that never moves by itself:
# they need no virtual time at all.
STILL_CLOCK = {"demo.py", "durable_counter.py"}


def clock_for(path: Path) -> trio.testing.MockClock:
    if path.name in STILL_CLOCK:
        return trio.testing.MockClock()
    return trio.testing.MockClock(autojump_threshold=0)


def load_example(path: Path, monkeypatch: pytest.MonkeyPatch) -> ModuleType:
    """Import *path* as a fresh module (registered while the test runs)."""
    name = f"docs_example_{path.stem}"
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, name, module)
    spec.loader.exec_module(module)
    return module


def assert_lines(out: str, ordered: list[str], unordered: list[str]) -> None:
    lines = [line.strip() for line in out.splitlines()]
    at = 0
    for want in ordered:
        try:
            at = lines.index(want, at) + 1
        except ValueError:
            pytest.fail(f"missing (in this order) {want!r}; output was:\n{out}")
    for want in unordered:
        assert want in lines, f"missing {want!r}; output was:\n{out}"


def test_examples_are_found() -> None:
    names = {path.name for path in EXAMPLES}
    assert names == set(EXPECTED), (
        "every example needs expected lines here, and vice versa"
    )


@pytest.mark.parametrize("path", EXAMPLES, ids=[path.name for path in EXAMPLES])
def test_example_runs_and_prints(
    path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    source = path.read_text(encoding="utf-8")
    assert "async def main() -> None:" in source
    assert 'if __name__ == "__main__":\n    ' in source
    assert "trio.run(main" in source
    module = load_example(path, monkeypatch)
    monkeypatch.chdir(tmp_path)
    trio.run(module.main, clock=clock_for(path))
    out = capsys.readouterr().out
    ordered, unordered = EXPECTED[path.name]
    assert_lines(out, ordered, unordered)


def test_demo_runs_in_virtual_time_fast(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """The demo is event driven: it needs no virtual time to pass at all."""
    module = load_example(EXAMPLES_DIR / "demo.py", monkeypatch)
    monkeypatch.chdir(tmp_path)
    clock = trio.testing.MockClock()  # never moves by itself
    trio.run(module.main, clock=clock)
    assert clock.current_time() == 0.0
    assert "Booth closed." in capsys.readouterr().out


def test_demo_turnstile_continues_on_the_next_run(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    module = load_example(EXAMPLES_DIR / "demo.py", monkeypatch)
    monkeypatch.chdir(tmp_path)
    trio.run(module.main, clock=trio.testing.MockClock())
    capsys.readouterr()
    trio.run(module.main, clock=trio.testing.MockClock())
    out = capsys.readouterr().out
    assert_lines(
        out,
        [
            "counters continue from 3 (run #2)",
            "3 people through: 6 in all",
            "killed and restarted: still 6",
        ],
        [],
    )
    assert "first run: counters start at 0" not in out
    assert (tmp_path / ".demo" / "booth.db").is_file()


# ------------------------------------------------------------ code in docs

MARKER = re.compile(r"^<!-- (?P<kind>example|output): (?P<path>\S+) -->$")
FENCE = re.compile(r"^```(?P<lang>\S*)\s*$")
PYTHON = ("python", "py", "python3", "pycon")


def code_blocks(text: str) -> list[tuple[int, str, str, re.Match[str] | None]]:
    """``(line number, language, content, marker or None)`` of each fenced block."""
    lines = text.split("\n")
    blocks = []
    i = 0
    while i < len(lines):
        m = FENCE.match(lines[i])
        if m is None:
            i += 1
            continue
        start = i
        marker = MARKER.match(lines[i - 1]) if i > 0 else None
        i += 1
        body = []
        while i < len(lines) and lines[i] != "```":
            body.append(lines[i])
            i += 1
        assert i < len(lines), f"unclosed code block at line {start + 1}"
        blocks.append((start + 1, m["lang"], "\n".join(body) + "\n", marker))
        i += 1
    return blocks


def example_path(doc: Path, line: int, marker: re.Match[str]) -> Path:
    path = ROOT / marker["path"]
    assert path.parent == EXAMPLES_DIR, (
        f"{doc.name}:{line}: {marker['path']} is not in docs/examples"
    )
    assert path.is_file(), f"{doc.name}:{line}: {marker['path']} does not exist"
    return path


@pytest.mark.parametrize("doc", DOCS, ids=[str(doc.relative_to(ROOT)) for doc in DOCS])
def test_python_in_docs_is_an_example_file(doc: Path) -> None:
    text = doc.read_text(encoding="utf-8")
    blocks = code_blocks(text)
    for line, lang, content, marker in blocks:
        if lang.lower() in PYTHON:
            need = (
                f"{doc.name}:{line}: a python block must follow a marker line"
                " <!-- example: docs/examples/NAME.py --> and be that file"
            )
            assert marker is not None, need
            assert marker["kind"] == "example", need
            path = example_path(doc, line, marker)
            assert content == path.read_text(encoding="utf-8"), (
                f"{doc.name}:{line}: differs from {path.name}"
            )
        elif marker is not None:
            assert marker["kind"] == "output", (
                f"{doc.name}:{line}: an example marker needs a python block"
            )
            assert lang == "text", (
                f"{doc.name}:{line}: an output marker needs a text block"
            )
            example_path(doc, line, marker)
    marked = {line for line, *_ in blocks}
    for n, raw in enumerate(text.split("\n"), 1):
        if MARKER.match(raw):
            assert n + 1 in marked, (
                f"{doc.name}:{n}: a marker must be followed by its code block"
            )


OUTPUTS = [
    (doc, line, marker["path"], content)
    for doc in DOCS
    for line, _, content, marker in code_blocks(doc.read_text(encoding="utf-8"))
    if marker is not None and marker["kind"] == "output"
]


@pytest.mark.parametrize(
    ("doc", "line", "example", "shown"),
    OUTPUTS,
    ids=[f"{doc.name}:{line}" for doc, line, _, _ in OUTPUTS],
)
def test_output_shown_in_docs_is_the_real_output(
    doc: Path,
    line: int,
    example: str,
    shown: str,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    module = load_example(ROOT / example, monkeypatch)
    monkeypatch.chdir(tmp_path)
    trio.run(module.main, clock=clock_for(ROOT / example))
    assert capsys.readouterr().out == shown, (
        f"{doc.name}:{line}: the output of {example} has changed"
    )


def test_docs_exist_and_include_their_examples() -> None:
    included = set()
    for doc in DOCS:
        for _, _, _, marker in code_blocks(doc.read_text(encoding="utf-8")):
            if marker is not None and marker["kind"] == "example":
                included.add(marker["path"])
    for name in (
        "counter.py",
        "tutorial_1_counter.py",
        "tutorial_2_supervised.py",
        "tutorial_3_dynamic.py",
        "howto_timeouts.py",
        "howto_plain_tasks.py",
        "tutorial_4_survival.py",
        "howto_transfer.py",
        "survival_state.py",
        "survival_diffs.py",
        "survival_tables.py",
        "durable_counter.py",
        "durable_migration.py",
        "durable_testing.py",
    ):
        assert f"docs/examples/{name}" in included, f"{name} is shown in no doc"


def test_reference_documents_every_public_name() -> None:
    reference = (ROOT / "docs" / "reference.md").read_text(encoding="utf-8")
    headings = set(
        re.findall(
            r"^#{2,4} `(?:tp\.)?([A-Za-z_][A-Za-z0-9_]*)", reference, re.MULTILINE
        )
    )
    public = {name for name in dir(tp) if not name.startswith("_")}
    public.add("__version__")
    missing = sorted(public - headings)
    assert not missing, f"docs/reference.md has no heading for {missing}"


def test_performance_page_has_its_figures_section() -> None:
    text = (ROOT / "docs" / "performance.md").read_text(encoding="utf-8")
    assert "## Measured figures" in text


def without_code(text: str) -> str:
    return re.sub(r"^```.*?^```$", "", text, flags=re.MULTILINE | re.DOTALL)


def anchor(heading: str) -> str:
    """GitHub's anchor for a Markdown heading."""
    text = heading.strip().lower()
    text = re.sub(r"[^\w\- ]", "", text)
    return text.replace(" ", "-")


@pytest.mark.parametrize("doc", DOCS, ids=[str(doc.relative_to(ROOT)) for doc in DOCS])
def test_relative_links_resolve(doc: Path) -> None:
    text = doc.read_text(encoding="utf-8")
    prose = without_code(text)
    for target in re.findall(r"\]\(([^)\s]+)\)", prose):
        if re.match(r"[a-z]+:", target):
            continue  # an absolute URL
        path, _, fragment = target.partition("#")
        linked = (doc.parent / path).resolve() if path else doc
        assert linked.exists(), f"{doc.name}: broken link {target}"
        if fragment:
            linked_text = without_code(linked.read_text(encoding="utf-8"))
            anchors = {anchor(h) for h in re.findall(r"^#+ (.*)$", linked_text, re.M)}
            assert fragment in anchors, f"{doc.name}: no heading for {target}"
