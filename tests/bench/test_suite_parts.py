"""The suite's parts on tiny counts, so they keep working between full runs: the load
generators against a real aiohttp server, and the report (tables, targets, chart) from a
result shaped as the suite writes it."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from bench.flame import by_package, top_frames
from bench.load import closed_loop, open_loop, percentile
from bench.report import markdown, targets, write_outputs


@pytest.fixture
async def server(aiohttp_server: Any) -> str:
    seen: list[str] = []

    async def accept(request: web.Request) -> web.Response:
        seen.append(json.loads(await request.read())["id"])
        status = 409 if seen.count(seen[-1]) > 1 else 201
        return web.json_response({}, status=status)

    app = web.Application()
    app.router.add_post("/capture_sessions", accept)
    running = await aiohttp_server(app)
    return f"http://127.0.0.1:{running.port}"


async def test_the_closed_loop_sends_ids_no_other_request_used(server: str) -> None:
    found = await closed_loop(server, connections=4, seconds=0.3, tag="t")
    assert found.requests > 0
    assert found.errors == 0  # a repeated id would have been answered 409
    assert found.p50_ms <= found.p99_ms <= found.max_ms


async def test_the_open_loop_offers_its_rate_and_records_when_each_was_due(server: str) -> None:
    sent_at: dict[str, float] = {}
    ids = [f"o{i}" for i in range(20)]
    found = await open_loop(server, rate=100, seconds=0.2, ids=ids, sent_at=sent_at)
    assert found.requests == 20
    assert found.errors == 0
    assert found.offered_per_second == 100
    assert sorted(sent_at) == sorted(ids)
    assert 0.15 < max(sent_at.values()) - min(sent_at.values()) < 0.5


def test_percentiles_are_nearest_rank() -> None:
    values = [float(v) for v in range(1, 101)]
    assert percentile(values, 0.5) == 50
    assert percentile(values, 0.99) == 99
    assert percentile(values, 0.999) == 100
    assert math.isnan(percentile([], 0.5))


def _run(server: str, connections: int, rate: float) -> dict[str, Any]:
    return {
        "server": server,
        "connections": connections,
        "per_second": rate,
        "p50_ms": 1.0,
        "p99_ms": 2.0,
        "p999_ms": 3.0,
        "errors": 0,
        "load_average": [1.0, 1.0, 1.0],
    }


RESULT: dict[str, Any] = {
    "command": "python -m bench.suite --quick",
    "machine": {"cpus": 2, "cpu": "test"},
    "ingest": {
        "generator": "wrk",
        "runs": [
            _run("bare", 32, 10000),
            _run("floor", 32, 5000),
            _run("naive", 32, 1000),
            _run("payhook", 32, 4500),
        ],
        "latency_at_half": {
            "rate": 2250,
            "bare": {"per_second": 2250, "p50_ms": 1, "p99_ms": 2, "p999_ms": 3, "errors": 0},
            "payhook": {"per_second": 2250, "p50_ms": 2, "p99_ms": 12, "p999_ms": 20, "errors": 0},
        },
    },
    "e2e": {
        "rates": [
            {
                "rate": 200,
                "sent": 10,
                "reported": 10,
                "p50_ms": 30.0,
                "p99_ms": 100.0,
                "p999_ms": 120.0,
                "ack": {"p99_ms": 5.0},
                "max_queue": 3,
                "load_average": [1.0, 1.0, 1.0],
            }
        ]
    },
    "peak_rss_mb": {"ingest payhook": 90.0},
}


def test_the_report_says_which_targets_are_met() -> None:
    verdicts = {target: verdict for target, _, verdict in targets(RESULT)}
    assert verdicts["ingest ≥ 0.8 x floor"] == "met"  # 0.9
    assert verdicts["ingest ≥ 3 x naive"] == "met"  # 4.5
    assert verdicts["ack p99 ≤ 10 ms at half the maximum rate"] == "**not met**"  # 12 ms
    assert verdicts["end to end at 200/s: p50 ≤ 40 ms, p99 ≤ 150 ms"] == "met"
    table = markdown(RESULT)
    assert "| payhook serve | 32 | 4500 |" in table
    assert "| ingest payhook | 90.0 |" in table


def test_the_outputs_are_json_markdown_and_a_chart(tmp_path: Path) -> None:
    pytest.importorskip("matplotlib")
    paths = write_outputs(RESULT, tmp_path)
    assert json.loads(paths.json.read_text())["ingest"]["runs"][3]["per_second"] == 4500
    assert paths.markdown.read_text().startswith("Command: `python -m bench.suite --quick`")
    assert paths.chart.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_the_flame_summary_sums_each_function_over_every_stack_it_is_on() -> None:
    # py-spy's collapsed stacks. On uvloop a callback's stack starts at its coroutine, so one
    # function sits under several roots; recursion must not count a sample twice.
    stacks = "\n".join(
        [
            "run (web.py:10);handle (sessions.py:140);create (store.py:5) 30",
            "handle (sessions.py:141);create (store.py:6) 50",
            "handle (sessions.py:142);walk (body.py:1);walk (body.py:2) 15",
            "idle (loop.py:1) 5",
        ]
    )
    assert top_frames(stacks, floor_percent=10.0) == [
        (95.0, "handle (sessions.py)"),
        (80.0, "create (store.py)"),
        (30.0, "run (web.py)"),
        (15.0, "walk (body.py)"),
    ]


def test_self_time_goes_to_the_package_of_the_innermost_frame() -> None:
    stacks = "\n".join(
        [
            "handle (webhook/sessions.py:140);execute (redis/client.py:9) 60",
            "handle (webhook/sessions.py:141) 30",
            "dumps (json/__init__.py:231) 10",
        ]
    )
    assert by_package(stacks) == [(60.0, "redis"), (30.0, "webhook"), (10.0, "json")]
