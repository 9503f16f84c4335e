"""`PspHttp`: every way the network fails becomes a `TryAgain`, ambiguous only when the
request may have reached the provider."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from decimal import Decimal

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from ops.redis_server import free_port
from workers.connectors.base import TryAgain
from workers.connectors.http_client import PspHttp, Reply

ServerFactory = Callable[..., Awaitable[TestServer]]


async def serve(aiohttp_server: ServerFactory, handler: Callable[..., object]) -> str:
    app = web.Application()
    app.router.add_route("*", "/x", handler)  # type: ignore[arg-type]
    server = await aiohttp_server(app)
    return str(server.make_url("")).rstrip("/")


async def test_nobody_listening_is_a_retry_that_sent_nothing() -> None:
    http = PspHttp(f"http://127.0.0.1:{free_port()}", name="psp", timeout_seconds=1)
    try:
        answer = await http.request("POST", "/x", json_body={})
    finally:
        await http.close()
    assert isinstance(answer, TryAgain)
    assert not answer.ambiguous
    assert "cannot connect" in answer.reason


async def test_a_slow_answer_is_ambiguous_for_a_write_but_not_for_a_read(
    aiohttp_server: ServerFactory,
) -> None:
    async def slow(request: web.Request) -> web.Response:
        await asyncio.sleep(1)
        return web.json_response({})

    http = PspHttp(await serve(aiohttp_server, slow), name="psp", timeout_seconds=0.2)
    try:
        write = await http.request("POST", "/x", json_body={})
        read = await http.request("GET", "/x")
    finally:
        await http.close()
    assert isinstance(write, TryAgain)
    assert write.ambiguous
    assert isinstance(read, TryAgain)
    assert not read.ambiguous


async def test_a_reset_connection_after_sending_is_ambiguous(
    aiohttp_server: ServerFactory,
) -> None:
    async def hang_up(request: web.Request) -> web.Response:
        assert request.transport is not None
        request.transport.close()
        await asyncio.sleep(0.1)
        return web.json_response({})

    http = PspHttp(await serve(aiohttp_server, hang_up), name="psp", timeout_seconds=1)
    try:
        answer = await http.request("POST", "/x", json_body={})
    finally:
        await http.close()
    assert isinstance(answer, TryAgain)
    assert answer.ambiguous


async def test_any_status_is_a_reply_with_json_decimals_and_retry_after(
    aiohttp_server: ServerFactory,
) -> None:
    async def answer(request: web.Request) -> web.Response:
        if request.method == "GET":
            return web.Response(status=502, text="<html>bad gateway</html>")
        return web.json_response(
            {"amount": 1.99, "error": {"message": "slow down"}},
            status=429,
            headers={"Retry-After": "12"},
        )

    http = PspHttp(await serve(aiohttp_server, answer), name="psp", timeout_seconds=1)
    try:
        limited = await http.request("POST", "/x", json_body={})
        html = await http.request("GET", "/x")
    finally:
        await http.close()
    assert isinstance(limited, Reply)
    assert (limited.status, limited.retry_after, limited.message()) == (429, 12.0, "slow down")
    assert limited.at("amount") == Decimal("1.99")
    assert isinstance(html, Reply)
    assert (html.status, html.body, html.message()) == (502, None, None)


@pytest.mark.parametrize(
    ("header", "seconds"),
    [
        ("30", 30.0),
        ("Thu, 01 Jan 1970 00:00:00 GMT", 0.0),
        ("-1", None),
        ("NaN", None),
        ("x", None),
    ],
)
async def test_a_psps_retry_after_is_seconds_or_nothing(
    aiohttp_server: ServerFactory, header: str, seconds: float | None
) -> None:
    async def busy(request: web.Request) -> web.Response:
        return web.Response(status=503, headers={"Retry-After": header})

    http = PspHttp(await serve(aiohttp_server, busy), name="psp", timeout_seconds=1)
    try:
        reply = await http.request("POST", "/x", json_body={})
    finally:
        await http.close()
    assert isinstance(reply, Reply)
    assert reply.retry_after == seconds


async def test_a_borrowed_session_is_left_open() -> None:
    import aiohttp

    async with aiohttp.ClientSession() as session:
        http = PspHttp("http://127.0.0.1:1", name="psp", timeout_seconds=1, session=session)
        await http.close()
        assert not session.closed
