"""A PSP fake's steady answer latency (`payhook psp-sandbox NAME --latency S
--read-latency S`)."""

from __future__ import annotations

import time

import aiohttp

from sandbox.psp import start_psp_fake

CAPTURE = {"session_id": "s-1", "payment_id": "p-1", "amount": "10.00", "currency": "EUR"}


async def _capture(http: aiohttp.ClientSession, key: str) -> tuple[int, float]:
    started = time.perf_counter()
    async with http.post("/captures", json=CAPTURE, headers={"Idempotency-Key": key}) as answer:
        await answer.read()
        return answer.status, time.perf_counter() - started


async def test_every_money_call_answers_late_and_admin_calls_do_not() -> None:
    fake = await start_psp_fake("http", latency=0.3)
    try:
        async with aiohttp.ClientSession(base_url=fake.url) as http:
            first = await _capture(http, "s-1")
            replayed = await _capture(http, "s-1")
            started = time.perf_counter()
            async with http.get("/_sandbox/calls") as answer:
                calls = (await answer.json())["calls"]
            admin_seconds = time.perf_counter() - started
    finally:
        await fake.close()
    assert first[0] == 201
    assert first[1] >= 0.3
    assert replayed[0] == 409
    assert replayed[1] >= 0.3
    assert [c["applied"] for c in calls] == [True, False]
    assert admin_seconds < 0.3


async def test_every_read_answers_late_and_money_calls_keep_their_own_latency() -> None:
    fake = await start_psp_fake("http", read_latency=0.3)
    try:
        async with aiohttp.ClientSession(base_url=fake.url) as http:
            status, capture_seconds = await _capture(http, "s-1")
            started = time.perf_counter()
            async with http.get("/captures/s-1") as answer:
                read = (answer.status, time.perf_counter() - started)
            started = time.perf_counter()
            async with http.get("/_sandbox/charges") as answer:
                assert answer.status == 200
            admin_seconds = time.perf_counter() - started
    finally:
        await fake.close()
    assert (status, read[0]) == (201, 200)
    assert capture_seconds < 0.3
    assert read[1] >= 0.3
    assert admin_seconds < 0.3


async def test_without_latency_the_fake_answers_at_once() -> None:
    fake = await start_psp_fake("http")
    try:
        async with aiohttp.ClientSession(base_url=fake.url) as http:
            status, seconds = await _capture(http, "s-1")
    finally:
        await fake.close()
    assert status == 201
    assert seconds < 0.3
