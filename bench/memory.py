"""Redis memory benchmark: what one session costs, and that retention keeps memory flat.

    python -m bench.memory [--rate 200] [--seconds 60] [--retention 15]

Two runs on fresh `redis-server`s, each a steady load of capture sessions for `seconds`,
`rate` per second, every one written the way payhook writes it: intake's create, the
worker's claim, ledger reservation, PSP outcome with the ledger commit, report with the
lease release (the store's own Lua scripts), one payment book per capture, and the
sweeper itself (`workers.sweeper`) at the cadence the settings give: every
`PAYHOOK_SWEEP_INTERVAL_SECONDS`, in batches of `PAYHOOK_SWEEP_BATCH`.

1. Retention longer than the run (the baseline): memory grows with every session; its slope
   is the cost of one finished session (fields, timeline, indexes, its ledger book).
2. Retention of `retention` seconds (sessions and ledger books): memory stops growing once
   the first sessions expire and stays level while the load goes on.

It prints used_memory, the key count and the listing index's size every 5 s for both, and
the figures that matter: bytes per session, the growth over the last half of the retention
run, and the listing's largest size there (flat: the sweeper keeps up with the rate). Redis
runs on 127.0.0.1 only.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import tempfile
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

from redis.asyncio import Redis

from config import Settings
from ops.redis_server import LocalRedis
from sessions.change import Change, LedgerVerdict
from sessions.claims import Claimed, Claims
from sessions.keys import INDEX_CREATED
from sessions.ledger import Book
from sessions.ledger_store import LedgerStore
from sessions.models import Kind, Op, Outcome, Report, Session, TimelineEvent
from sessions.states import Event, State
from sessions.store import SessionStore
from workers.sweeper import sweep_as_configured

SAMPLE_SECONDS = 5.0
IN_FLIGHT = 32
SHOP = "bench-shop.myshopify.com"


@dataclass(frozen=True)
class Sample:
    at: float
    written: int
    used_bytes: int
    keys: int
    listed: int


def _session(index: int, now: float) -> Session:
    session_id = f"mem{index:09d}-{int(now * 1000) % 1_000_000:06d}"
    return Session(
        id=session_id,
        kind=Kind.CAPTURE,
        gid=f"gid://shopify/CaptureSession/{session_id}",
        shop=SHOP,
        payment_id=f"pay{index:09d}",
        amount=Decimal("25.00"),
        currency="EUR",
        merchant_locale="en",
        proposed_at=datetime.now(UTC),
        test=True,
        request_id=f"req-{session_id}",
        api_version="2025-10",
        state=State.RECEIVED,
        created_at=now,
        updated_at=now,
    )


def _change(
    happened: Event,
    now: float,
    detail: str,
    ledger: LedgerVerdict | None = None,
    **fields: object,
) -> Change:
    return Change.of(
        happened,
        at=now,
        attempt=1,
        detail=detail,
        due_at=None if happened is Event.REPORTED else now + 30,
        fields=fields,
        ledger=ledger,
    )


async def _one(index: int, store: SessionStore, claims: Claims, ledger: LedgerStore) -> None:
    now = time.time()
    session = _session(index, now)
    received = TimelineEvent(at=now, event="received", state=State.RECEIVED)
    await store.create(session, received, due_at=now + 30, queue=False)
    claim = await claims.claim(session.id, now=now, lease_seconds=30)
    assert isinstance(claim, Claimed)
    await ledger.open(session.payment_id, Book(currency="EUR", authorized=10_000))
    await ledger.reserve(session.payment_id, session.id, Op.CAPTURE, 2500, "EUR", now)
    settled = _change(
        Event.PSP_SETTLED,
        now,
        f"approved psp_capture_{session.id}",
        LedgerVerdict(session.payment_id, approved=True),
        outcome=Outcome.APPROVED,
        psp_reference=f"psp_capture_{session.id}",
        psp_attempts=1,
    )
    await claims.apply(session.id, claim.fence, settled)
    done = _change(Event.REPORTED, now, "captureSessionResolve", report=Report.RESOLVED)
    await claims.apply(session.id, claim.fence, done, release=True)


async def _sweeper(store: SessionStore, settings: Settings) -> None:
    """What beat and a worker do: the real sweep, every sweep interval."""
    while True:
        await sweep_as_configured(store, settings, now=time.time())
        await asyncio.sleep(settings.sweep_interval_seconds)


async def _load(
    url: str, settings: Settings, *, rate: float, seconds: float, retention: int
) -> list[Sample]:
    redis = Redis.from_url(url)
    store = SessionStore(redis)
    claims = Claims(redis, retention_seconds=retention)
    ledger = LedgerStore(redis, retention_seconds=retention)
    samples: list[Sample] = []
    began = time.monotonic()
    written = 0
    next_sample = 0.0
    sweeper = asyncio.create_task(_sweeper(store, settings))
    try:
        while (elapsed := time.monotonic() - began) < seconds:
            due = int(elapsed * rate)
            for start in range(written, due, IN_FLIGHT):
                chunk = range(start, min(due, start + IN_FLIGHT))
                await asyncio.gather(*(_one(i, store, claims, ledger) for i in chunk))
            written = due
            if elapsed >= next_sample:
                info = await redis.info("memory")
                keys = int(await redis.dbsize())
                listed = int(await redis.zcard(INDEX_CREATED))
                samples.append(Sample(elapsed, written, int(info["used_memory"]), keys, listed))
                next_sample += SAMPLE_SECONDS
            await asyncio.sleep(0.02)
    finally:
        sweeper.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await sweeper
        await redis.aclose()
    return samples


def _run(
    state: Path, name: str, settings: Settings, *, rate: float, seconds: float, retention: int
) -> list[Sample]:
    server = LocalRedis(state / name).start()
    try:
        return asyncio.run(
            _load(server.url, settings, rate=rate, seconds=seconds, retention=retention)
        )
    finally:
        server.stop()


def _arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0] if __doc__ else None)
    parser.add_argument("--rate", type=float, default=200.0, help="sessions per second")
    parser.add_argument("--seconds", type=float, default=60.0, help="length of each run")
    parser.add_argument(
        "--retention", type=int, default=15, help="retention of the second run, seconds"
    )
    return parser.parse_args()


@dataclass(frozen=True)
class Memory:
    rate: float
    seconds: float
    retention: int
    kept: list[Sample]
    expiring: list[Sample]

    @property
    def bytes_per_session(self) -> float:
        first, last = self.kept[1], self.kept[-1]
        return (last.used_bytes - first.used_bytes) / max(1, last.written - first.written)

    @property
    def growth_last_half_mb(self) -> float:
        half = [s for s in self.expiring if s.at >= self.seconds / 2]
        if len(half) < 2:
            return float("nan")
        return (half[-1].used_bytes - half[0].used_bytes) / 2**20

    @property
    def peak_listed_last_half(self) -> int:
        """The listing index at its largest over the last half of the retention run."""
        return max((s.listed for s in self.expiring if s.at >= self.seconds / 2), default=0)

    @property
    def peak_expiring_mb(self) -> float:
        return max(s.used_bytes for s in self.expiring) / 2**20


def measure(
    *, rate: float, seconds: float, retention: int, settings: Settings | None = None
) -> Memory:
    """Both runs, each on a fresh `redis-server`, swept as `settings` say."""
    settings = settings or Settings()
    with tempfile.TemporaryDirectory(prefix="payhook-bench-memory-") as directory:
        state = Path(directory)
        kept = _run(state, "kept", settings, rate=rate, seconds=seconds, retention=10**7)
        expiring = _run(
            state, "expiring", settings, rate=rate, seconds=seconds, retention=retention
        )
    return Memory(rate, seconds, retention, kept, expiring)


def main() -> int:
    args = _arguments()
    settings = Settings()
    found = measure(
        rate=args.rate, seconds=args.seconds, retention=args.retention, settings=settings
    )
    kept, expiring = found.kept, found.expiring
    mb = 2**20
    print(
        f"\nRedis memory under {args.rate:g} captures/s for {args.seconds:g} s; swept every "
        f"{settings.sweep_interval_seconds:g} s, batches of {settings.sweep_batch}"
    )
    print(
        f"{'t s':>5} {'written':>8}  {'kept: MB':>9} {'keys':>8}"
        f"  {'expiring: MB':>12} {'keys':>8} {'listed':>8}"
    )
    for a, b in zip(kept, expiring, strict=False):
        print(
            f"{a.at:5.0f} {a.written:8d}  {a.used_bytes / mb:9.1f} {a.keys:8d}"
            f"  {b.used_bytes / mb:12.1f} {b.keys:8d} {b.listed:8d}"
        )
    print(
        "\none finished session (fields, timeline, indexes, ledger book): "
        f"{found.bytes_per_session:,.0f} B"
    )
    print(
        f"with {args.retention} s retention: peak {found.peak_expiring_mb:.1f} MB, "
        f"growth over the last half {found.growth_last_half_mb:+.2f} MB "
        f"(without retention: {(kept[-1].used_bytes - kept[0].used_bytes) / mb:+.1f} MB); "
        f"listing at most {found.peak_listed_last_half:,} sessions over the last half "
        f"({args.rate * args.retention:,.0f} within retention)"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
