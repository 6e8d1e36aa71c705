"""``stop serve`` over plain HTTP: the token gate, SSE resume by Last-Event-ID, the pages, the
diff page against ``stop diff``, read-only, and Ctrl-C. A real server on 127.0.0.1 (a free port)
against a store holding two finished offline runs."""

from __future__ import annotations

import hashlib
import json
import re
import signal
import socket
import sqlite3
from pathlib import Path
from typing import Any

import httpx
import pytest
from dash_procs import dashboard, empty_store, stop_cmd
from markupsafe import escape

from cli.main import main as stop_main


def _events(store: Path, run_id: str) -> list[tuple[str, str]]:
    conn = sqlite3.connect(store)
    try:
        return list(conn.execute("SELECT id, type FROM events WHERE run_id = ? ORDER BY seq", (run_id,)))
    finally:
        conn.close()


def _sse(client: httpx.Client, url: str, count: int, headers: dict[str, str] | None = None) -> list[dict[str, Any]]:
    """The first ``count`` messages of an event stream (id, event, data), then hang up."""
    out: list[dict[str, Any]] = []
    msg: dict[str, Any] = {}
    with client.stream("GET", url, headers=headers or {}, timeout=30) as resp:
        assert resp.status_code == 200, resp.read()
        assert resp.headers["content-type"].startswith("text/event-stream")
        for line in resp.iter_lines():
            if not line:
                if "id" in msg:
                    out.append(msg)
                msg = {}
                if len(out) >= count:
                    break
                continue
            key, _, value = line.partition(":")
            msg[key] = value.strip()
    return out


def _stop_json(*argv: str, capsys: pytest.CaptureFixture[str]) -> Any:
    capsys.readouterr()
    stop_main(["--log-format", "json", *argv])
    return json.loads(capsys.readouterr().out)


def test_token_required_beyond_loopback(two_runs: tuple[Path, str, str]) -> None:
    store, a, b = two_runs
    with dashboard(store, "--host", "0.0.0.0") as dash:
        assert dash.token, dash.proc.stderr  # generated and printed
        assert "reachable beyond this machine" in dash.proc.stderr
        base = f"http://127.0.0.1:{dash.port}"
        routes = ["/", f"/run/{a}", f"/run/{a}/fragments?names=tree", f"/diff/{a}/{b}", "/static/app.js"]
        with httpx.Client(base_url=base, follow_redirects=False, timeout=30) as c:
            for path in [*routes, f"/events?run={a}"]:
                r = c.get(path)
                assert r.status_code == 401, (path, r.status_code)
                assert 'name="token"' in r.text  # the page asks for it
                assert "content-security-policy" in r.headers
            assert c.get("/", headers={"Authorization": "Bearer not-the-token"}).status_code == 401
            assert c.get("/?token=not-the-token").status_code == 403
            # the form's answer: a cookie for this port, and the token gone from the address
            r = c.get(f"/login?token={dash.token}&next=/run/{a}")
            assert r.status_code == 303 and r.headers["location"] == f"/run/{a}"
            assert f"stop_token_{dash.port}=" in r.headers["set-cookie"] and "HttpOnly" in r.headers["set-cookie"]
        with httpx.Client(base_url=base, follow_redirects=True, timeout=30) as c:
            r = c.get(f"/run/{a}?token={dash.token}")  # ?token= redirects and sets the cookie
            assert r.status_code == 200 and "lineage-tree" in r.text and "token=" not in str(r.url)
            for path in routes:
                assert c.get(path).status_code == 200, path  # with the cookie
            assert len(_sse(c, f"/events?run={a}", 1)) == 1
        with httpx.Client(base_url=base, timeout=30, headers={"Authorization": f"Bearer {dash.token}"}) as c:
            for path in routes:
                assert c.get(path).status_code == 200, path
    # on loopback no token is asked for
    with dashboard(store) as dash, httpx.Client(base_url=dash.url, timeout=30) as c:
        assert dash.token is None and "this machine only" in dash.proc.stderr
        assert c.get("/").status_code == 200
        assert c.get("/", headers={"Host": f"localhost:{dash.port}"}).status_code == 200
        # a page elsewhere that rebinds its own name to 127.0.0.1 is refused (Host is checked)
        assert c.get("/", headers={"Host": f"rebound.example:{dash.port}"}).status_code == 400


def test_sse_resumes_after_last_event_id(two_runs: tuple[Path, str, str]) -> None:
    store, a, _b = two_runs
    logged = _events(store, a)
    with dashboard(store) as dash, httpx.Client(base_url=dash.url, timeout=30) as c:
        first = _sse(c, f"/events?run={a}", 12)
        # the SSE id is the event id; the run's events in log order, each naming what it changes
        assert [m["id"] for m in first] == [i for i, _ in logged[:12]]
        assert all(m["event"] == "append" for m in first)
        data = [json.loads(m["data"]) for m in first]
        assert [d["type"] for d in data] == [t for _, t in logged[:12]]
        assert "tree" in data[1]["fragments"]  # generation.started redraws the tree
        # a browser reconnecting sends Last-Event-ID: the stream goes on right after that event
        resumed = _sse(c, f"/events?run={a}", 6, headers={"Last-Event-ID": first[4]["id"]})
        assert [m["id"] for m in resumed] == [i for i, _ in logged[5:11]]
        # Last-Event-ID wins over the page's initial ?after=
        resumed = _sse(c, f"/events?run={a}&after={first[0]['id']}", 2, headers={"Last-Event-ID": first[9]["id"]})
        assert [m["id"] for m in resumed] == [i for i, _ in logged[10:12]]
        # the last event: nothing more until the run grows (the stream stays open)
        assert c.get(f"/events?run={a}", headers={"Last-Event-ID": "f" * 32}).status_code == 404
        # the runs list's stream: every run, filtered to what changes a row
        listed = [json.loads(m["data"]) for m in _sse(c, "/events", 3)]
        assert listed[0]["type"] == "run.started" and all(d["fragments"] == ["runs"] for d in listed)


def test_pages_show_projections_of_the_log_and_write_nothing(
    two_runs: tuple[Path, str, str], capsys: pytest.CaptureFixture[str]
) -> None:
    store, a, b = two_runs
    before = hashlib.sha256(store.read_bytes()).hexdigest()
    lineage = _stop_json("lineage", a, "--store", str(store), "--json", capsys=capsys)
    expected = _stop_json("diff", a, b, "--store", str(store), "--json", capsys=capsys)
    with dashboard(store) as dash, httpx.Client(base_url=dash.url, timeout=60) as c:
        index = c.get("/")
        assert index.status_code == 200
        for run_id in (a, b):
            row = re.search(rf'<tr data-run="{run_id}">(.*?)</tr>', index.text, re.S)
            assert row and "finished" in row.group(1) and "offline" in row.group(1), index.text[:3000]
        for r in (index, c.get("/static/app.js"), c.get(f"/run/{a}")):
            csp = r.headers["content-security-policy"]
            assert "default-src 'none'" in csp and "script-src 'self'" in csp and "http" not in csp
        page = c.get(f"/run/{a}").text
        assert not re.search(r"""(src|href|action)\s*=\s*["']?(https?:)?//""", page)  # nothing from elsewhere
        assert page.count('<g class="node ') == len(lineage["nodes"])
        assert f'data-stream="/events?run={a}&amp;after=' in page

        adopted = next(n for n in lineage["nodes"] if n["status"] == "adopted")
        node = c.get(f"/run/{a}/node/{adopted['id']}")
        assert node.status_code == 200
        diff = re.search(r'<pre class="diff" id="node-diff">(.*?)</pre>', node.text, re.S)
        assert diff and '<span class="add">+' in diff.group(1) and '<span class="hunk">@@' in diff.group(1)
        assert "def improve_algorithm" in node.text and "Utilities per split" in node.text
        assert '<table class="meta-runs">' in node.text and "holds this program" in node.text
        solution = next(n for n in lineage["nodes"] if n["kind"] == "solution" and n["parent"] == adopted["id"])
        sol = c.get(f"/run/{a}/node/{solution['id']}").text
        assert "per-instance outcomes: parity_noise/val" in sol and "per-instance outcomes: parity_noise/test" in sol
        assert sol.count('<table class="instances">') >= 2 and re.search(r"<tr><td>0</td><td>[0-9.]+</td>", sol)
        assert c.get(f"/run/{a}/node/zzzz").status_code == 404

        frags = c.get(f"/run/{a}/fragments?names=tree,plot").json()
        assert set(frags) == {"tree", "plot"} and frags["tree"].count('<g class="node ') == len(lineage["nodes"])
        assert c.get(f"/run/{a}/fragments?names=nope").status_code == 400

        d = c.get(f"/diff/{a}/{b}")
        assert d.status_code == 200
        first = expected["first"]
        assert expected["same"] is False and first is not None
        where = " / ".join(f"{p['type']}[{p['key']}]" for p in first["path"])
        assert f"<code>{escape(where)}</code>" in d.text
        assert f"{expected['compared']} events compared" in d.text and f"{expected['differences']} differing" in d.text
        assert (first["event_a"] or "(absent)") in d.text and d.text.count(
            '<svg xmlns="http://www.w3.org/2000/svg" id="lineage-tree"'
        ) == 2
        assert c.get("/run/no-such-run").status_code == 404

        code = dash.interrupt()
        assert code == 130, dash.proc.stderr
        assert "dashboard stopped" in dash.proc.stderr and "Traceback" not in dash.proc.stderr
    assert hashlib.sha256(store.read_bytes()).hexdigest() == before  # it wrote nothing


def test_missing_store_and_busy_port(tmp_path: Path) -> None:
    missing = stop_cmd("serve", "--store", str(tmp_path / "none.db"), "--port", "0")
    assert missing.wait() == 2 and "no store at" in missing.stderr and "dashboard at" not in missing.stderr
    store = empty_store(tmp_path / "empty.db")
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        busy = stop_cmd("serve", "--store", str(store), "--port", str(taken.getsockname()[1]))
        assert busy.wait() == 3, busy.stderr
    assert "cannot listen on 127.0.0.1" in busy.stderr and "Traceback" not in busy.stderr


def test_sigterm_stops_the_dashboard_with_143(tmp_path: Path) -> None:
    """SIGTERM (a service manager's stop) is a clean stop too, with its own exit code."""
    with dashboard(empty_store(tmp_path / "empty.db")) as dash:
        code = dash.interrupt(signum=signal.SIGTERM)
    assert code == 143, dash.proc.stderr
    assert "dashboard stopped" in dash.proc.stderr and "Traceback" not in dash.proc.stderr
