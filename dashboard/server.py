"""Running the dashboard: open the store read-only, bind, serve with uvicorn inside a task group.

The socket is bound here (not by uvicorn) so the real port is known before serving (``--port
0`` picks a free one) and a busy port is a one-line error. Uvicorn's own signal handling stops
the server gracefully on Ctrl-C (open event streams are ended, ``timeout_graceful_shutdown``
bounds the wait) and then re-raises the signal, which the command line turns into exit 130.
"""

from __future__ import annotations

import secrets
import socket
import sys
from dataclasses import dataclass

import anyio
import structlog
import uvicorn

from dashboard.app import create_app
from dashboard.security import is_loopback
from outcome import EnvironmentProblem, UsageError
from store.factory import describe_store, open_store

__all__ = ("ServeOptions", "bind", "serve")

log = structlog.get_logger("dashboard")


@dataclass(frozen=True)
class ServeOptions:
    store: str
    host: str = "127.0.0.1"
    port: int = 8765
    token: str | None = None


def bind(host: str, port: int) -> socket.socket:
    """A listening TCP socket on ``host:port`` (IPv6 when ``host`` is an IPv6 address)."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except socket.gaierror as exc:
        raise UsageError(f"--host {host}: cannot resolve it ({exc.strerror})") from exc
    family, kind, proto, _, addr = infos[0]
    sock = socket.socket(family, kind, proto)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind(addr)
        sock.listen(128)
    except OSError as exc:
        sock.close()
        raise EnvironmentProblem(
            f"cannot listen on {host}:{port}: {exc.strerror or exc}", hint="choose another --port (0: any free port)"
        ) from exc
    sock.setblocking(False)
    return sock


def _url(host: str, port: int) -> str:
    shown = "127.0.0.1" if host in ("0.0.0.0", "") else host
    if ":" in shown and not shown.startswith("["):
        shown = f"[{shown}]"
    return f"http://{shown}:{port}/"


async def serve(opts: ServeOptions) -> None:
    """Serve until interrupted. Refuses a non-loopback bind without a token by making one."""
    token = opts.token
    if token is not None and len(token) < 8:
        raise UsageError("--token must be at least 8 characters")
    generated = False
    if token is None and not is_loopback(opts.host):
        token, generated = secrets.token_urlsafe(24), True
    store = await open_store(opts.store, create=False, readonly=True)
    try:
        sock = bind(opts.host, opts.port)
        port = int(sock.getsockname()[1])
        app = create_app(store, store_name=describe_store(opts.store), token=token, port=port, host=opts.host)
        config = uvicorn.Config(
            app,
            log_config=None,
            access_log=False,
            log_level="warning",
            lifespan="off",
            timeout_graceful_shutdown=3,
            server_header=False,
        )
        server = uvicorn.Server(config)
        url = _url(opts.host, port)
        where = "this machine only" if is_loopback(opts.host) else f"reachable beyond this machine ({opts.host})"
        print(f"stop: dashboard at {url} (store {describe_store(opts.store)}, read-only; {where})", file=sys.stderr)
        if token is not None:
            print(
                f"stop: access token {'(generated) ' if generated else ''}{token} — open {url}?token={token}",
                file=sys.stderr,
            )
        print("stop: Ctrl-C to stop", file=sys.stderr, flush=True)
        log.info("dashboard.listening", url=url, host=opts.host, port=port, token_required=token is not None)
        try:
            async with anyio.create_task_group() as tg:
                tg.start_soon(server.serve, [sock])
        finally:
            sock.close()
            log.info("dashboard.stopped", url=url)
    finally:
        await store.aclose()
