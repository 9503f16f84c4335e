"""`payhook reconcile`: prove that what Shopify was told matches what the PSP did.

Walks the capture, refund and void sessions created in the window (the creation index)
that have a PSP outcome, were reported or failed (test sessions only on a test account),
asks the connector's `status` for each
one's operation, then its `authorization` for each of their payments that has a ledger
book, at no more than `--rate` calls a second in all; then walks every held reservation of
the ledger books (SCAN, bounded). Each session is judged by `ops.findings.check`, each book
by `ops.findings.check_book`.

Exit code: 0 everything checked matched, 1 a mismatch (cron mails it), 2 a usage error,
3 no mismatch but something could not be checked (the PSP did not answer for it): a run
that could check nothing must not pass for a clean one.
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

from redis.asyncio import Redis

from config import Settings
from errors import ConnectorSettingsError
from ops.findings import Check, Finding, check, check_book
from readouts.held import Held
from redisio.connect import tool_client
from sessions.keys import INDEX_CREATED, text
from sessions.ledger_store import PREFIX as LEDGER_PREFIX
from sessions.ledger_store import LedgerStore
from sessions.models import Kind, Op, Session
from sessions.states import State
from sessions.store import SessionStore
from workers.connectors.base import Connector, Operation
from workers.connectors.build import build_connector
from workers.lifecycle.kinds import LEDGERED
from workers.lifecycle.settling import refuses_test

_BATCH = 500
# Exit codes; 2 is a usage error.
MATCHED, MISMATCH, UNCHECKED = 0, 1, 3
# A reconcile run reads at most this many reservation hashes; the report says if it stopped.
RESERVATION_SCAN_LIMIT = 100_000
_RESERVATIONS = f"{LEDGER_PREFIX}res:"


@dataclass(frozen=True)
class Window:
    since: float | None = None
    until: float | None = None
    shop: str | None = None


@dataclass
class Report:
    checked: int = 0
    findings: dict[tuple[str, str], Finding] = field(default_factory=dict)
    unknown: list[dict[str, str]] = field(default_factory=list)
    not_comparable: int = 0
    books: int = 0
    books_not_comparable: int = 0
    reservations: int = 0
    reservations_complete: bool = True

    def add(self, session_id: str, result: Check) -> None:
        # A reservation seen from its session and again from the SCAN is one finding.
        for finding in result.findings:
            self.findings.setdefault((finding.code, finding.session_id), finding)
        if result.unknown is not None:
            self.unknown.append({"session_id": session_id, "reason": result.unknown})
        if result.amount_compared is False:
            self.not_comparable += 1
        if result.book_compared is not None:
            self.books += 1
            self.books_not_comparable += not result.book_compared

    @property
    def exit_code(self) -> int:
        if self.findings:
            return MISMATCH
        return UNCHECKED if self.unknown else MATCHED

    def as_json(self) -> dict[str, Any]:
        return {
            "checked": self.checked,
            "mismatches": [f.as_json() for f in self.findings.values()],
            "unknown": self.unknown,
            "amounts_not_comparable": self.not_comparable,
            "books_checked": self.books,
            "books_not_comparable": self.books_not_comparable,
            "reservations_checked": self.reservations,
            "reservations_complete": self.reservations_complete,
        }


class Progress:
    """A counter line on stderr: rewritten in place on a terminal, every 100 in a log."""

    def __init__(self) -> None:
        self._tty = sys.stderr.isatty()

    def show(self, report: Report, *, last: bool = False) -> None:
        line = f"reconcile: {report.checked} checked, {len(report.findings)} mismatched"
        if self._tty:
            print(f"\r{line}", end="\n" if last else "", file=sys.stderr, flush=True)
        elif last or report.checked % 100 == 0:
            print(line, file=sys.stderr, flush=True)


class Pacer:
    """No more than `per_second` calls a second, evenly spaced."""

    def __init__(self, per_second: float) -> None:
        self._gap = 1.0 / per_second
        self._next = time.monotonic()

    async def wait(self) -> None:
        now = time.monotonic()
        if self._next > now:
            await asyncio.sleep(self._next - now)
        self._next = max(now, self._next) + self._gap


async def reconcile(settings: Settings, window: Window, *, as_json: bool, rate: float) -> int:
    redis = tool_client(settings)
    try:
        try:
            connector = build_connector(settings, redis)
        except ConnectorSettingsError as exc:
            print(f"payhook reconcile: {exc}", file=sys.stderr)
            return 2
        try:
            report = await _run(redis, connector, window, Pacer(rate))
        finally:
            await connector.close()
    finally:
        await redis.aclose()
    if as_json:
        print(json.dumps(report.as_json(), indent=2))
    else:
        _print(report)
    if report.exit_code == UNCHECKED:
        print(
            f"payhook reconcile: no mismatch, but {len(report.unknown)} could not be checked "
            "(the PSP did not answer for them): not a clean run",
            file=sys.stderr,
        )
    return report.exit_code


async def _run(redis: Redis, connector: Connector, window: Window, pacer: Pacer) -> Report:
    store, ledger = SessionStore(redis), LedgerStore(redis)
    report, progress = Report(), Progress()
    # Each payment's book once, named by the first of its sessions the window holds.
    payments: dict[str, Session] = {}
    async for session in _sessions(store, window):
        if refuses_test(session, live=connector.live):
            # A test session was never sent to this live account: it is not looked up
            # there either (docs/sessions.md, test mode).
            continue
        held = await ledger.held(session.payment_id, session.id)
        await pacer.wait()
        status = await LEDGERED[session.kind].psp_status(connector, ledger, session)
        report.checked += 1
        report.add(session.id, check(session, session.id, status, _held(session, held)))
        payments.setdefault(session.payment_id, session)
        progress.show(report)
    progress.show(report, last=True)
    for session in payments.values():
        await _check_book(ledger, connector, session, report, pacer)
    async for holder_id, reservation in _reservations(redis, ledger, report):
        holder = await store.get(holder_id)
        # A session of another shop is not this run's; a missing one has no shop to go by.
        if holder is not None and window.shop not in (None, holder.shop):
            continue
        report.add(holder_id, check(holder, holder_id, None, reservation))
    return report


async def _check_book(
    ledger: LedgerStore, connector: Connector, session: Session, report: Report, pacer: Pacer
) -> None:
    """The payment's book against the PSP's authorization (a book expired or never opened
    here has nothing to compare)."""
    book = await ledger.get(session.payment_id)
    if book is None:
        return
    provider_id, _ = await ledger.provider_payment(session.payment_id)
    operation = Operation(
        session_id=session.id,
        payment_id=session.payment_id,
        amount=None,
        currency=book.currency,
        test=session.test,
        provider_payment_id=provider_id,
    )
    await pacer.wait()
    authorization = await connector.authorization(operation)
    report.add(session.id, check_book(session, book, authorization))


def _held(session: Session, held: tuple[Op, int] | None) -> Held | None:
    if held is None:
        return None
    return Held(session.payment_id, held[0], held[1], session.currency or "")


def _worth_checking(session: Session, window: Window) -> bool:
    # A payment session has no PSP operation of ours; one still in flight has nothing to check.
    if session.kind is Kind.PAYMENT or window.shop not in (None, session.shop):
        return False
    return session.outcome is not None or session.state in (State.REPORTED, State.FAILED)


async def _sessions(store: SessionStore, window: Window) -> AsyncIterator[Session]:
    """The window's sessions worth checking, oldest first, read in batches."""
    low = "-inf" if window.since is None else repr(window.since)
    high = "+inf" if window.until is None else repr(window.until)
    offset = 0
    while True:
        batch = await store.redis.zrangebyscore(INDEX_CREATED, low, high, start=offset, num=_BATCH)
        for raw in batch:
            session = await store.get(text(raw))
            if session is not None and _worth_checking(session, window):
                yield session
        if len(batch) < _BATCH:
            return
        offset += _BATCH


async def _reservations(
    redis: Redis, ledger: LedgerStore, report: Report
) -> AsyncIterator[tuple[str, Held]]:
    """Every reservation held on any book: (session id, what it holds)."""
    async for raw_key in redis.scan_iter(match=f"{_RESERVATIONS}*", count=_BATCH):
        if report.reservations >= RESERVATION_SCAN_LIMIT:
            report.reservations_complete = False
            return
        payment_id = text(raw_key).removeprefix(_RESERVATIONS)
        _, currency = await ledger.provider_payment(payment_id)
        for raw_session, entry in (await redis.hgetall(raw_key)).items():
            op, _, minor = text(entry).partition(":")
            report.reservations += 1
            yield text(raw_session), Held(payment_id, Op(op), int(minor), currency)


def _print(report: Report) -> None:
    for finding in report.findings.values():
        print(f"MISMATCH {finding.code}  {finding.session_id}  {finding.detail}")
    for unknown in report.unknown:
        print(f"unknown  {unknown['session_id']}  {unknown['reason']}")
    print(
        f"{report.checked} session(s) checked, {len(report.findings)} mismatch(es), "
        f"{len(report.unknown)} unknown, {report.not_comparable} amount(s) not comparable, "
        f"{report.books} book(s) checked ({report.books_not_comparable} not comparable), "
        f"{report.reservations} reservation(s) checked"
    )
    if not report.reservations_complete:
        print(f"reservation scan stopped after {RESERVATION_SCAN_LIMIT}", file=sys.stderr)
