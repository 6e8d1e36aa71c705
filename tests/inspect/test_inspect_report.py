"""``stop report``: a self-contained HTML file that renders in a real headless Chromium."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest
from inspect_cli import run_cli
from inspect_synth import C1

_CHROMIUM_NAMES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")


def _chromium() -> str | None:
    for name in _CHROMIUM_NAMES:
        found = shutil.which(name)
        if found:
            return found
    return None


@pytest.fixture(scope="module")
def chromium() -> str:
    """The Chromium binary; installed with apt (Debian package ``chromium``) when missing."""
    found = _chromium()
    if found is None and shutil.which("apt-get") and os.geteuid() == 0:
        env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
        subprocess.run(["apt-get", "update", "-qq"], env=env, capture_output=True, timeout=240)
        subprocess.run(["apt-get", "install", "-y", "-qq", "chromium"], env=env, capture_output=True, timeout=280)
        found = _chromium()
    if found is None:
        pytest.skip("no Chromium and apt-get could not install the Debian package 'chromium'")
    return found


def _browse(chromium: str, tmp: Path, html: Path, mode: str) -> subprocess.CompletedProcess[str]:
    profile = tmp / f"profile-{mode.strip('-')[:6]}"
    cmd = [
        chromium, "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-extensions",
        f"--user-data-dir={profile}", "--window-size=1200,1600", mode, html.resolve().as_uri(),
    ]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=180, cwd=tmp)


def test_report_renders_in_headless_chromium(synth_db: Path, tmp_path: Path, chromium: str) -> None:
    out = tmp_path / "report.html"
    assert run_cli(["report", "run-a", "--store", str(synth_db), "-o", str(out)]) == 0
    html = out.read_text()
    # self-contained: nothing is fetched at view time
    assert not re.search(r"""(src|href)\s*=\s*["']?(https?:)?//""", html)
    assert "<link" not in html and "@import" not in html
    assert C1.splitlines()[1].strip() in html  # every program is in the file

    dom = _browse(chromium, tmp_path, out, "--dump-dom")
    assert dom.returncode == 0, dom.stderr[-2000:]
    root = re.search(r"<html[^>]*>", dom.stdout)
    assert root is not None, dom.stdout[:500]
    attrs = dict(re.findall(r'data-rendered-(\w+)="(\d+)"', root.group(0)))
    # the report's own script counted the elements that laid out with a non-zero size
    assert attrs == {"nodes": "6", "points": "7", "lines": "2"}, root.group(0)
    assert dom.stdout.count('class="node"') == 6

    shot = tmp_path / "shot.png"
    res = _browse(chromium, tmp_path, out, f"--screenshot={shot}")
    assert res.returncode == 0 and shot.exists(), res.stderr[-2000:]
    data = shot.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 20_000
    print(f"screenshot: {shot}")
