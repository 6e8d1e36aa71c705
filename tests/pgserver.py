"""A real PostgreSQL server for the tests: Debian's binaries, a temporary cluster, 127.0.0.1.

One server per test session (``pg_server``), started on first use and stopped at the end. It
runs as an unprivileged user (``nobody`` when the tests run as root, as in CI), listens on a
free TCP port on 127.0.0.1 only, and asks for a password (scram) that the tests pass through
``PGPASSWORD`` — the way a user is told to — so a URL never holds it. Each store gets its own
schema (``?search_path=``), which is much cheaper than a database per test.

Without the binaries (``make pg-deps`` installs Debian's ``postgresql``) the tests that
need the server skip, or fail when ``STOP_REQUIRE`` names ``postgres`` (CI).
"""

from __future__ import annotations

import glob
import itertools
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from stop_require import require

__all__ = ("PgServer", "pg_bindir", "pg_server", "start_server")

USER = "stop"
PASSWORD = "stop-test-pw"
_schemas = itertools.count()


def pg_bindir() -> Path | None:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/pg_ctl"), key=lambda p: int(p.split("/")[4]))
    return Path(found[-1]).parent if found else None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class PgServer:
    def __init__(self, bindir: Path, root: Path, port: int, as_user: str | None, *, durable: bool) -> None:
        self.bindir = bindir
        self.root = root
        self.data = root / "data"
        self.port = port
        self.as_user = as_user
        self.durable = durable

    @property
    def url(self) -> str:
        return f"postgresql://{USER}@127.0.0.1:{self.port}/{USER}"

    def env(self) -> dict[str, str]:
        """The environment a client process needs (the password, as a user would set it)."""
        return {**os.environ, "PGPASSWORD": PASSWORD}

    def _run(self, *cmd: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        argv = list(cmd)
        if self.as_user is not None:
            argv = ["runuser", "-u", self.as_user, "--", *argv]
        return subprocess.run(argv, capture_output=True, text=True, check=check, cwd=self.root, timeout=120)

    def start(self) -> None:
        pwfile = self.root / "pw"
        pwfile.write_text(PASSWORD + "\n")
        self._chown(self.root)
        self._chown(pwfile)
        self._run(
            str(self.bindir / "initdb"),
            "-D",
            str(self.data),
            "-U",
            USER,
            "--pwfile",
            str(pwfile),
            "--auth-host=scram-sha-256",
            "--auth-local=scram-sha-256",
            "-E",
            "UTF8",
            "--no-sync",
        )
        opts = f"-c listen_addresses=127.0.0.1 -c port={self.port} -c unix_socket_directories='' -c max_connections=200"
        if not self.durable:
            opts += " -c fsync=off -c synchronous_commit=off -c full_page_writes=off"
        done = self._run(
            str(self.bindir / "pg_ctl"), "-D", str(self.data), "-l", str(self.root / "log"), "-o", opts, "-w", "start"
        )
        if done.returncode != 0:  # pragma: no cover - reported through require()
            raise RuntimeError(done.stderr)
        psql = [str(self.bindir / "psql"), "-h", "127.0.0.1", "-p", str(self.port), "-U", USER, "-d", "postgres"]
        subprocess.run(
            [*psql, "-v", "ON_ERROR_STOP=1", "-q", "-c", f"CREATE DATABASE {USER}"],
            capture_output=True,
            text=True,
            check=True,
            env=self.env(),
            timeout=60,
        )

    def stop(self) -> None:
        self._run(str(self.bindir / "pg_ctl"), "-D", str(self.data), "-m", "immediate", "-w", "stop", check=False)

    def _chown(self, path: Path) -> None:
        if self.as_user is not None:
            pw = pwd.getpwnam(self.as_user)
            os.chown(path, pw.pw_uid, pw.pw_gid)

    def log_tail(self) -> str:
        try:
            return (self.root / "log").read_text()[-2000:]
        except OSError:
            return ""

    async def fresh_url(self) -> str:
        """A URL of a new, empty schema (one store) on this server."""
        import asyncpg

        name = f"t{os.getpid()}_{next(_schemas)}"
        conn = await asyncpg.connect(self.url, password=PASSWORD)
        try:
            await conn.execute(f"CREATE SCHEMA {name}")
        finally:
            await conn.close()
        # sslmode=disable: the test server has no TLS (asyncpg's default "prefer" would try it).
        return f"{self.url}?search_path={name}&sslmode=disable"


def start_server(*, durable: bool = False) -> PgServer:
    """Start a server (raises with the reason when this machine cannot)."""
    bindir = pg_bindir()
    if bindir is None:
        raise RuntimeError("PostgreSQL is not installed (no /usr/lib/postgresql/*/bin; `make pg-deps` installs it)")
    as_user = "nobody" if os.geteuid() == 0 else None
    if as_user is not None and shutil.which("runuser") is None:
        raise RuntimeError("running as root and runuser is missing: cannot start PostgreSQL unprivileged")
    # /tmp when root: the unprivileged server must be able to reach its directory.
    root = Path(tempfile.mkdtemp(prefix="stop-pg-", dir="/tmp" if as_user is not None else None))
    server = PgServer(bindir, root, _free_port(), as_user, durable=durable)
    try:
        server.start()
    except (OSError, subprocess.SubprocessError, RuntimeError) as e:
        detail = e.stderr if isinstance(e, subprocess.CalledProcessError) else str(e)
        shutil.rmtree(root, ignore_errors=True)
        raise RuntimeError(f"PostgreSQL did not start: {detail}\n{server.log_tail()}") from e
    return server


@pytest.fixture(scope="session")
def pg_server() -> Iterator[PgServer]:
    try:
        server = start_server()
    except RuntimeError as e:
        require("postgres", str(e))
        raise  # pragma: no cover - require() fails or skips
    old = os.environ.get("PGPASSWORD")
    os.environ["PGPASSWORD"] = PASSWORD  # as a user sets it; stores opened in-process read it
    try:
        yield server
    finally:
        if old is None:
            os.environ.pop("PGPASSWORD", None)
        else:
            os.environ["PGPASSWORD"] = old
        server.stop()
        shutil.rmtree(server.root, ignore_errors=True)
