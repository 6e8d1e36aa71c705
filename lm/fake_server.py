"""A fake OpenAI-compatible endpoint for tests: a real HTTP server on 127.0.0.1.

A public test helper in the spirit of ``httpx.MockTransport``: the real openai client talks real
HTTP to it, so retries, timeouts, dropped connections and ``n`` handling are exercised for real.
A thread per connection (HTTP/1.1 keep-alive): about 0.3 ms of CPU a request while serving. One
event loop serving every connection was tried (``bench lm``, the same client, 5 runs each at
load 5 on 2 cores): its fan-out wall was worse (median 3.0x the ideal against 1.8x), as its one
thread waits for a core with every answer queued behind it.

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
import socket
import threading
import time
from collections import Counter, deque
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

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
    lock: threading.Lock = field(default_factory=threading.Lock)
    reply_iter: Iterable[str] | None = None
    counter: itertools.count[int] = field(default_factory=itertools.count)
    in_flight: int = 0
    max_in_flight: int = 0
    #: TCP connections accepted (a client with a connection pool opens few)
    connections: int = 0
    #: seconds the connection threads that have ended waited for a core, and their thread ids
    ended_wait_s: float = 0.0
    ended_threads: set[int] = field(default_factory=set)
    #: seconds from reading a chat request to having written its answer, per request
    handled_s: list[float] = field(default_factory=list)


def _words(text: str) -> int:
    return len(re.findall(r"\w+|[^\w\s]", text))


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    # headers and body go out in two writes; with Nagle on, the body waits for the client's
    # delayed ACK (~40 ms on Linux), which would swamp any latency a test sets up
    disable_nagle_algorithm = True
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:
        return

    def setup(self) -> None:
        super().setup()
        with self.server.state.lock:
            self.server.state.connections += 1

    def finish(self) -> None:
        """The connection's thread ends here: keep its wait for a core (the kernel forgets it)."""
        super().finish()
        waited = _thread_wait_s("/proc/thread-self/schedstat")
        st = self.server.state
        with st.lock:
            st.ended_wait_s += waited or 0.0
            st.ended_threads.add(threading.get_native_id())

    # --- helpers -------------------------------------------------------------------------
    def _send(self, status: int, payload: Any, headers: dict[str, str] | None = None) -> None:
        raw = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(raw)))
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(raw)
        self.wfile.flush()

    def _error(self, status: int, message: str, code: str, headers: dict[str, str] | None = None) -> None:
        self._send(status, {"error": {"message": message, "type": code, "code": code}}, headers)

    def _record(self, body: dict[str, Any] | None, fault: Fault | None) -> None:
        st = self.server.state
        with st.lock:
            st.received.append(
                ReceivedRequest(
                    self.command,
                    self.path.split("?")[0],
                    body,
                    self.headers.get("Authorization"),
                    time.monotonic(),
                    fault,
                    self.headers.get("Content-Type"),
                )
            )

    def _read_chunked(self) -> bytes:
        chunks: list[bytes] = []
        while True:
            size = int(self.rfile.readline(1024).split(b";")[0], 16)
            if size == 0:
                while self.rfile.readline(65536).strip():  # trailers, then the blank line
                    pass
                return b"".join(chunks)
            chunks.append(self.rfile.read(size))
            self.rfile.read(2)

    def _auth_ok(self) -> bool:
        st = self.server.state
        if st.api_key is None:
            return True
        return self.headers.get("Authorization") == f"Bearer {st.api_key}"

    # --- routes --------------------------------------------------------------------------
    def do_GET(self) -> None:
        self._record(None, None)
        st = self.server.state
        if self.path.split("?")[0] != "/v1/models":
            self._error(404, f"no route {self.path}", "not_found")
        elif not self._auth_ok():
            self._error(401, "Incorrect API key provided (fake)", "invalid_api_key")
        else:
            names = sorted(st.models) if st.models is not None else ["fake-model"]
            self._send(
                200, {"object": "list", "data": [{"id": m, "object": "model", "owned_by": "fake"} for m in names]}
            )

    def do_POST(self) -> None:
        st = self.server.state
        if (self.headers.get("Transfer-Encoding") or "").lower() == "chunked":
            raw = self._read_chunked()
        else:
            length = int(self.headers.get("Content-Length") or 0)
            raw = self.rfile.read(length) if length else b""
        try:
            body = json.loads(raw or b"{}")
        except json.JSONDecodeError:
            self._record(None, None)
            self._error(400, "request body is not JSON", "invalid_request_error")
            return
        path = self.path.split("?")[0]
        if path != "/v1/chat/completions":
            self._record(body, None)
            self._error(404, f"no route {path}", "not_found")
            return
        with st.lock:
            fault = st.faults.popleft() if st.faults else None
            st.in_flight += 1
            st.max_in_flight = max(st.max_in_flight, st.in_flight)
        self._record(body, fault)
        began = time.monotonic()
        try:
            self._chat(body, fault)
        finally:
            with st.lock:
                st.in_flight -= 1
                st.handled_s.append(time.monotonic() - began)

    def _chat(self, body: dict[str, Any], fault: Fault | None) -> None:
        st = self.server.state
        if st.latency:
            time.sleep(st.latency)
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
                self._error(fault.status, fault.message, code, headers)
                return
            if fault.kind == "drop":
                self.close_connection = True
                try:
                    self.connection.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
                return
            if fault.kind == "malformed":
                self._send(200, b'{"id": "chatcmpl-broken", "choices": [ {"index": 0,, <<garbled')
                return
            if fault.kind == "body":
                self.send_response(200)
                self.send_header("Content-Type", fault.content_type)
                self.send_header("Content-Length", str(len(fault.body)))
                self.end_headers()
                self.wfile.write(fault.body)
                self.wfile.flush()
                return
            if fault.kind == "truncate":
                raw = json.dumps({"id": "x", "choices": [{"index": 0, "message": {"content": "x" * 400}}]}).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(raw)))
                self.end_headers()
                self.wfile.write(raw[: len(raw) // 2])
                self.wfile.flush()
                self.close_connection = True
                try:
                    self.connection.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
                return
            if fault.kind == "hang":
                deadline = time.monotonic() + fault.delay
                while time.monotonic() < deadline and not self.server.stopping:
                    time.sleep(0.05)
                self.close_connection = True  # the client gave up long ago, or the server stops
                return
            if fault.kind == "slow":
                time.sleep(fault.delay)
        if not self._auth_ok():
            self._error(401, "Incorrect API key provided (fake)", "invalid_api_key")
            return
        for param in sorted(st.reject_params):
            if param in body:
                hint = " Use 'max_completion_tokens' instead." if param == "max_tokens" else ""
                self._error(
                    400,
                    f"Unsupported parameter: '{param}' is not supported with this model.{hint}",
                    "invalid_request_error",
                )
                return
        model = body.get("model")
        if st.models is not None and model not in st.models:
            self._error(404, f"The model `{model}` does not exist (fake)", "model_not_found")
            return
        n = int(body.get("n") or 1)
        if st.ignore_n or (fault is not None and fault.kind == "ignore_n"):
            n = 1
        texts = self.server.reply_texts(body, n)
        prompt = sum(_words(str(m.get("content", ""))) for m in body.get("messages", []))
        comp = sum(_words(t) for t in texts)
        idx = next(st.counter)
        self._send(
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


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 256  # the default backlog of 5 drops bursts of concurrent connects
    block_on_close = False

    def __init__(self, state: _State) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.state = state
        self.stopping = False

    def handle_error(self, request: Any, client_address: Any) -> None:
        """Clients that hang up early (timeouts, the drop fault) are expected; stay quiet."""
        import sys

        exc = sys.exc_info()[1]
        if isinstance(exc, (ConnectionError, TimeoutError)):
            return
        super().handle_error(request, client_address)

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
    """Start with ``with`` (or ``start()``/``stop()``); serves in a daemon thread."""

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
        self._thread: threading.Thread | None = None

    # --- lifecycle -----------------------------------------------------------------------
    def start(self) -> FakeOpenAIServer:
        self._server = _Server(self._state)
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.stopping = True
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    def __enter__(self) -> FakeOpenAIServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # --- configuration -------------------------------------------------------------------
    @property
    def port(self) -> int:
        if self._server is None:
            raise RuntimeError("the fake server is not running")
        return int(self._server.server_address[1])

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

    def runqueue_wait_s(self) -> float | None:
        """Seconds this process's threads have waited for a core, the ended connection threads
        included (see ``runqueue_wait_s``)."""
        with self._state.lock:
            ended, done = self._state.ended_wait_s, set(self._state.ended_threads)
        live = runqueue_wait_s(exclude=done)
        return None if live is None else live + ended

    @property
    def handled_s(self) -> list[float]:
        """Seconds each chat request took from being read to being answered (latency included)."""
        with self._state.lock:
            return list(self._state.handled_s)


def _thread_wait_s(path: str) -> float | None:
    try:
        with open(path) as f:
            return int(f.read().split()[1]) / 1e9
    except (OSError, IndexError, ValueError):
        return None


def runqueue_wait_s(*, main_thread: bool = False, exclude: Iterable[int] = ()) -> float | None:
    """Seconds this process's live threads (or only its main thread; ``exclude``: thread ids to
    leave out) have spent runnable but not running (waiting for a core), from the kernel's
    scheduler statistics; None where the kernel does not expose them. A thread that ends takes
    its share with it (``FakeOpenAIServer.runqueue_wait_s`` keeps its connection threads')."""
    if main_thread:
        return _thread_wait_s("/proc/self/schedstat")
    try:
        tasks = os.listdir("/proc/self/task")
    except OSError:
        return None
    skip = {str(t) for t in exclude}
    return sum(_thread_wait_s(f"/proc/self/task/{tid}/schedstat") or 0.0 for tid in tasks if tid not in skip)


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m lm.fake_server [--latency S] [--ignore-n] [--identity]``: serve in this process,
    print the base URL on stdout, stop when stdin closes (benchmarks run it out of process so the
    server's threads do not share the client's GIL), then print one JSON line of what serving cost: chat
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
        ready, waited = time.process_time(), srv.runqueue_wait_s()
        print(srv.base_url, flush=True)
        sys.stdin.read()
        waited_after = srv.runqueue_wait_s()  # while the serving thread lives
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
