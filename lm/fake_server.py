"""A fake OpenAI-compatible endpoint for tests: a real HTTP server on 127.0.0.1.

A public test helper in the spirit of ``httpx.MockTransport``: the real openai client talks real
HTTP to it, so retries, timeouts, dropped connections and ``n`` handling are exercised for real.
It serves HTTP/1.1 with keep-alive from one anyio event loop in a thread of its own (a blocking
portal); the latency is a sleep on that loop, so a request costs the server a fraction of a
millisecond of CPU however many are in flight (a thread per connection cost ~5 ms a request
under load, most of it switching threads).

Usage::

    with FakeOpenAIServer(replies=["a", "b"], latency=0.05) as srv:
        srv.inject(Fault.rate_limit(retry_after=0.1), Fault.server_error())
        client = openai.AsyncOpenAI(base_url=srv.base_url, api_key="test", max_retries=0)
        ...
        assert srv.count("/v1/chat/completions") == 3

Replies: a list of texts (consumed in order, cycling), a callable ``body -> list[str] | str``
(the request's JSON body; return up to ``n`` texts), None (deterministic echo texts), or
``IDENTITY`` (an identity model: every choice is the largest fenced block of the last message,
fenced again; the program it was shown comes back unchanged).
Faults are queued with ``inject`` and consumed one per chat request, in arrival order; server
wide behaviours (``ignore_n``, ``api_key``, ``models``, ``latency``) are constructor arguments.
"""

from __future__ import annotations

import itertools
import json
import math
import os
import re
import threading
import time
from collections import Counter, deque
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import Future
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from http import HTTPStatus
from typing import Any

import anyio
import anyio.abc
import anyio.from_thread
from anyio.streams.buffered import BufferedByteReceiveStream

__all__ = ("IDENTITY", "FakeOpenAIServer", "Fault", "ReceivedRequest", "identity_reply")

Replies = Sequence[str] | Callable[[dict[str, Any]], "Sequence[str] | str"] | None

FENCE = "`" * 3


def identity_reply(body: dict[str, Any]) -> str:
    """The identity model's reply to a chat request: the largest fenced block of the last
    message, fenced again (the whole message when it holds no block)."""
    last = str((body.get("messages") or [{}])[-1].get("content", ""))
    parts = last.split(FENCE)
    blocks = []
    for i in range(1, len(parts), 2):
        block = parts[i]
        newline = block.find("\n")
        if newline != -1 and block[:newline].strip().isidentifier():
            block = block[newline + 1 :]
        blocks.append(block)
    program = max(blocks, key=len) if blocks else last
    return f"Idea: keep it as it is.\n\n{FENCE}python\n{program.strip(chr(10))}\n{FENCE}\n"


def IDENTITY(body: dict[str, Any]) -> list[str]:
    """Replies mode: ``n`` copies of ``identity_reply(body)``."""
    return [identity_reply(body)] * int(body.get("n") or 1)


@dataclass(frozen=True)
class Fault:
    """One injected misbehaviour, applied to one chat-completions request."""

    kind: str  # "status" | "slow" | "drop" | "malformed" | "ignore_n" | "body" | "truncate" | "hang"
    status: int = 0
    retry_after: float | None = None
    delay: float = 0.0
    message: str = ""
    body: bytes = b""
    content_type: str = "application/json"

    @classmethod
    def rate_limit(cls, retry_after: float | None = 0.05) -> Fault:
        return cls("status", 429, retry_after=retry_after, message="Rate limit reached (fake)")

    @classmethod
    def quota_exhausted(cls) -> Fault:
        return cls("status", 429, message="You exceeded your current quota (fake)")

    @classmethod
    def server_error(cls, status: int = 500) -> Fault:
        return cls("status", status, message=f"fake server error {status}")

    @classmethod
    def unavailable(cls, retry_after: float | None = None) -> Fault:
        return cls("status", 503, retry_after=retry_after, message="fake: service unavailable")

    @classmethod
    def unauthorized(cls) -> Fault:
        return cls("status", 401, message="Incorrect API key provided (fake)")

    @classmethod
    def unknown_model(cls) -> Fault:
        return cls("status", 404, message="The model does not exist (fake)")

    @classmethod
    def bad_request(cls) -> Fault:
        return cls("status", 400, message="Invalid request (fake)")

    @classmethod
    def slow(cls, delay: float) -> Fault:
        """Answer correctly, but only after ``delay`` seconds (a client timeout turns it into one)."""
        return cls("slow", delay=delay)

    @classmethod
    def drop(cls) -> Fault:
        """Read the request, then close the connection without any response."""
        return cls("drop")

    @classmethod
    def malformed(cls) -> Fault:
        """Status 200 with a body that is not JSON."""
        return cls("malformed")

    @classmethod
    def raw(cls, body: bytes | Any, content_type: str = "application/json") -> Fault:
        """HTTP 200 with exactly this body (bytes, or any JSON value)."""
        raw = body if isinstance(body, bytes) else json.dumps(body).encode()
        return cls("body", body=raw, content_type=content_type)

    @classmethod
    def html(cls) -> Fault:
        """HTTP 200 with an HTML error page (a proxy in front of the endpoint)."""
        return cls.raw(b"<html><body><h1>502 Bad Gateway</h1></body></html>", "text/html")

    @classmethod
    def empty_choices(cls) -> Fault:
        return cls.raw({"id": "x", "object": "chat.completion", "choices": [], "usage": None})

    @classmethod
    def wrong_types(cls) -> Fault:
        """``choices`` is a string."""
        return cls.raw({"id": "x", "object": "chat.completion", "choices": "nope"})

    @classmethod
    def null_content(cls) -> Fault:
        return cls.raw(
            {
                "id": "x",
                "object": "chat.completion",
                "choices": [{"index": 0, "message": {"role": "assistant", "content": None}, "finish_reason": "stop"}],
            }
        )

    @classmethod
    def length_empty(cls) -> Fault:
        """A reasoning model that spent its token budget: empty content, finish_reason "length"."""
        return cls.raw(
            {
                "id": "x",
                "object": "chat.completion",
                "choices": [{"index": 0, "message": {"role": "assistant", "content": ""}, "finish_reason": "length"}],
                "usage": {"prompt_tokens": 5, "completion_tokens": 64},
            }
        )

    @classmethod
    def bad_usage(cls, prompt: Any = -5, completion: Any = 10**12) -> Fault:
        """A correct reply whose ``usage`` is negative / absurd."""
        return cls.raw(
            {
                "id": "x",
                "object": "chat.completion",
                "choices": [{"index": 0, "message": {"role": "assistant", "content": "ok"}, "finish_reason": "stop"}],
                "usage": {"prompt_tokens": prompt, "completion_tokens": completion},
            }
        )

    @classmethod
    def truncate(cls) -> Fault:
        """Send the headers and half of the body, then close the connection."""
        return cls("truncate")

    @classmethod
    def hang(cls, delay: float = 3600.0) -> Fault:
        """Accept the request and never answer (until ``delay`` or the server stops)."""
        return cls("hang", delay=delay)

    @classmethod
    def ignore_n(cls) -> Fault:
        """Answer this one request with a single choice whatever ``n`` was."""
        return cls("ignore_n")


@dataclass(frozen=True)
class ReceivedRequest:
    method: str
    path: str
    body: dict[str, Any] | None
    authorization: str | None
    at: float  # time.monotonic() at arrival
    fault: Fault | None = None
    content_type: str | None = None


@dataclass
class _State:
    replies: Replies
    latency: float
    ignore_n: bool
    api_key: str | None
    models: frozenset[str] | None
    reject_params: frozenset[str] = frozenset()
    faults: deque[Fault] = field(default_factory=deque)
    received: list[ReceivedRequest] = field(default_factory=list)
    #: the test's thread and the server's loop both touch the state; held only briefly
    lock: threading.Lock = field(default_factory=threading.Lock)
    reply_iter: Iterable[str] | None = None
    counter: itertools.count[int] = field(default_factory=itertools.count)
    in_flight: int = 0
    max_in_flight: int = 0
    #: TCP connections accepted (a client with a connection pool opens few)
    connections: int = 0
    #: seconds from reading a chat request to having written its answer, per request
    handled_s: list[float] = field(default_factory=list)


def _words(text: str) -> int:
    return len(re.findall(r"\w+|[^\w\s]", text))


#: a request head longer than this is refused (no real client sends one)
MAX_HEAD = 64 * 1024


class _Close(Exception):
    """End this connection without another response (the client hung up, or a fault)."""


@dataclass
class _Request:
    method: str
    path: str
    headers: dict[str, str]  # lower-case names
    body: bytes


def _response(
    status: int, raw: bytes, content_type: str = "application/json", headers: dict[str, str] | None = None
) -> bytes:
    try:
        reason = HTTPStatus(status).phrase
    except ValueError:
        reason = ""
    lines = [f"HTTP/1.1 {status} {reason}", f"Content-Type: {content_type}", f"Content-Length: {len(raw)}"]
    lines.extend(f"{k}: {v}" for k, v in (headers or {}).items())
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + raw


def _json_response(status: int, payload: Any, headers: dict[str, str] | None = None) -> bytes:
    return _response(status, json.dumps(payload).encode(), headers=headers)


def _error(status: int, message: str, code: str, headers: dict[str, str] | None = None) -> bytes:
    return _json_response(status, {"error": {"message": message, "type": code, "code": code}}, headers)


class _Connection:
    """One client connection: requests are read and answered in turn (HTTP/1.1 keep-alive)."""

    def __init__(self, server: _Server, stream: anyio.abc.SocketStream) -> None:
        self.server = server
        self.state = server.state
        self.stream = stream
        self.reader = BufferedByteReceiveStream(stream)

    async def serve(self) -> None:
        try:
            while True:
                req = await self._read()
                if req is None:
                    return
                keep_alive = await self._answer(req)
                if not keep_alive:
                    return
        except (_Close, anyio.EndOfStream, anyio.IncompleteRead, anyio.BrokenResourceError, anyio.ClosedResourceError):
            return
        except anyio.DelimiterNotFound:
            await self._send(_error(431, "request head too large", "invalid_request_error"))
        except OSError:  # the client reset the connection
            return
        finally:
            await self.stream.aclose()

    async def _read(self) -> _Request | None:
        try:
            head = await self.reader.receive_until(b"\r\n\r\n", MAX_HEAD)
        except (anyio.EndOfStream, anyio.IncompleteRead):
            return None  # the client closed its idle keep-alive connection
        lines = head.decode("latin-1").split("\r\n")
        parts = lines[0].split()
        if len(parts) != 3:
            raise _Close
        method, target, _version = parts
        headers: dict[str, str] = {}
        for line in lines[1:]:
            name, sep, value = line.partition(":")
            if sep:
                headers[name.strip().lower()] = value.strip()
        if headers.get("transfer-encoding", "").lower() == "chunked":
            body = await self._read_chunked()
        else:
            length = int(headers.get("content-length") or 0)
            body = await self.reader.receive_exactly(length) if length else b""
        return _Request(method.upper(), target.split("?")[0], headers, body)

    async def _read_chunked(self) -> bytes:
        chunks: list[bytes] = []
        while True:
            size = int((await self.reader.receive_until(b"\r\n", 1024)).split(b";")[0], 16)
            if size == 0:
                while await self.reader.receive_until(b"\r\n", MAX_HEAD):  # trailers, then the blank line
                    pass
                return b"".join(chunks)
            chunks.append(await self.reader.receive_exactly(size))
            await self.reader.receive_exactly(2)

    async def _send(self, data: bytes) -> None:
        await self.stream.send(data)

    def _record(self, req: _Request, body: dict[str, Any] | None, fault: Fault | None) -> None:
        st = self.state
        with st.lock:
            st.received.append(
                ReceivedRequest(
                    req.method,
                    req.path,
                    body,
                    req.headers.get("authorization"),
                    time.monotonic(),
                    fault,
                    req.headers.get("content-type"),
                )
            )

    def _auth_ok(self, req: _Request) -> bool:
        key = self.state.api_key
        return key is None or req.headers.get("authorization") == f"Bearer {key}"

    async def _answer(self, req: _Request) -> bool:
        """Answer one request; False when the connection is to be closed after it."""
        st = self.state
        if req.method == "GET":
            self._record(req, None, None)
            if req.path != "/v1/models":
                await self._send(_error(404, f"no route {req.path}", "not_found"))
            elif not self._auth_ok(req):
                await self._send(_error(401, "Incorrect API key provided (fake)", "invalid_api_key"))
            else:
                names = sorted(st.models) if st.models is not None else ["fake-model"]
                data = [{"id": m, "object": "model", "owned_by": "fake"} for m in names]
                await self._send(_json_response(200, {"object": "list", "data": data}))
        elif req.method == "POST":
            await self._post(req)
        else:
            self._record(req, None, None)
            await self._send(_error(501, f"unsupported method {req.method}", "not_implemented"))
        return req.headers.get("connection", "").lower() != "close"

    async def _post(self, req: _Request) -> None:
        st = self.state
        try:
            body = json.loads(req.body or b"{}")
        except (ValueError, UnicodeDecodeError):
            self._record(req, None, None)
            await self._send(_error(400, "request body is not JSON", "invalid_request_error"))
            return
        if req.path != "/v1/chat/completions":
            self._record(req, body, None)
            await self._send(_error(404, f"no route {req.path}", "not_found"))
            return
        with st.lock:
            fault = st.faults.popleft() if st.faults else None
            st.in_flight += 1
            st.max_in_flight = max(st.max_in_flight, st.in_flight)
            latency = st.latency
        self._record(req, body, fault)
        began = time.monotonic()
        try:
            if latency:
                await anyio.sleep(latency)
            await self._send(await self._chat(req, body, fault))
        finally:
            with st.lock:
                st.in_flight -= 1
                st.handled_s.append(time.monotonic() - began)

    async def _chat(self, req: _Request, body: dict[str, Any], fault: Fault | None) -> bytes:
        """The response to a chat request (a fault may end the connection instead)."""
        st = self.state
        if fault is not None:
            if fault.kind == "status":
                headers = {}
                if fault.retry_after is not None:
                    headers["retry-after-ms"] = str(int(fault.retry_after * 1000))
                    headers["retry-after"] = str(math.ceil(fault.retry_after))
                code = {401: "invalid_api_key", 404: "model_not_found", 400: "invalid_request_error"}.get(
                    fault.status, "server_error"
                )
                if fault.status == 429:
                    code = "insufficient_quota" if "quota" in fault.message else "rate_limit_exceeded"
                return _error(fault.status, fault.message, code, headers)
            if fault.kind == "drop":
                raise _Close  # read the request, then close without any response
            if fault.kind == "malformed":
                return _response(200, b'{"id": "chatcmpl-broken", "choices": [ {"index": 0,, <<garbled')
            if fault.kind == "body":
                return _response(200, fault.body, fault.content_type)
            if fault.kind == "truncate":
                raw = json.dumps({"id": "x", "choices": [{"index": 0, "message": {"content": "x" * 400}}]}).encode()
                whole = _response(200, raw)
                await self._send(whole[: len(whole) - len(raw) // 2])
                raise _Close
            if fault.kind == "hang":
                await anyio.sleep(fault.delay)  # cancelled when the server stops
                raise _Close
            if fault.kind == "slow":
                await anyio.sleep(fault.delay)
        if not self._auth_ok(req):
            return _error(401, "Incorrect API key provided (fake)", "invalid_api_key")
        for param in sorted(st.reject_params):
            if param in body:
                hint = " Use 'max_completion_tokens' instead." if param == "max_tokens" else ""
                return _error(
                    400,
                    f"Unsupported parameter: '{param}' is not supported with this model.{hint}",
                    "invalid_request_error",
                )
        model = body.get("model")
        if st.models is not None and model not in st.models:
            return _error(404, f"The model `{model}` does not exist (fake)", "model_not_found")
        n = int(body.get("n") or 1)
        if st.ignore_n or (fault is not None and fault.kind == "ignore_n"):
            n = 1
        texts = self.server.reply_texts(body, n)
        prompt = sum(_words(str(m.get("content", ""))) for m in body.get("messages", []))
        comp = sum(_words(t) for t in texts)
        idx = next(st.counter)
        return _json_response(
            200,
            {
                "id": f"chatcmpl-fake-{idx}",
                "object": "chat.completion",
                "created": 0,
                "model": model,
                "choices": [
                    {"index": i, "message": {"role": "assistant", "content": t}, "finish_reason": "stop"}
                    for i, t in enumerate(texts)
                ],
                "usage": {"prompt_tokens": prompt, "completion_tokens": comp, "total_tokens": prompt + comp},
            },
        )


class _Server:
    """The listening socket and its connections, all in one task group on the portal's loop."""

    def __init__(self, state: _State) -> None:
        self.state = state
        self.port = 0
        self.scope: anyio.CancelScope | None = None

    async def run(self, *, task_status: anyio.abc.TaskStatus[int] = anyio.TASK_STATUS_IGNORED) -> None:
        # a backlog of 256: the default drops bursts of concurrent connects
        listener = await anyio.create_tcp_listener(local_host="127.0.0.1", local_port=0, backlog=256)
        self.port = int(listener.extra(anyio.abc.SocketAttribute.local_port))
        with anyio.CancelScope() as scope:
            self.scope = scope
            async with listener, anyio.create_task_group() as tg:
                task_status.started(self.port)
                await listener.serve(self._accepted, tg)

    async def _accepted(self, stream: anyio.abc.SocketStream) -> None:
        with self.state.lock:
            self.state.connections += 1
        await _Connection(self, stream).serve()

    def reply_texts(self, body: dict[str, Any], n: int) -> list[str]:
        st = self.state
        replies = st.replies
        if callable(replies):
            got = replies(body)
            texts = [got] if isinstance(got, str) else list(got)
            return texts[:n]
        with st.lock:
            if replies is None:
                last = str((body.get("messages") or [{}])[-1].get("content", ""))
                return [f"reply {next(st.counter)}: {last[:40]}" for _ in range(n)]
            if st.reply_iter is None:
                st.reply_iter = itertools.cycle(list(replies))
            it = iter(st.reply_iter)
            return [next(it) for _ in range(n)]


class FakeOpenAIServer:
    """Start with ``with`` (or ``start()``/``stop()``); serves on an event loop in its own thread."""

    def __init__(
        self,
        replies: Replies = None,
        *,
        latency: float = 0.0,
        ignore_n: bool = False,
        api_key: str | None = None,
        models: Iterable[str] | None = None,
        reject_params: Iterable[str] = (),
    ) -> None:
        """``reject_params``: request fields answered with a 400 naming them (as reasoning
        models refuse ``max_tokens`` and ``temperature``)."""
        self._state = _State(
            replies=replies,
            latency=latency,
            ignore_n=ignore_n,
            api_key=api_key,
            models=frozenset(models) if models is not None else None,
            reject_params=frozenset(reject_params),
        )
        self._server: _Server | None = None
        self._portal_cm: AbstractContextManager[anyio.from_thread.BlockingPortal] | None = None
        self._portal: anyio.from_thread.BlockingPortal | None = None
        self._serving: Future[None] | None = None

    # --- lifecycle -----------------------------------------------------------------------
    def start(self) -> FakeOpenAIServer:
        if self._server is not None:
            return self
        self._portal_cm = anyio.from_thread.start_blocking_portal()
        self._portal = self._portal_cm.__enter__()
        server = _Server(self._state)
        self._serving, _port = self._portal.start_task(server.run)
        self._server = server
        return self

    def stop(self) -> None:
        """Stop serving: hanging requests and open connections are cancelled."""
        server, portal, cm = self._server, self._portal, self._portal_cm
        self._server = self._portal = self._portal_cm = None
        if portal is not None and server is not None and server.scope is not None:
            portal.call(server.scope.cancel)
        if self._serving is not None:
            self._serving.result(timeout=5)
            self._serving = None
        if cm is not None:
            cm.__exit__(None, None, None)

    def __enter__(self) -> FakeOpenAIServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # --- configuration -------------------------------------------------------------------
    @property
    def port(self) -> int:
        if self._server is None:
            raise RuntimeError("the fake server is not running")
        return self._server.port

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def inject(self, *faults: Fault) -> None:
        with self._state.lock:
            self._state.faults.extend(faults)

    def set(self, *, latency: float | None = None, ignore_n: bool | None = None, replies: Replies = None) -> None:
        with self._state.lock:
            if latency is not None:
                self._state.latency = latency
            if ignore_n is not None:
                self._state.ignore_n = ignore_n
            if replies is not None:
                self._state.replies = replies
                self._state.reply_iter = None

    # --- observation ---------------------------------------------------------------------
    @property
    def requests(self) -> list[ReceivedRequest]:
        with self._state.lock:
            return list(self._state.received)

    def count(self, path: str | None = None) -> int:
        with self._state.lock:
            return sum(1 for r in self._state.received if path is None or r.path == path)

    def counts(self) -> Counter[str]:
        with self._state.lock:
            return Counter(r.path for r in self._state.received)

    @property
    def bodies(self) -> list[dict[str, Any]]:
        return [r.body for r in self.requests if r.body is not None]

    @property
    def pending_faults(self) -> int:
        with self._state.lock:
            return len(self._state.faults)

    @property
    def max_in_flight(self) -> int:
        return self._state.max_in_flight

    @property
    def connections(self) -> int:
        """TCP connections accepted so far."""
        with self._state.lock:
            return self._state.connections

    @property
    def handled_s(self) -> list[float]:
        """Seconds each chat request took from being read to being answered (latency included)."""
        with self._state.lock:
            return list(self._state.handled_s)


def runqueue_wait_s(*, main_thread: bool = False) -> float | None:
    """Seconds this process's live threads (or only its main thread) have spent runnable but not
    running (waiting for a core), from the kernel's scheduler statistics; None where the kernel
    does not expose them. A thread that ends takes its share with it: difference two readings
    only while the same threads live."""
    if main_thread:
        try:
            with open("/proc/self/schedstat") as f:
                return int(f.read().split()[1]) / 1e9
        except (OSError, IndexError, ValueError):
            return None
    total = 0
    try:
        tasks = os.listdir("/proc/self/task")
    except OSError:
        return None
    for tid in tasks:
        try:
            with open(f"/proc/self/task/{tid}/schedstat") as f:
                total += int(f.read().split()[1])
        except (OSError, IndexError, ValueError):
            continue  # a thread that ended meanwhile
    return total / 1e9


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m lm.fake_server [--latency S] [--ignore-n] [--identity]``: serve in this process,
    print the base URL on stdout, stop when stdin closes (benchmarks run it out of process so the
    server does not share the client's GIL), then print one JSON line of what serving cost: chat
    requests, this process's CPU seconds while serving (``cpu_s``: from printing the URL to stdin
    closing; the interpreter's start and imports, ~1 s, are ``startup_cpu_s``), the seconds its
    threads waited for a core meanwhile (``runqueue_wait_s``, None off Linux), mean seconds from
    reading a request to answering it. ``--identity``: the identity model."""
    import argparse
    import sys

    parser = argparse.ArgumentParser(prog="python -m lm.fake_server")
    parser.add_argument("--latency", type=float, default=0.0)
    parser.add_argument("--ignore-n", action="store_true")
    parser.add_argument("--identity", action="store_true", help="answer with the program shown")
    args = parser.parse_args(argv)
    replies: Replies = IDENTITY if args.identity else None
    with FakeOpenAIServer(replies, latency=args.latency, ignore_n=args.ignore_n) as srv:
        ready, waited = time.process_time(), runqueue_wait_s()
        print(srv.base_url, flush=True)
        sys.stdin.read()
        waited_after = runqueue_wait_s()  # while the serving thread lives
    # read once stopped: a request just answered has recorded its handling time by then
    handled = srv.handled_s
    cpu = time.process_time()
    stats = {
        "requests": len(handled),
        "cpu_s": cpu - ready,
        "startup_cpu_s": ready,
        "runqueue_wait_s": waited_after - waited if waited is not None and waited_after is not None else None,
        "mean_handled_s": sum(handled) / len(handled) if handled else 0.0,
    }
    print(json.dumps(stats), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
