"""The sandbox works wherever the project is: a clone under /tmp (which bubblewrap replaces by a
private tmpfs) with its own venv there runs ``stop self-improve`` to the end."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from stop_require import require

from sandbox import detect_layers

ROOT = Path(__file__).resolve().parents[2]


def test_clone_under_tmp_runs_self_improve(tmp_path: Path) -> None:
    if not detect_layers().active("bubblewrap"):
        require("sandbox", "bubblewrap is not usable here (make sandbox-deps)")
    with tempfile.TemporaryDirectory(dir="/tmp", prefix="stop-clone-") as d:
        clone = Path(d) / "x"
        subprocess.run(["git", "clone", "-q", str(ROOT), str(clone)], check=True, timeout=120)
        # The working tree as it is (the test runs on uncommitted changes too).
        shutil.copytree(
            ROOT,
            clone,
            dirs_exist_ok=True,
            symlinks=True,
            ignore=shutil.ignore_patterns(".git", ".venv", "runs", "__pycache__", "*.egg-info", ".*_cache"),
        )
        subprocess.run([sys.executable, "-m", "venv", str(clone / ".venv")], check=True, timeout=120)
        py = clone / ".venv" / "bin" / "python"
        subprocess.run([str(py), "-m", "pip", "install", "-q", "-e", str(clone)], check=True, timeout=600)
        done = subprocess.run(
            [
                str(clone / ".venv" / "bin" / "stop"),
                "self-improve",
                "--config",
                "configs/quickstart.json",
                "--store",
                str(clone / "runs" / "stop.db"),
                "--no-progress",
                "--json",
            ],
            cwd=clone,
            capture_output=True,
            text=True,
            timeout=900,
            env={k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")},
        )
        assert done.returncode == 0, done.stderr[-3000:]
        assert '"status": "finished"' in done.stdout
        assert "No such file or directory" not in done.stderr
