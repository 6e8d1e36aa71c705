"""Who may look, and what a page may load: the token gate and the security headers.

Both are plain ASGI middleware, so they cover every route alike, the event stream included.

- :class:`TokenGate`: with a token set, every request must carry it: the ``stop_token_PORT``
  cookie (set by the page's small form, ``/login``), ``?token=`` (answered with a redirect that
  sets the cookie and drops the token from the address), or ``Authorization: Bearer``. Anything
  else gets 401 and the form.
- :class:`SecurityHeaders`: a Content-Security-Policy that allows nothing but this origin (no
  external scripts, styles, images, fonts, frames or connections), no framing, no referrer, no
  MIME sniffing.
"""

from __future__ import annotations

import hmac
import ipaddress
from http.cookies import CookieError, SimpleCookie
from urllib.parse import parse_qsl, quote, urlencode

from starlette.types import ASGIApp, Message, Receive, Scope, Send

__all__ = ("CSP", "SecurityHeaders", "TokenGate", "cookie_name", "is_loopback")

CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; "
    "form-action 'self'; base-uri 'none'; frame-ancestors 'none'"
)

_HEADERS = [
    (b"content-security-policy", CSP.encode()),
    (b"x-content-type-options", b"nosniff"),
    (b"x-frame-options", b"DENY"),
    (b"referrer-policy", b"no-referrer"),
    (b"cache-control", b"no-store"),
]


def is_loopback(host: str) -> bool:
    """Whether binding ``host`` keeps the dashboard on this machine (127.0.0.0/8, ::1, localhost)."""
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False  # a host name: it may resolve to anything


def cookie_name(port: int) -> str:
    """Cookies are not scoped by port: one name per port keeps two dashboards apart."""
    return f"stop_token_{port}"


class SecurityHeaders:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                names = {k.lower() for k, _ in message.get("headers", [])}
                message["headers"] = list(message.get("headers", [])) + [h for h in _HEADERS if h[0] not in names]
            await send(message)

        await self.app(scope, receive, send_with_headers)


_FORM = """<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>STOP dashboard: token</title>
<link rel="stylesheet" href="/static/app.css"></head><body>
<h1>STOP dashboard</h1>
<p>This dashboard is reachable beyond this machine, so it asks for its access token
(printed by <code>stop serve</code> when it started).</p>
{error}
<form class="token" method="get" action="/login">
<input type="hidden" name="next" value="{next}">
<label>token <input type="password" name="token" autocomplete="current-password" autofocus></label>
<button type="submit">open</button></form>
</body></html>
"""


class TokenGate:
    """Every request must show ``token`` (see the module doc); ``/static/app.css`` is open so the
    form has its style (it holds no data)."""

    OPEN_PATHS = frozenset({"/static/app.css"})

    def __init__(self, app: ASGIApp, token: str, *, port: int) -> None:
        self.app = app
        self.token = token.encode()
        self.cookie = cookie_name(port)

    def _ok(self, value: str | None) -> bool:
        return value is not None and hmac.compare_digest(value.encode(), self.token)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path: str = scope["path"]
        query = dict(parse_qsl(scope.get("query_string", b"").decode("latin-1")))
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope.get("headers", [])}
        if path == "/login" or (query.get("token") and path not in self.OPEN_PATHS):
            await self._login(scope, query, send)
            return
        cookies = SimpleCookie()
        try:
            cookies.load(headers.get("cookie", ""))
        except CookieError:  # a malformed cookie header is just no cookie
            cookies = SimpleCookie()
        morsel = cookies.get(self.cookie)
        auth = headers.get("authorization", "")
        bearer = auth[7:].strip() if auth.lower().startswith("bearer ") else None
        if path in self.OPEN_PATHS or self._ok(morsel.value if morsel else None) or self._ok(bearer):
            await self.app(scope, receive, send)
            return
        await self._form(send, 401, next_url=_here(scope))

    async def _login(self, scope: Scope, query: dict[str, str], send: Send) -> None:
        given = query.pop("token", None)
        if scope["path"] == "/login":
            target = query.get("next") or "/"
            if not target.startswith("/") or target.startswith("//"):
                target = "/"
        else:
            rest = urlencode(query)
            target = scope["path"] + (f"?{rest}" if rest else "")
        if not self._ok(given):
            error = '<p class="bad">That token is not the one this dashboard was started with.</p>' if given else ""
            await self._form(send, 403 if given else 401, next_url=target, error=error)
            return
        cookie = f"{self.cookie}={self.token.decode()}; Path=/; HttpOnly; SameSite=Strict"
        await send(
            {
                "type": "http.response.start",
                "status": 303,
                "headers": [(b"location", quote(target, safe="/?=&%:").encode()), (b"set-cookie", cookie.encode())],
            }
        )
        await send({"type": "http.response.body", "body": b""})

    async def _form(self, send: Send, status: int, *, next_url: str, error: str = "") -> None:
        from html import escape

        body = _FORM.format(next=escape(next_url), error=error).encode()
        await send(
            {
                "type": "http.response.start",
                "status": status,
                "headers": [
                    (b"content-type", b"text/html; charset=utf-8"),
                    (b"content-length", str(len(body)).encode()),
                    (b"www-authenticate", b'Bearer realm="stop serve"'),
                ],
            }
        )
        await send({"type": "http.response.body", "body": body})


def _here(scope: Scope) -> str:
    qs = scope.get("query_string", b"").decode("latin-1")
    return str(scope["path"]) + (f"?{qs}" if qs else "")
