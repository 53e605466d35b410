"""A real, throwaway PostgreSQL server for the tests: the session fixture `postgres_dsn`.

The server binaries are looked for under ``/usr/lib/postgresql/*/bin`` (the
newest version wins); if there are none and we are root, the Debian package
``postgresql`` is installed with apt-get. PostgreSQL refuses to run as root,
so as root the cluster belongs to an unprivileged system user (``pgtest``,
created if missing) and every server command runs through ``runuser``.

The cluster lives in a fresh temporary directory, listens on 127.0.0.1 on a
free port (its socket in that directory too), trusts local connections, and
is stopped (``-m immediate``) and deleted at the end of the session.

Other test directories can use the fixture too: import `postgres_dsn` from
this module in their ``conftest.py`` (this module has no package imports).
"""

from __future__ import annotations

import atexit
import glob
import os
import re
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator

import pytest

USER = "pgtest"  # the unprivileged owner of the cluster when the tests run as root
DATABASE = "trio_peeper_test"


def _version(bindir: str) -> tuple[int, ...]:
    m = re.search(r"/postgresql/([\d.]+)/bin", bindir)
    return tuple(int(x) for x in m.group(1).split(".")) if m else ()


def _find_bindir() -> str | None:
    found = [os.path.dirname(p) for p in glob.glob("/usr/lib/postgresql/*/bin/postgres")]
    found = [d for d in found if os.path.exists(os.path.join(d, "initdb")) and os.path.exists(os.path.join(d, "pg_ctl"))]
    return max(found, key=_version) if found else None


def _run(cmd: list[str], *, what: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
    env.setdefault("LC_ALL", "C")
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, check=False)
    if proc.returncode != 0:
        pytest.fail(f"{what} failed ({proc.returncode}): {' '.join(cmd)}\n{proc.stdout}\n{proc.stderr}", pytrace=False)
    return proc


def _bindir() -> str:
    bindir = _find_bindir()
    if bindir is not None:
        return bindir
    if os.geteuid() != 0:
        pytest.fail(
            "no PostgreSQL server under /usr/lib/postgresql/*/bin, and not root to install it:"
            " apt-get install postgresql",
            pytrace=False,
        )
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    for cmd in (["apt-get", "update", "-qq"], ["apt-get", "install", "-y", "-qq", "--no-install-recommends", "postgresql"]):
        proc = subprocess.run(cmd, capture_output=True, text=True, env=env, check=False)
        if proc.returncode != 0:
            pytest.fail(f"{' '.join(cmd)} failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}", pytrace=False)
    bindir = _find_bindir()
    if bindir is None:
        pytest.fail("apt-get installed postgresql but no server is under /usr/lib/postgresql/*/bin", pytrace=False)
    return bindir


def _as_user() -> tuple[list[str], str | None]:
    """The command prefix that runs server commands unprivileged, and that user (None: us)."""
    if os.geteuid() != 0:
        return [], None
    if subprocess.run(["id", "-u", USER], capture_output=True, check=False).returncode != 0:
        _run(["useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin", USER], what="useradd")
    return ["runuser", "-u", USER, "--"], USER


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class PostgresServer:
    """One throwaway cluster: `start` it, read `dsn`, then `stop` it (idempotent)."""

    def __init__(self) -> None:
        self.bindir = _bindir()
        self.prefix, self.user = _as_user()
        # as root, under /tmp: the unprivileged user must be able to reach the directory
        self.tmp = tempfile.mkdtemp(prefix="trio_peeper_pg_", dir="/tmp" if self.user is not None else None)
        self.data = os.path.join(self.tmp, "data")
        self.port = 0
        self.dsn = ""
        self._running = False

    def _tool(self, name: str) -> str:
        return os.path.join(self.bindir, name)

    def start(self) -> PostgresServer:
        if self.user is not None:
            shutil.chown(self.tmp, user=self.user)
        os.chmod(self.tmp, 0o700)
        user_args = ["-U", self.user] if self.user is not None else []
        _run(
            [*self.prefix, self._tool("initdb"), "-D", self.data, "-A", "trust", "-E", "UTF8", "--locale=C",
             "--no-sync", "--no-instructions", *user_args],
            what="initdb",
        )  # fmt: skip
        log = os.path.join(self.tmp, "server.log")
        for attempt in range(3):  # a free port can be taken between the probe and the start
            self.port = _free_port()
            opts = f"-p {self.port} -k {self.tmp} -c listen_addresses=127.0.0.1 -c fsync=on"
            cmd = [*self.prefix, self._tool("pg_ctl"), "-D", self.data, "-l", log, "-o", opts, "-w", "-t", "30", "start"]
            env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
            proc = subprocess.run(cmd, capture_output=True, text=True, env=env, check=False)
            if proc.returncode == 0:
                break
            if attempt == 2:
                with open(log, errors="replace") as f:
                    tail = f.read()[-4000:]
                pytest.fail(f"pg_ctl start failed:\n{proc.stdout}\n{proc.stderr}\n{tail}", pytrace=False)
        self._running = True
        atexit.register(self.stop)
        user = self.user or _current_user()
        base = f"host=127.0.0.1 port={self.port} user={user}"
        import psycopg  # noqa: PLC0415 - the tests that use the server need it anyway

        with psycopg.connect(f"{base} dbname=postgres", autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{DATABASE}"')
        self.dsn = f"{base} dbname={DATABASE}"
        return self

    def stop(self) -> None:
        if self._running:
            self._running = False
            subprocess.run(
                [*self.prefix, self._tool("pg_ctl"), "-D", self.data, "-m", "immediate", "-w", "stop"],
                capture_output=True,
                check=False,
            )
        shutil.rmtree(self.tmp, ignore_errors=True)


def _current_user() -> str:
    import pwd  # noqa: PLC0415

    return pwd.getpwuid(os.geteuid()).pw_name


@pytest.fixture(scope="session")
def postgres_dsn() -> Iterator[str]:
    """The libpq DSN of a database on a real PostgreSQL server started for this test session."""
    server = PostgresServer()
    try:
        yield server.start().dsn
    finally:
        server.stop()
