"""``stop report``: a self-contained HTML file that renders in a real headless Chromium."""

from __future__ import annotations

import re
from pathlib import Path

from inspect_browser import browse, rendered_counts
from inspect_cli import run_cli
from inspect_synth import C1


def test_report_renders_in_headless_chromium(synth_db: Path, tmp_path: Path, chromium: str) -> None:
    out = tmp_path / "report.html"
    assert run_cli(["report", "run-a", "--store", str(synth_db), "-o", str(out)]) == 0
    html = out.read_text()
    # self-contained: nothing is fetched at view time
    assert not re.search(r"""(src|href)\s*=\s*["']?(https?:)?//""", html)
    assert "<link" not in html and "@import" not in html
    assert C1.splitlines()[1].strip() in html  # every program is in the file

    dom = browse(chromium, tmp_path, out, "--dump-dom")
    assert dom.returncode == 0, dom.stderr[-2000:]
    # the report's own script counted the elements that laid out with a non-zero size:
    # 6 lineage nodes; 2 polylines (meta val, meta test over generations 0..2); 3 + 3 points
    # and 3 candidates
    assert rendered_counts(dom.stdout) == {"nodes": 6, "points": 9, "lines": 2}
    # the graphical tree (the same SVG as the dashboard's): one g.node per lineage node
    assert dom.stdout.count('<g class="node ') == 6
    assert dom.stdout.count('<path class="edge adopted-path"') == 1  # seed -> adopted C1

    shot = tmp_path / "shot.png"
    res = browse(chromium, tmp_path, out, f"--screenshot={shot}")
    assert res.returncode == 0 and shot.exists(), res.stderr[-2000:]
    data = shot.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 20_000
    print(f"screenshot: {shot}")
