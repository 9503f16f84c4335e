"""The ledger: the pure model under hypothesis, the Redis script held to the same answers,
and concurrent workers against a real redis-server never breaking an invariant."""

from __future__ import annotations

import asyncio
import multiprocessing
import random
import uuid
from decimal import Decimal
from pathlib import Path

import pytest
import redis as sync_redis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from redis.asyncio import Redis

from ops.redis_server import LocalRedis
from sessions.ledger import (
    Book,
    Refusal,
    Refused,
    Reserved,
    commit,
    merchant_message,
    refusal_for,
    release,
    reserve,
)
from sessions.ledger_store import LedgerStore
from sessions.models import Op
from sessions.money import MAX_MINOR_UNITS

STEPS = st.lists(
    st.tuples(
        st.sampled_from(list(Op)),
        st.integers(min_value=1, max_value=6000),
        st.sampled_from(["commit", "release", "hold"]),
        st.sampled_from(["EUR", "EUR", "EUR", "USD"]),
    ),
    max_size=40,
)
BOOKS = st.builds(
    Book,
    currency=st.just("EUR"),
    authorized=st.integers(min_value=1, max_value=10_000),
    sale=st.booleans(),
    expires_at=st.sampled_from([None, 50.0, 1e12]),
)


def holds_invariants(book: Book) -> bool:
    return (
        0 <= book.captured + book.reserved(Op.CAPTURE) <= book.authorized
        and 0 <= book.refunded + book.reserved(Op.REFUND) <= book.captured
        and not (book.voided and book.captured > 0)
        and sum(r.op is Op.VOID for r in book.reservations.values()) <= 1
    )


def sale_book(book: Book) -> Book:
    # A sale arrives captured in full.
    return (
        Book(
            book.currency,
            book.authorized,
            sale=True,
            captured=book.authorized,
            expires_at=book.expires_at,
        )
        if book.sale
        else book
    )


@settings(max_examples=1500, deadline=None)
@given(book=BOOKS, steps=STEPS)
def test_no_sequence_of_operations_breaks_an_invariant(
    book: Book, steps: list[tuple[Op, int, str, str]]
) -> None:
    book = sale_book(book)
    approved = {Op.CAPTURE: 0, Op.REFUND: 0, Op.VOID: 0}
    for index, (op, amount, decision, currency) in enumerate(steps):
        session = f"s{index}"
        book, refused = reserve(book, session, op, amount, currency, now=100.0)
        assert holds_invariants(book)
        if refused is not None or decision == "hold":
            continue
        if decision == "commit":
            approved[op] += 0 if op is Op.VOID else amount
            book = commit(book, session)
        else:
            book = release(book, session)
        assert holds_invariants(book)
    base = book.authorized if book.sale else 0
    assert book.captured == base + approved[Op.CAPTURE]
    assert book.refunded == approved[Op.REFUND]


def test_a_repeated_commit_or_reserve_moves_money_once() -> None:
    book, _ = reserve(Book("EUR", 5000), "s1", Op.CAPTURE, 3000, "EUR", 0.0)
    book = commit(commit(book, "s1"), "s1")
    book, refused = reserve(book, "s1", Op.CAPTURE, 3000, "EUR", 0.0)
    assert (book.captured, refused, book.reservations) == (3000, None, {})


@pytest.mark.parametrize(
    ("book", "op", "amount", "currency", "message"),
    [
        (
            Book("EUR", 4000),
            Op.CAPTURE,
            Decimal("60.00"),
            "EUR",
            "capture 60.00 EUR exceeds the 40.00 EUR still authorized",
        ),
        (
            Book("JPY", 500, captured=500, refunded=200),
            Op.REFUND,
            Decimal("400"),
            "JPY",
            "refund 400 JPY exceeds the 300 JPY captured and not yet refunded",
        ),
        (
            Book("KWD", 1500, expires_at=10.0),
            Op.CAPTURE,
            Decimal("1.000"),
            "KWD",
            "capture refused: the authorization has expired",
        ),
        (
            Book("EUR", 4000, captured=100),
            Op.VOID,
            None,
            "EUR",
            "void refused: part of the authorization is already captured",
        ),
        (
            Book("EUR", 4000),
            Op.CAPTURE,
            Decimal("10.00"),
            "USD",
            "capture in USD refused: the payment is in EUR",
        ),
        (
            Book("EUR", 4000, sale=True, captured=4000),
            Op.CAPTURE,
            Decimal("1.00"),
            "EUR",
            "capture refused: the payment was a sale and is already captured",
        ),
    ],
)
def test_a_refusal_tells_the_merchant_exactly_why(
    book: Book, op: Op, amount: Decimal | None, currency: str, message: str
) -> None:
    from sessions.money import to_minor

    minor = 0 if amount is None else to_minor(amount, currency)
    refused = refusal_for(book, op, minor, currency, now=20.0)
    assert refused is not None
    assert merchant_message(refused, op, amount, currency, book.currency) == message


# -- the Redis script, against a real redis-server ------------------------------------


@pytest.fixture
def ledger_url(redis_server: LocalRedis) -> str:
    url = f"redis://127.0.0.1:{redis_server.port}/5"
    client = sync_redis.Redis.from_url(url)
    client.flushdb()
    client.close()
    return url


@settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(book=BOOKS, steps=STEPS)
def test_the_redis_script_gives_the_models_answers(
    ledger_url: str, book: Book, steps: list[tuple[Op, int, str, str]]
) -> None:
    book = sale_book(book)

    async def check() -> None:
        redis = Redis.from_url(ledger_url)
        store = LedgerStore(redis)
        payment = f"p{uuid.uuid4().hex}"
        model = book
        await store.open(payment, model)
        for index, (op, amount, decision, currency) in enumerate(steps):
            session = f"s{index}"
            model, expected = reserve(model, session, op, amount, currency, now=100.0)
            got = await store.reserve(payment, session, op, amount, currency, now=100.0)
            refused = got if isinstance(got, Refused) else None
            assert (refused.reason if refused else None) == (expected.reason if expected else None)
            if refused is None and decision != "hold":
                if decision == "commit":
                    model = commit(model, session)
                    await store.commit(payment, session)
                else:
                    model = release(model, session)
                    await store.release(payment, session)
        stored = await store.get(payment)
        assert stored is not None
        assert (stored.captured, stored.refunded, stored.voided) == (
            model.captured,
            model.refunded,
            model.voided,
        )
        assert set(stored.reservations) == set(model.reservations)
        await redis.aclose()

    asyncio.run(check())


def _worker(
    url: str, payments: list[str], seed: int, rounds: int, results: multiprocessing.Queue
) -> None:  # type: ignore[type-arg]
    async def fire() -> dict[str, dict[str, int]]:
        rng = random.Random(seed)
        redis = Redis.from_url(url)
        store = LedgerStore(redis)
        approved: dict[str, dict[str, int]] = {
            p: {"capture": 0, "refund": 0, "void": 0} for p in payments
        }
        for index in range(rounds):
            payment = rng.choice(payments)
            op = rng.choices([Op.CAPTURE, Op.REFUND, Op.VOID], weights=[5, 4, 1])[0]
            amount = rng.randint(1, 400)
            session = f"w{seed}-{index}"
            verdict = await store.reserve(payment, session, op, amount, "EUR", now=0.0)
            if isinstance(verdict, Refused):
                continue
            await asyncio.sleep(rng.random() / 1000)  # the PSP call
            if rng.random() < 0.8:
                await store.commit(payment, session)
                approved[payment][op.value] += 1 if op is Op.VOID else amount
            else:
                await store.release(payment, session)
        await redis.aclose()
        return approved

    results.put(asyncio.run(fire()))


def test_concurrent_workers_never_break_an_invariant(ledger_url: str, tmp_path: Path) -> None:
    payments = [f"race-{i}" for i in range(4)]

    async def open_books() -> None:
        redis = Redis.from_url(ledger_url)
        for payment in payments:
            await LedgerStore(redis).open(payment, Book("EUR", 20_000))
        await redis.aclose()

    asyncio.run(open_books())
    context = multiprocessing.get_context("spawn")
    results = context.Queue()
    workers = [
        context.Process(target=_worker, args=(ledger_url, payments, seed, 400, results))
        for seed in range(6)
    ]
    for process in workers:
        process.start()
    reports = [results.get(timeout=120) for _ in workers]
    for process in workers:
        process.join(timeout=30)

    async def books() -> list[Book | None]:
        redis = Redis.from_url(ledger_url)
        found = [await LedgerStore(redis).get(p) for p in payments]
        await redis.aclose()
        return found

    operations = 0
    for payment, book in zip(payments, asyncio.run(books()), strict=True):
        assert book is not None
        assert holds_invariants(book)
        assert book.reservations == {}
        captured = sum(r[payment]["capture"] for r in reports)
        refunded = sum(r[payment]["refund"] for r in reports)
        voids = sum(r[payment]["void"] for r in reports)
        assert (book.captured, book.refunded) == (captured, refunded)
        assert voids <= 1
        assert voids == 0 or captured == 0
        operations += captured + refunded
    assert operations > 0
    print(f"FIGURES: 6 processes x 400 operations on {len(payments)} payments, 0 violations")


async def test_two_captures_racing_for_the_last_of_an_authorization_one_wins(
    ledger_url: str,
) -> None:
    redis = Redis.from_url(ledger_url)
    store = LedgerStore(redis)
    await store.open("last", Book("EUR", 5000, captured=1000))
    verdicts = await asyncio.gather(
        *(store.reserve("last", f"racer-{i}", Op.CAPTURE, 4000, "EUR", now=0.0) for i in range(8))
    )
    assert sum(isinstance(v, Reserved) for v in verdicts) == 1
    assert all(v == Refused(Refusal.EXCEEDS, 0) for v in verdicts if isinstance(v, Refused))
    await redis.aclose()


async def test_payment_ids_that_look_like_other_keys_keep_separate_books(ledger_url: str) -> None:
    redis = Redis.from_url(ledger_url)
    store = LedgerStore(redis)
    try:
        base = f"p{uuid.uuid4().hex}"
        ids = [base, f"{base}:res", f"{base}:settled"]
        for payment_id in ids:
            await store.open(payment_id, Book(currency="EUR", authorized=1000))
        got = await store.reserve(base, "s-1", Op.CAPTURE, 400, "EUR", now=1.0)
        assert isinstance(got, Reserved)
        await store.commit(base, "s-1")
        assert await store.get(base) == Book(
            currency="EUR", authorized=1000, captured=400, settled=frozenset({"s-1"})
        )
        for other in ids[1:]:
            assert await store.get(other) == Book(currency="EUR", authorized=1000)
    finally:
        await redis.aclose()


async def test_the_largest_amount_intake_accepts_stays_exact_in_the_script(
    ledger_url: str,
) -> None:
    # Lua numbers are doubles printed with 14 significant digits; MAX_MINOR_UNITS is the
    # largest amount for which reserve, commit and the totals still read back exactly.
    redis = Redis.from_url(ledger_url)
    store = LedgerStore(redis)
    try:
        payment = f"p{uuid.uuid4().hex}"
        await store.open(payment, Book(currency="JPY", authorized=MAX_MINOR_UNITS))
        for session, op in [("capture", Op.CAPTURE), ("refund", Op.REFUND)]:
            got = await store.reserve(payment, session, op, MAX_MINOR_UNITS, "JPY", now=1.0)
            assert isinstance(got, Reserved)
            await store.commit(payment, session)
        book = await store.get(payment)
        assert book is not None
        assert (book.captured, book.refunded) == (MAX_MINOR_UNITS, MAX_MINOR_UNITS)
    finally:
        await redis.aclose()
