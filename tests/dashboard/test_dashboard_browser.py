"""The live dashboard in a real headless Chromium (DevTools protocol) while a real offline run
appends to the store: the runs list gains the run, the run page's lineage tree gains nodes and
its plot gains points without a reload, a node page shows a diff, a screenshot is not blank,
and every request the pages made went to the dashboard itself."""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

import anyio
import numpy as np
import pytest
from dash_cdp import Page, browser_page, chromium_process
from dash_procs import dashboard, empty_store, self_improve
from matplotlib import image as mpimg

from cli.main import main as stop_main

NODES = "document.querySelectorAll('#lineage-tree g.node').length"
POINTS = "document.querySelectorAll('#plot svg circle.pt').length"
STATUS = "(document.getElementById('run-status')||{}).textContent"


async def _until(page: Page, expression: str, *, within: float, every: float = 0.25) -> Any:
    with anyio.fail_after(within):
        while True:
            value = await page.eval(expression)
            if value:
                return value
            await anyio.sleep(every)


def _not_blank(png: bytes, path: Path) -> None:
    path.write_bytes(png)
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    pixels = mpimg.imread(io.BytesIO(png), format="png")[..., :3]
    colours = np.unique((pixels * 255).astype(np.uint8).reshape(-1, 3), axis=0)
    assert pixels.std() > 0.05 and len(colours) > 50, (pixels.std(), len(colours))


def test_run_page_updates_live_without_reload(
    tmp_path: Path, chromium: str, capsys: pytest.CaptureFixture[str]
) -> None:
    store = empty_store(tmp_path / "stop.db")
    samples: list[tuple[int, int, str]] = []
    with dashboard(store) as dash, chromium_process(chromium, tmp_path / "profile") as ws_url:
        origin = dash.url.rstrip("/")
        run: dict[str, Any] = {}

        async def body() -> None:
            ws, page = await browser_page(ws_url)
            async with ws:
                # the runs list, open before the run starts, gains the run as it is recorded
                await page.navigate(dash.url)
                assert await page.eval("document.querySelectorAll('tr[data-run]').length") == 0
                run["proc"] = proc = self_improve(store, "--generations", "4")
                run_id = proc.wait_for(r"stop: run (\S+) \(store").group(1)
                await _until(page, f"document.querySelector('tr[data-run=\"{run_id}\"]') !== null", within=60)
                assert await page.eval("performance.getEntriesByType('navigation').length") == 1

                # the run page, while the run goes on
                await page.navigate(f"{dash.url}run/{run_id}")
                await page.eval("window.__marker = 'set at load'; 1")
                first = (await page.eval(NODES), await page.eval(POINTS), await page.eval(STATUS))
                samples.append(first)
                assert first[2] != "finished", "the run ended before the page loaded: nothing to watch"
                with anyio.fail_after(240):
                    while True:
                        sample = (await page.eval(NODES), await page.eval(POINTS), await page.eval(STATUS))
                        if sample != samples[-1]:
                            samples.append(sample)
                        if proc.popen.poll() is not None and sample[2] == "finished":
                            break
                        await anyio.sleep(0.2)
                assert proc.wait() == 0, proc.stderr[-2000:]
                # same document all along: the marker survived, one navigation, updates applied
                assert await page.eval("window.__marker") == "set at load"
                assert await page.eval("performance.getEntriesByType('navigation').length") == 1
                assert await page.eval("window.__stopDashboard.updates") > 0
                run["id"] = run_id
                run["final"] = (await page.eval(NODES), await page.eval(POINTS))
                run["rendered"] = await page.eval("document.documentElement.dataset.renderedNodes")
                _not_blank(await page.screenshot(), tmp_path / "run-page.png")

                # a node page shows the node's diff against its parent
                href = await page.eval(
                    "document.querySelector('#lineage-tree g.node.status-adopted a').getAttribute('href')"
                )
                await page.navigate(origin + href)
                assert await page.eval("document.querySelectorAll('#node-diff .add, #node-diff .del').length") > 0
                assert "def improve_algorithm" in await page.eval("document.getElementById('node-program').textContent")
                _not_blank(await page.screenshot(), tmp_path / "node-page.png")
                run["urls"] = list(page.urls)

        try:
            anyio.run(body)
        finally:
            proc = run.get("proc")
            if proc is not None and proc.popen.poll() is None:
                proc.popen.kill()
                proc.wait(30)

    # the tree gained nodes and the plot gained points while the page stayed loaded
    (n0, p0, _), (n1, p1) = samples[0], run["final"]
    assert n1 > n0 and p1 > p0, samples
    assert len(samples) >= 3, samples  # it moved more than once
    capsys.readouterr()
    stop_main(["--log-format", "json", "lineage", run["id"], "--store", str(store), "--json"])
    lineage = json.loads(capsys.readouterr().out)
    assert n1 == len(lineage["nodes"]) == int(run["rendered"])  # the live page ends at the truth
    # no page loaded anything from anywhere but the dashboard
    assert run["urls"] and all(u.startswith(origin + "/") for u in run["urls"]), run["urls"]
    assert any("/events?run=" in u for u in run["urls"]) and any("/fragments?names=" in u for u in run["urls"])
    print(f"screenshots: {tmp_path / 'run-page.png'} {tmp_path / 'node-page.png'}; samples {samples}")
