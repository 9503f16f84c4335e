"""Reading what arrives at the door, over real TCP: bodies that come in pieces, bodies and
headers built to crash or exhaust the server. Each answer must be a small, fast 4xx JSON error
that changes nothing in Redis."""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

import pytest
import redis
from aiohttp.test_utils import TestClient, TestServer

from config import Settings
from ops.redis_server import LocalRedis
from sessions.keys import PREFIX, session_key
from tests.factories import (
    CALLBACK_SECRET,
    capture_body,
    payment_body,
    shopify_headers,
    signed_callback,
)
from webhook.app import create_app

DB = 7


@pytest.fixture
def settings(redis_server: LocalRedis) -> Settings:
    return Settings(
        redis_url=f"redis://127.0.0.1:{redis_server.port}/{DB}",
        simulator_webhook_secret=CALLBACK_SECRET,
        admin_token="admin-token-for-body-tests",
        shopify_access_token="shpat_fallback_for_every_shop",
    )


@pytest.fixture
async def server(aiohttp_server: Any, settings: Settings, inspect: redis.Redis) -> TestServer:
    return await aiohttp_server(create_app(settings))


async def send_in_pieces(
    port: int, head: bytes, body: bytes, *, pieces: int = 3, pause: float = 0.05
) -> tuple[int, bytes]:
    """POST over a raw socket, the body in `pieces` TCP writes with pauses between them, as a
    slow network delivers it; returns the status and the response body."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(head + f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n".encode())
        await writer.drain()
        size = max(1, -(-len(body) // pieces))
        for start in range(0, len(body), size):
            await asyncio.sleep(pause)
            writer.write(body[start : start + size])
            await writer.drain()
        return await read_response(reader)
    finally:
        writer.close()


async def read_response(reader: asyncio.StreamReader) -> tuple[int, bytes]:
    """Status and body of one HTTP/1.1 response (by its Content-Length: a server that
    refused a body early may keep the connection open to drain the rest)."""
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), timeout=10)
    status_line, *lines = head.decode("latin-1").split("\r\n")
    length = next(
        int(v) for n, _, v in (x.partition(":") for x in lines) if n.lower() == "content-length"
    )
    body = await asyncio.wait_for(reader.readexactly(length), timeout=10)
    return int(status_line.split()[1]), body


def request_head(path: str, headers: dict[str, str | bytes], method: str = "POST") -> bytes:
    """The request line and headers; a bytes value goes on the wire as it is."""
    lines = [f"{method} {path} HTTP/1.1".encode(), b"Host: 127.0.0.1"]
    if method == "POST":
        lines.append(b"Content-Type: application/json")
    for name, value in headers.items():
        lines.append(
            name.encode() + b": " + (value if isinstance(value, bytes) else value.encode())
        )
    return b"\r\n".join(lines) + b"\r\n"


async def test_a_session_whose_body_arrives_in_pieces_is_accepted(
    server: TestServer, inspect: redis.Redis
) -> None:
    body = capture_body()
    status, answer = await send_in_pieces(
        server.port,
        request_head("/capture_sessions", shopify_headers()),
        json.dumps(body).encode(),
    )
    assert (status, json.loads(answer)) == (201, {})
    assert inspect.hget(session_key(body["id"]), "state") == "received"


async def test_a_psp_callback_whose_body_arrives_in_pieces_is_accepted(
    aiohttp_client: Any, server: TestServer, inspect: redis.Redis
) -> None:
    client: TestClient[Any, Any] = await aiohttp_client(server)
    payment = payment_body()
    created = await client.post("/payment_sessions", json=payment, headers=shopify_headers())
    assert created.status == 201
    raw, headers = signed_callback(payment["id"], "approved")
    status, answer = await send_in_pieces(
        server.port, request_head(f"/psp/simulator/payments/{payment['id']}", headers), raw
    )
    assert (status, json.loads(answer)) == (200, {"status": "accepted"})
    assert inspect.hget(session_key(payment["id"]), "outcome") == "approved"


async def test_a_chunked_body_past_the_limit_is_413_however_it_arrives(
    server: TestServer, settings: Settings, inspect: redis.Redis
) -> None:
    # No Content-Length to refuse up front: the bound must hold while reading. The server
    # answers as soon as the limit is passed, so nothing more is written after that.
    reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
    head = request_head("/capture_sessions", shopify_headers())
    writer.write(head + b"Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n")
    half = settings.max_body_bytes // 2 + 1
    try:
        for _ in range(2):
            writer.write(f"{half:x}\r\n".encode() + b"x" * half + b"\r\n")
            await writer.drain()
            await asyncio.sleep(0.05)
        status, answer = await read_response(reader)
    finally:
        writer.close()
    assert status == 413
    assert json.loads(answer)["error"]["code"] == "payload_too_large"
    assert inspect.dbsize() == 0


NOT_UTF8 = b"r-\xff\xfe-\xc3"
DEEP = b"[" * 30_000 + b"]" * 30_000


def _capture(**replace: bytes) -> bytes:
    """A valid capture body whose amount (or any field) is replaced by raw JSON text."""
    body = capture_body(**dict.fromkeys(replace, "@"))
    raw = json.dumps(body).encode()
    for name, value in replace.items():
        raw = raw.replace(f'"{name}": "@"'.encode(), f'"{name}": '.encode() + value)
    return raw


ADMIN = {"Authorization": "Bearer admin-token-for-body-tests"}
HOSTILE = [
    ("deep JSON", "/capture_sessions", {}, _capture(customer=DEEP), 400, "invalid_json"),
    (
        "huge exponent",
        "/capture_sessions",
        {},
        _capture(amount=b"1e2000000"),
        400,
        "invalid_json",
    ),
    (
        "huge integer",
        "/capture_sessions",
        {},
        _capture(amount=b"9" * 60_000),
        400,
        "invalid_json",
    ),
    (
        "huge amount text",
        "/capture_sessions",
        {},
        _capture(amount=b'"' + b"9" * 60_000 + b'"'),
        422,
        "invalid_field",
    ),
    (
        "request id not UTF-8",
        "/capture_sessions",
        {"Shopify-Request-Id": NOT_UTF8},
        _capture(),
        400,
        "invalid_header",
    ),
    ("deep JSON to the admin API", "/admin/replay", ADMIN, DEEP, 400, "invalid_json"),
    (
        "huge number to the admin API",
        "/admin/replay",
        ADMIN,
        b'{"failed": true, "limit": 1e2000000}',
        400,
        "invalid_json",
    ),
    (
        "unpaired surrogate in a string",
        "/admin/replay",
        ADMIN,
        b'{"session_ids": ["a\\udc80"]}',
        400,
        "invalid_json",
    ),
    (
        "unpaired surrogate in a key",
        "/capture_sessions",
        {},
        _capture(customer=b'{"\\ud800": 1}'),
        400,
        "invalid_json",
    ),
    (
        "admin token not UTF-8",
        "/admin/replay",
        {"Authorization": b"Bearer " + NOT_UTF8},
        b"{}",
        401,
        "unauthorized",
    ),
    (
        "callback signature not UTF-8",
        "/psp/simulator/payments/p-1",
        {"X-Payhook-Signature": NOT_UTF8},
        b"{}",
        401,
        "bad_signature",
    ),
]


@pytest.mark.parametrize(
    ("case", "path", "headers", "body", "status", "code"),
    HOSTILE,
    ids=[case[0] for case in HOSTILE],
)
async def test_hostile_input_gets_a_small_fast_4xx_and_changes_nothing(
    server: TestServer,
    inspect: redis.Redis,
    case: str,
    path: str,
    headers: dict[str, str | bytes],
    body: bytes,
    status: int,
    code: str,
) -> None:
    sent = {**shopify_headers(), **headers} if path.endswith("_sessions") else headers
    started = time.perf_counter()
    got, answer = await send_in_pieces(server.port, request_head(path, sent), body, pieces=1)
    elapsed = time.perf_counter() - started
    assert (got, json.loads(answer)["error"]["code"]) == (status, code), case
    assert len(answer) < 1024, f"{case}: a {len(answer)}-byte answer"
    assert elapsed < 1.0, f"{case}: {elapsed:.2f}s"
    # Nothing but the count of wrong admin tokens, which is how guessing is stopped.
    assert [k for k in inspect.scan_iter() if not k.startswith(f"{PREFIX}admin-attempts:")] == []


async def test_an_error_never_echoes_an_unbounded_path(
    server: TestServer, inspect: redis.Redis
) -> None:
    long_id = "a" * 7000
    for method, path, headers in [
        ("GET", f"/admin/sessions/{long_id}", ADMIN),
        ("POST", f"/psp/simulator/payments/{long_id}", {}),
    ]:
        head = request_head(path, dict(headers), method=method)
        status, answer = await send_in_pieces(server.port, head, b"", pieces=1)
        assert 400 <= status < 500
        assert len(answer) < 1024
