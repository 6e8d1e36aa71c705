"""A small Chrome DevTools Protocol client: Debian's headless Chromium driven over a websocket.

No driver and no browser download: ``chromium --headless=new --remote-debugging-port=0`` prints
its websocket address on stderr; one page target is created and attached in flat mode, and
commands are sent one at a time (events that arrive meanwhile are kept in ``events``).
"""

from __future__ import annotations

import base64
import json
import re
import subprocess
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import anyio
from websockets.asyncio.client import ClientConnection, connect

_LISTENING = re.compile(r"DevTools listening on (ws://\S+)")


@contextmanager
def chromium_process(binary: str, profile: Path) -> Iterator[str]:
    """Start headless Chromium; yield its browser websocket URL; kill it after."""
    cmd = [
        binary,
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--remote-debugging-port=0",
        "--remote-debugging-address=127.0.0.1",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--disable-extensions",
        "--disable-default-apps",
        "--no-first-run",
        "--no-default-browser-check",
        "--metrics-recording-only",
        "--safebrowsing-disable-auto-update",
        f"--user-data-dir={profile}",
        "--window-size=1300,1600",
        "about:blank",
    ]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    found: list[str] = []
    ready = threading.Event()
    tail: list[str] = []

    def read() -> None:
        assert proc.stderr is not None
        for line in proc.stderr:
            tail.append(line)
            m = _LISTENING.search(line)
            if m and not found:
                found.append(m.group(1))
                ready.set()
        ready.set()

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    try:
        if not ready.wait(90) or not found:
            raise RuntimeError("chromium did not open its DevTools port:\n" + "".join(tail[-30:]))
        yield found[0]
    finally:
        proc.kill()
        proc.wait(30)
        reader.join(10)
        if proc.stderr is not None:
            proc.stderr.close()


class Page:
    """One attached page target."""

    def __init__(self, ws: ClientConnection, session: str) -> None:
        self.ws = ws
        self.session = session
        self.events: list[dict[str, Any]] = []
        #: every URL the page asked for (``Network.requestWillBeSent``), in order
        self.urls: list[str] = []
        self._id = 0

    def _keep(self, event: dict[str, Any]) -> None:
        if event.get("method") == "Network.requestWillBeSent":
            self.urls.append(event["params"]["request"]["url"])
        self.events.append(event)

    @classmethod
    async def open(cls, ws: ClientConnection) -> Page:
        page = cls(ws, "")
        target = await page.send("Target.createTarget", {"url": "about:blank"}, browser=True)
        attached = await page.send(
            "Target.attachToTarget", {"targetId": target["targetId"], "flatten": True}, browser=True
        )
        page.session = attached["sessionId"]
        for domain in ("Page", "Runtime", "Network"):
            await page.send(f"{domain}.enable")
        return page

    async def send(self, method: str, params: dict[str, Any] | None = None, *, browser: bool = False) -> Any:
        self._id += 1
        msg: dict[str, Any] = {"id": self._id, "method": method, "params": params or {}}
        if not browser:
            msg["sessionId"] = self.session
        await self.ws.send(json.dumps(msg))
        with anyio.fail_after(60):
            while True:
                reply = json.loads(await self.ws.recv())
                if reply.get("id") == self._id:
                    if "error" in reply:
                        raise RuntimeError(f"{method}: {reply['error']}")
                    return reply.get("result", {})
                if "method" in reply:
                    self._keep(reply)

    async def wait_event(self, method: str, within: float = 60) -> dict[str, Any]:
        """The first ``method`` event not yet consumed (and consume it), within ``within`` seconds."""
        with anyio.fail_after(within):
            while True:
                for i, ev in enumerate(self.events):
                    if ev.get("method") == method:
                        return self.events.pop(i)
                reply = json.loads(await self.ws.recv())
                if "method" in reply:
                    self._keep(reply)

    async def navigate(self, url: str) -> None:
        self.events = [e for e in self.events if e.get("method") != "Page.loadEventFired"]
        await self.send("Page.navigate", {"url": url})
        await self.wait_event("Page.loadEventFired")

    async def eval(self, expression: str) -> Any:
        res = await self.send("Runtime.evaluate", {"expression": expression, "returnByValue": True})
        if "exceptionDetails" in res:
            raise RuntimeError(f"{expression}: {res['exceptionDetails']}")
        return res["result"].get("value")

    async def screenshot(self) -> bytes:
        res = await self.send("Page.captureScreenshot", {"format": "png", "captureBeyondViewport": False})
        return base64.b64decode(res["data"])


async def browser_page(ws_url: str) -> tuple[ClientConnection, Page]:
    ws = await connect(ws_url, max_size=64 * 1024 * 1024, open_timeout=30)
    return ws, await Page.open(ws)
