"""A sandbox that cannot start says why in one line and what to change (exit 3); ``stop doctor``
says the same per layer. The environment is really broken here: a PATH without bwrap, an
interpreter that does not exist, one the sandbox cannot see."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tests" / "sandbox"))

from sandbox_helpers import skip_unless  # noqa: E402 - found through the path set just above

_POOL = """
import sys, anyio
from sandbox import Job, SandboxConfig, SandboxPool
async def main():
    cfg = SandboxConfig(workers=2, use_bubblewrap={bwrap}, python={python!r})
    async with SandboxPool(cfg) as pool:
        await pool.run(Job(program="def f():\\n    return 1\\n", function="f"))
try:
    anyio.run(main)
except BaseException as exc:
    print("RESULT", type(exc).__name__, getattr(exc, "exit_code", None), getattr(exc, "message", str(exc)), sep="|")
"""


def _run(args: list[str], env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        args,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "PYTHONPATH": str(ROOT), **(env or {})},
    )


def _pool_error(*, bwrap: bool | None, python: str | None, env: dict[str, str] | None = None) -> list[str]:
    done = _run([sys.executable, "-c", _POOL.format(bwrap=bwrap, python=python)], env)
    lines = [line for line in done.stdout.splitlines() if line.startswith("RESULT|")]
    assert len(lines) == 1, done.stdout + done.stderr
    return lines[0].split("|", 3)[1:]


def test_required_bubblewrap_missing_from_path(tmp_path: Path) -> None:
    skip_unless("bwrap")
    bin_dir = tmp_path / "bin"  # PATH holds everything but bwrap
    bin_dir.mkdir()
    kind, code, message = _pool_error(bwrap=True, python=None, env={"PATH": str(bin_dir)})
    assert (kind, code) == ("SandboxUnavailable", "3")
    assert "bubblewrap" in message and "apt-get install bubblewrap" in message and "\n" not in message
    doctor = _run([sys.executable, "-m", "cli.main", "doctor"], {"PATH": str(bin_dir)})
    assert "Traceback" not in doctor.stderr
    assert any(
        line.startswith("--  bubblewrap") and "apt-get install bubblewrap" in line
        for line in doctor.stdout.splitlines()
    )


@pytest.mark.parametrize("case", ["missing", "hidden"])
def test_interpreter_the_sandbox_cannot_run(tmp_path: Path, case: str) -> None:
    skip_unless("bwrap")
    if case == "missing":
        python, says = str(tmp_path / "no-such-python3"), "does not exist"
    else:  # a real interpreter, but under /tmp, which is private inside the sandbox
        python, says = str(tmp_path / "python3"), "not reachable inside the sandbox"
        os.symlink(sys.executable, python)
        assert str(tmp_path).startswith("/tmp/")
    kind, code, message = _pool_error(bwrap=True, python=python)
    assert (kind, code) == ("SandboxUnavailable", "3")  # one error, not a group of one per worker
    assert python in message and says in message and "\n" not in message

    doctor = _run([sys.executable, "-m", "cli.main", "doctor", "--python", python])
    assert doctor.returncode == 3, doctor.stdout + doctor.stderr
    assert "Traceback" not in doctor.stderr
    start = [line for line in doctor.stdout.splitlines() if line.startswith("--  start")]
    assert len(start) == 1 and says in start[0] and python in start[0]
    assert f"sandbox: NOT usable: {message}" in doctor.stdout

    healthy = _run([sys.executable, "-m", "cli.main", "doctor"])
    assert healthy.returncode == 0 and "ok  start" in healthy.stdout, healthy.stdout + healthy.stderr
