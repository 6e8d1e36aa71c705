"""Real processes for the dashboard tests: ``stop serve`` and an offline ``stop self-improve``."""

from __future__ import annotations

import json
import queue
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import anyio

from store.sqlite import SqliteStore

REPO = Path(__file__).resolve().parents[2]
QUICKSTART = REPO / "configs" / "quickstart.json"


@dataclass
class Proc:
    """A ``stop`` subprocess whose stderr is read line by line in a thread."""

    popen: subprocess.Popen[str]
    lines: list[str] = field(default_factory=list)
    _q: queue.Queue[str | None] = field(default_factory=queue.Queue)
    _reader: threading.Thread | None = None

    def start_reader(self) -> None:
        def read() -> None:
            assert self.popen.stderr is not None
            for line in self.popen.stderr:
                self.lines.append(line)
                self._q.put(line)
            self._q.put(None)

        self._reader = threading.Thread(target=read, daemon=True)
        self._reader.start()

    def wait(self, timeout: float = 120) -> int:
        """Wait for the process to end and its stderr to be read; its exit code."""
        code = self.popen.wait(timeout)
        if self._reader is not None:
            self._reader.join(30)
        for pipe in (self.popen.stdout, self.popen.stderr):
            if pipe is not None:
                pipe.close()
        return code

    def wait_for(self, pattern: str, timeout: float = 120) -> re.Match[str]:
        """The first stderr line matching ``pattern`` (waits for it)."""
        rx = re.compile(pattern)
        for line in self.lines:
            if m := rx.search(line):
                return m
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                break
            try:
                line = self._q.get(timeout=left)
            except queue.Empty:
                break
            if line is None:
                break
            if m := rx.search(line):
                return m
        raise AssertionError(f"no line matching {pattern!r} within {timeout}s; stderr:\n{self.stderr}")

    @property
    def stderr(self) -> str:
        return "".join(self.lines)


def stop_cmd(*args: str) -> Proc:
    popen = subprocess.Popen(
        [sys.executable, "-m", "cli.main", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=REPO,
    )
    proc = Proc(popen)
    proc.start_reader()
    return proc


@dataclass
class Dashboard:
    proc: Proc
    url: str
    token: str | None

    @property
    def port(self) -> int:
        return int(self.url.rstrip("/").rsplit(":", 1)[1])

    def interrupt(self, timeout: float = 30, signum: int = signal.SIGINT) -> int:
        self.proc.popen.send_signal(signum)
        return self.proc.wait(timeout)


@contextmanager
def dashboard(store: Path, *extra: str) -> Iterator[Dashboard]:
    """``stop serve --store STORE --port 0 EXTRA...`` until the block ends (then SIGINT)."""
    proc = stop_cmd("serve", "--store", str(store), "--port", "0", *extra)
    try:
        url = proc.wait_for(r"dashboard at (http://\S+/)").group(1)
        proc.wait_for("Ctrl-C to stop")
        token = re.search(r"access token (?:\(generated\) )?(\S+)", proc.stderr)
        yield Dashboard(proc, url, token.group(1) if token else None)
    finally:
        if proc.popen.poll() is None:
            proc.popen.send_signal(signal.SIGINT)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.popen.kill()
            proc.wait(10)


def self_improve(store: Path, *extra: str) -> Proc:
    """The offline quickstart run (the built-in offline model), recording into ``store``."""
    return stop_cmd(
        "self-improve", "--store", str(store), "--config", str(QUICKSTART), "--json", "--no-progress", *extra
    )


def empty_store(path: Path) -> Path:
    """A store with its schema and no run yet (``stop serve`` opens existing stores only)."""

    async def body() -> None:
        store = await SqliteStore.open(path)
        await store.aclose()

    anyio.run(body)
    return path


def finished_run(store: Path, *extra: str) -> str:
    """Record one whole offline run; its id."""
    proc = self_improve(store, *extra)
    assert proc.popen.stdout is not None
    out = proc.popen.stdout.read()
    assert proc.wait(280) == 0, proc.stderr[-3000:]
    return str(json.loads(out)["run_id"])
