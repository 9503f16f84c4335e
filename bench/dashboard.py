"""What a dashboard page costs with a large store behind it.

    python -m bench.dashboard [--sessions 20000] [--failed 500]

Fills a fresh `redis-server` with `sessions` unfinished capture sessions (one a second back
from now) and `failed` dead letters, written through the store, then times each dashboard
page through the real app (best of three) and how long Redis spent in the longest scripts the
overview ran (its SLOWLOG, which also times each command, so pages run a little slower here).
Redis runs on 127.0.0.1 only.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import tempfile
import time
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

from aiohttp.test_utils import TestClient, TestServer
from redis.asyncio import Redis

from config import Settings
from ops.redis_server import LocalRedis, free_port
from readouts.stats import COUNT_SLICE, DUE_SCAN_SCRIPT
from sessions.models import Kind, Session, TimelineEvent
from sessions.states import Event, State
from sessions.store import Change, SessionStore
from webhook.app import create_app

TOKEN = "bench-dashboard-admin-token-0123456789"
PAGES = (
    "/admin",
    "/admin/dashboard/sessions",
    "/admin/dashboard/sessions?state=failed",
    "/admin/dashboard/failed",
    "/admin/dashboard/held",
    "/admin/dashboard/bulk-replay",
)


def _session(session_id: str, created: float) -> Session:
    return Session(
        id=session_id,
        kind=Kind.CAPTURE,
        gid=f"gid://shopify/CaptureSession/{session_id}",
        shop="bench-shop.myshopify.com",
        payment_id=f"pay_{session_id}",
        amount=Decimal("10.00"),
        currency="EUR",
        merchant_locale="en",
        proposed_at=datetime.fromtimestamp(created, UTC),
        test=True,
        request_id="bench",
        api_version="2025-10",
        state=State.RECEIVED,
        created_at=created,
        updated_at=created,
    )


async def _fill(store: SessionStore, sessions: int, failed: int) -> None:
    now = time.time()
    for i in range(sessions + failed):
        session = _session(f"bench{i:08d}", now - i)
        event = TimelineEvent(at=session.created_at, event="received", state=State.RECEIVED)
        await store.create(session, event, due_at=now + 3600, queue=False)
        if i >= sessions:
            fields = {"last_error": "HTTP 503", "failed_at": now}
            failure = Change.of(Event.FAILED, at=now, error="HTTP 503", due_at=None, fields=fields)
            await store.change(session, failure)


# The overview's scripts by their hash (EVALSHA) or their text (EVAL). The due summary is
# no script but a MULTI of six short commands, unless the store is still being indexed.
_SCRIPTS = {"state counts": COUNT_SLICE, "due summary (scan)": DUE_SCAN_SCRIPT}
_BY_SHA = {hashlib.sha1(text.encode()).hexdigest(): name for name, text in _SCRIPTS.items()}


def _script_name(command: str) -> str:
    words = command.split()
    if words[0].upper() == "EVALSHA" and len(words) > 1:
        return _BY_SHA.get(words[1], "other script")
    for name, text in _SCRIPTS.items():
        # SLOWLOG keeps the first 128 characters of each argument.
        if text.strip()[:40] in command:
            return name
    return "other script"


def _text(command: object) -> str:
    return command.decode(errors="replace") if isinstance(command, bytes) else str(command)


async def run(sessions: int, failed: int) -> None:
    server = LocalRedis(Path(tempfile.mkdtemp()), port=free_port()).start()
    redis = Redis(port=server.port)
    try:
        await _fill(SessionStore(redis), sessions, failed)
        print(f"{sessions} unfinished sessions, {failed} failed")
        settings = Settings(redis_url=f"redis://127.0.0.1:{server.port}/0", admin_token=TOKEN)
        app = create_app(settings)
        async with TestClient(TestServer(app)) as client:
            auth = {"Authorization": f"Bearer {TOKEN}"}
            for path in PAGES:
                if path == "/admin":
                    await redis.config_set("slowlog-log-slower-than", 0)
                    await redis.config_set("slowlog-max-len", 100_000)
                    await redis.slowlog_reset()
                times = []
                for _ in range(3):
                    started = time.perf_counter()
                    answer = await client.get(path, headers=auth)
                    await answer.read()
                    times.append(time.perf_counter() - started)
                    assert answer.status == 200, (path, answer.status)
                print(f"{path:42s} {min(times) * 1000:8.1f} ms")
                if path == "/admin":
                    longest: dict[str, int] = {}
                    for entry in await redis.slowlog_get(100_000):
                        command = _text(entry["command"])
                        if command.upper().startswith("EVAL"):
                            name = _script_name(command)
                            longest[name] = max(longest.get(name, 0), int(entry["duration"]))
                    await redis.config_set("slowlog-log-slower-than", 10_000)
                    for name, micros in sorted(longest.items()):
                        print(f"  longest Redis script: {name:17s} {micros / 1000:11.1f} ms")
    finally:
        await redis.aclose()
        server.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sessions", type=int, default=20_000)
    parser.add_argument("--failed", type=int, default=500)
    args = parser.parse_args()
    asyncio.run(run(args.sessions, args.failed))


if __name__ == "__main__":
    main()
