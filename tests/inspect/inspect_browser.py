"""Headless Chromium for the report tests (Debian package ``chromium``, installed if missing)."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

_NAMES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")


def find_chromium() -> str | None:
    for name in _NAMES:
        found = shutil.which(name)
        if found:
            return found
    return None


def install_chromium() -> str | None:
    """``apt-get install chromium`` when we are root on Debian; the binary, or None."""
    found = find_chromium()
    if found is None and shutil.which("apt-get") and os.geteuid() == 0:
        env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
        subprocess.run(["apt-get", "update", "-qq"], env=env, capture_output=True, timeout=240)
        subprocess.run(["apt-get", "install", "-y", "-qq", "chromium"], env=env, capture_output=True, timeout=280)
        found = find_chromium()
    return found


def browse(chromium: str, tmp: Path, html: Path, mode: str) -> subprocess.CompletedProcess[str]:
    """Run headless Chromium on a local file: ``mode`` is ``--dump-dom`` or ``--screenshot=PATH``."""
    profile = tmp / f"chromium-profile-{abs(hash(mode)) % 10_000}"
    cmd = [
        chromium,
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--no-first-run",
        "--disable-extensions",
        f"--user-data-dir={profile}",
        "--window-size=1200,1600",
        mode,
        html.resolve().as_uri(),
    ]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=180, cwd=tmp)


def rendered_counts(dom: str) -> dict[str, int]:
    """The counts the report's own script put on <html> after layout (data-rendered-*)."""
    root = re.search(r"<html[^>]*>", dom)
    assert root is not None, dom[:500]
    return {k: int(v) for k, v in re.findall(r'data-rendered-(\w+)="(\d+)"', root.group(0))}
