"""The client's transport and the fake endpoint's HTTP: one pool per endpoint, faults named right."""

from __future__ import annotations

import http.client
import json
import socket
import subprocess
import sys
import time

import anyio
import openai
import pytest
from lmtest_helpers import FAST_RETRY, make_backend

from lm import LMRequest, LMUnavailable
from lm.fake_server import FakeOpenAIServer, Fault

CHAT = "/v1/chat/completions"


def req(text: str = "hello") -> LMRequest:
    return LMRequest(model="fake-model", messages=[{"role": "user", "content": text}])


@pytest.mark.anyio
async def test_one_client_and_pool_per_endpoint(server: FakeOpenAIServer) -> None:
    """60 calls, 4 at a time: one SDK client on the SDK's aiohttp transport, and at most 4 TCP
    connections (the pool keeps them alive; no connection per call)."""
    async with make_backend(server, concurrency=4) as backend:
        client = backend._get_client()
        assert isinstance(client._client, openai.DefaultAioHttpClient)
        async with anyio.create_task_group() as tg:
            for i in range(60):
                tg.start_soon(backend.complete, req(f"q{i}"))
        assert backend._get_client() is client
    assert server.count(CHAT) == 60
    assert 1 <= server.connections <= 4
    assert {r.content_type for r in server.requests} == {"application/json"}
    assert sorted(b["messages"][0]["content"] for b in server.bodies) == sorted(f"q{i}" for i in range(60))


@pytest.mark.anyio
async def test_dropped_connection_every_time_is_a_connection_failure(server: FakeOpenAIServer) -> None:
    """The server closing the connection is reported as a lost connection, not a timeout (the
    SDK's aiohttp adapter calls it a ConnectTimeout), after the policy's attempts."""
    server.inject(*[Fault.drop()] * FAST_RETRY.max_attempts)
    async with make_backend(server) as backend:
        with pytest.raises(LMUnavailable) as info:
            await backend.complete(req())
    assert info.value.kind == "connection", str(info.value)
    assert "no answer within" not in str(info.value)
    assert server.count(CHAT) == FAST_RETRY.max_attempts


@pytest.mark.anyio
async def test_first_failure_is_attempt_one_of_the_policy(server: FakeOpenAIServer) -> None:
    """The bare first attempt and tenacity's attempts are one budget: 3 failures then success
    within 4 attempts is 4 requests; 4 failures is LMUnavailable after exactly 4."""
    server.inject(*[Fault.server_error()] * 3)
    async with make_backend(server) as backend:
        (done,) = await backend.complete(req("a"))
        assert done.text and server.count(CHAT) == 4
        server.inject(*[Fault.server_error()] * 4)
        with pytest.raises(LMUnavailable) as info:
            await backend.complete(req("b"))
    assert info.value.attempts == 4 and info.value.kind == "server"
    assert server.count(CHAT) == 8


def _raw_exchange(port: int, data: bytes) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        sock.sendall(data)
        chunks = []
        while chunk := sock.recv(65536):
            chunks.append(chunk)
    return b"".join(chunks)


def test_fake_endpoint_speaks_http11(server: FakeOpenAIServer) -> None:
    """Keep-alive (two requests on one connection), a chunked request body, Connection: close."""
    body = json.dumps({"model": "fake-model", "messages": [{"role": "user", "content": "hi"}]}).encode()
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=5)
    for _ in range(2):
        conn.request("POST", CHAT, body=body, headers={"Content-Type": "application/json"})
        resp = conn.getresponse()
        assert resp.status == 200 and json.loads(resp.read())["choices"][0]["message"]["content"]
    conn.close()
    assert server.connections == 1
    chunked = hex(len(body))[2:].encode() + b"\r\n" + body + b"\r\n0\r\n\r\n"
    out = _raw_exchange(
        server.port,
        b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
        + chunked,
    )
    head, _, payload = out.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200 ") and json.loads(payload)["object"] == "chat.completion"
    assert server.bodies[-1]["messages"][0]["content"] == "hi"
    assert _raw_exchange(server.port, b"GET /nowhere HTTP/1.1\r\nConnection: close\r\n\r\n").startswith(
        b"HTTP/1.1 404 "
    )


def test_hanging_request_ends_when_the_server_stops() -> None:
    srv = FakeOpenAIServer().start()
    srv.inject(Fault.hang())
    conn = http.client.HTTPConnection("127.0.0.1", srv.port, timeout=10)
    try:
        conn.request("POST", CHAT, body=b'{"model": "fake-model", "messages": []}')
        while srv.count(CHAT) == 0:
            time.sleep(0.01)
        began = time.monotonic()
        srv.stop()  # cancels the hang (it would wait an hour)
        assert time.monotonic() - began < 5
        with pytest.raises((http.client.RemoteDisconnected, ConnectionError)):
            conn.getresponse()
    finally:
        conn.close()


def test_cli_prints_the_url_then_what_serving_cost() -> None:
    proc = subprocess.Popen(
        [sys.executable, "-m", "lm.fake_server", "--latency", "0.01", "--identity"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None and proc.stdin is not None
    try:
        base = proc.stdout.readline().strip()
        host, port = base.removeprefix("http://").removesuffix("/v1").split(":")
        conn = http.client.HTTPConnection(host, int(port), timeout=5)
        prompt = "improve:\n```python\ndef f():\n    return 1\n```\n"
        payload = {"model": "m", "n": 2, "messages": [{"role": "user", "content": prompt}]}
        conn.request("POST", CHAT, body=json.dumps(payload))
        reply = json.loads(conn.getresponse().read())
        conn.close()
    finally:
        proc.stdin.close()
        stats = json.loads(proc.stdout.readline())
        proc.wait(timeout=10)
        proc.stdout.close()
    texts = [c["message"]["content"] for c in reply["choices"]]
    assert len(texts) == 2 and all("def f():\n    return 1" in t for t in texts)
    assert stats["requests"] == 1 and stats["mean_handled_s"] >= 0.01
    assert 0 <= stats["cpu_s"] < stats["startup_cpu_s"]  # serving one request costs less than starting
    assert stats["runqueue_wait_s"] is None or stats["runqueue_wait_s"] >= 0
