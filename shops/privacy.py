"""What payhook keeps about a shop and its buyers, and how Shopify's privacy webhooks erase it
or report it (docs/privacy.md says what stays and why).

payhook keeps no buyer identity: a payment session's `customer` is validated and dropped at
intake, and no session carries an order id. What a session of a shop keeps beyond its money
is the checkout's references (`cancel_url`, `redirect_url`, `checkout_id`, `group`) and the
texts of its timeline and outcome, where a PSP's message could quote a buyer. So:

- `shop/redact` erases every finished session of the shop (fields, timeline, listing and
  failed indexes, the PSP send journal) and the ledger books of their payments, except a
  failed session that still holds a ledger reservation, and its book: money may have moved
  at the provider, and that record is what lets an operator find out and settle it. Its
  checkout references are erased.
- `customers/redact` and `customers/data_request` search the shop's sessions for the
  customer's email and phone in every text payhook keeps; a redact replaces each match
  with `[redacted]` (never a money field), a data request lists them.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import orjson
from redis.asyncio import Redis

from sessions.keys import (
    DUE,
    EXPIRING,
    FAILED,
    INDEX_CREATED,
    lease_key,
    psp_journal_key,
    rate_key,
    session_key,
    text,
    timeline_key,
)
from sessions.ledger_store import ledger_keys
from sessions.models import Op
from shops.webhooks import CustomerPayload

# The money record and the session's bookkeeping: never rewritten by a redact (numbers,
# states, ids Shopify and the PSP know the operation by).
KEPT_FIELDS = frozenset(
    {
        "id",
        "kind",
        "gid",
        "shop",
        "payment_id",
        "amount",
        "currency",
        "state",
        "outcome",
        "report",
        "reject_code",
        "psp_reference",
        "payment_kind",
        "fingerprint",
        "proposed_at",
        "test",
        "api_version",
        "merchant_locale",
        "authorization_expires_at",
        "pending_reason",
        "sent_mutation",
        "inflight",
        "psp_uncertain",
    }
)
REDACTED = "[redacted]"
# Providers whose send journal keys a request by the session id (`workers.connectors.journal`).
JOURNALED = ("ledyer", "aplazame", "purchase")
BATCH = 500

# KEYS: session, timeline, lease, idx:created, idx:expiring, idx:failed, the payment's
# reservations, due set, then the session's journal entries. ARGV: id, shop, cutoff, event.
_ERASE = """
local state = redis.call('HGET', KEYS[1], 'state')
if not state then
  redis.call('ZREM', KEYS[4], ARGV[1])
  redis.call('ZREM', KEYS[5], ARGV[1])
  return {'gone'}
end
if redis.call('HGET', KEYS[1], 'shop') ~= ARGV[2] then return {'other'} end
if tonumber(redis.call('HGET', KEYS[1], 'created_at') or '0') > tonumber(ARGV[3]) then
  return {'later'}
end
if state ~= 'reported' and state ~= 'failed' then return {'unfinished', state} end
if redis.call('TYPE', KEYS[7])['ok'] == 'hash' and redis.call('HEXISTS', KEYS[7], ARGV[1]) == 1 then
  -- The session's references to the buyer's checkout go even where the session must stay.
  redis.call('HDEL', KEYS[1], 'cancel_url', 'redirect_url', 'checkout_id', 'group')
  local events = redis.call('TYPE', KEYS[2])['ok']
  if events == 'list' or events == 'none' then redis.call('RPUSH', KEYS[2], ARGV[4]) end
  return {'kept'}
end
local kind = redis.call('HGET', KEYS[1], 'kind') or ''
redis.call('DEL', KEYS[1], KEYS[2], KEYS[3])
for i = 9, #KEYS do redis.call('DEL', KEYS[i]) end
for _, index in ipairs({KEYS[4], KEYS[5], KEYS[6], KEYS[6] .. ':kind:' .. kind,
                        KEYS[6] .. ':shop:' .. ARGV[2], KEYS[8]}) do
  redis.call('ZREM', index, ARGV[1])
end
return {'erased'}
"""

# KEYS: book, reservations, settled. A book with an open reservation stays.
_DROP_BOOK = """
if redis.call('EXISTS', KEYS[2]) == 1 and redis.call('HLEN', KEYS[2]) > 0 then return 0 end
return redis.call('DEL', KEYS[1], KEYS[2], KEYS[3])
"""

# KEYS: session, timeline. ARGV: updated_at read, fields to set (JSON), new timeline (JSON
# list). Refused if the session changed since it was read.
_REWRITE = """
if redis.call('HGET', KEYS[1], 'updated_at') ~= ARGV[1] then return 0 end
for name, value in pairs(cjson.decode(ARGV[2])) do redis.call('HSET', KEYS[1], name, value) end
local events = cjson.decode(ARGV[3])
if #events > 0 then
  local ttl = redis.call('PTTL', KEYS[2])
  redis.call('DEL', KEYS[2])
  redis.call('RPUSH', KEYS[2], unpack(events))
  if ttl > 0 then redis.call('PEXPIRE', KEYS[2], ttl) end
end
return 1
"""


def journal_keys(session_id: str) -> list[str]:
    return [psp_journal_key(c, op, session_id) for c in JOURNALED for op in Op]


async def shop_sessions(redis: Redis, shop: str) -> AsyncIterator[list[str]]:
    """The ids of the shop's stored sessions, a batch at a time. A cursor over the listing
    index (every stored session is in it), so erasing while walking skips none."""
    cursor = 0
    seen: set[str] = set()
    while True:
        cursor, found = await redis.zscan(INDEX_CREATED, cursor, count=BATCH)
        ids = [text(member) for member, _ in found if text(member) not in seen]
        if ids:
            async with redis.pipeline(transaction=False) as pipe:
                for session_id in ids:
                    pipe.hget(session_key(session_id), "shop")
                shops = await pipe.execute()
            mine = [i for i, s in zip(ids, shops, strict=True) if s is not None and text(s) == shop]
            seen.update(ids)
            if mine:
                yield mine
        if cursor == 0:
            return


@dataclass
class Erasure:
    """What a shop redact did."""

    erased: int = 0
    kept: list[str] = field(default_factory=list)
    unfinished: list[str] = field(default_factory=list)
    books_erased: int = 0

    def describe(self) -> str:
        parts = [f"{self.erased} session(s) erased", f"{self.books_erased} ledger book(s) erased"]
        if self.kept:
            parts.append(f"{len(self.kept)} kept holding money ({', '.join(self.kept[:10])})")
        if self.unfinished:
            parts.append(f"{len(self.unfinished)} still unfinished")
        return "; ".join(parts)


async def erase_shop(redis: Redis, shop: str, *, cutoff: float, event: str) -> Erasure:
    """Erase the shop's finished sessions created by `cutoff` and their payments' books,
    except what holds money (see the module). `event` is the timeline event (JSON) a kept
    session gets. Sessions not finished are counted, not touched (fail them first)."""
    erase = redis.register_script(_ERASE)
    drop_book = redis.register_script(_DROP_BOOK)
    done = Erasure()
    payments: set[str] = set()
    async for ids in shop_sessions(redis, shop):
        async with redis.pipeline(transaction=False) as pipe:
            for session_id in ids:
                pipe.hget(session_key(session_id), "payment_id")
            found = await pipe.execute()
        for session_id, raw_payment in zip(ids, found, strict=True):
            payment = text(raw_payment) if raw_payment is not None else ""
            reply = await erase(
                keys=[
                    session_key(session_id),
                    timeline_key(session_id),
                    lease_key(session_id),
                    INDEX_CREATED,
                    EXPIRING,
                    FAILED,
                    ledger_keys(payment)[1] if payment else "",
                    DUE,
                    *journal_keys(session_id),
                ],
                args=[session_id, shop, repr(cutoff), event],
            )
            verdict = text(reply[0])
            if verdict == "erased":
                done.erased += 1
                if payment:
                    payments.add(payment)
            elif verdict == "kept":
                done.kept.append(session_id)
            elif verdict == "unfinished":
                done.unfinished.append(session_id)
    for payment in sorted(payments):
        done.books_erased += 1 if await drop_book(keys=ledger_keys(payment)) else 0
    await redis.delete(rate_key(shop))
    return done


# -- a customer's traces -------------------------------------------------------------------


@dataclass(frozen=True)
class Needles:
    """What names the customer, as it could appear in a text payhook keeps: the email and
    the phone. Customer and order ids are not looked for: no field of payhook's holds one,
    and their digits would match unrelated numbers (a checkout URL's, a reference's), so
    a redact would rewrite other buyers' texts."""

    words: tuple[str, ...]

    @classmethod
    def of(cls, customer: CustomerPayload) -> Needles:
        email = customer.email if customer.email and "@" in customer.email else None
        phone = customer.phone if customer.phone and len(customer.phone) >= 7 else None
        return cls(tuple(w for w in (email, phone) if w))

    def described(self) -> list[str]:
        return [("email" if "@" in w else "phone") for w in self.words]

    def pattern(self) -> re.Pattern[str] | None:
        parts = [re.escape(w) for w in self.words]
        return re.compile("|".join(parts), re.IGNORECASE) if parts else None


@dataclass
class Trace:
    """One session's texts that name the customer."""

    session_id: str
    kind: str
    state: str
    created_at: float
    fields: dict[str, str]
    events: list[dict[str, Any]]

    def as_json(self) -> dict[str, Any]:
        return {
            "session_id": self.session_id,
            "kind": self.kind,
            "state": self.state,
            "created_at": self.created_at,
            "fields": self.fields,
            "timeline": self.events,
        }


@dataclass
class Search:
    sessions: int = 0
    traces: list[Trace] = field(default_factory=list)


_EVENT_TEXTS = ("error", "detail")


def _texts(fields: dict[str, str]) -> Iterable[tuple[str, str]]:
    return ((k, v) for k, v in fields.items() if k not in KEPT_FIELDS and not _numeric(v))


def _numeric(value: str) -> bool:
    try:
        float(value)
    except ValueError:
        return False
    return True


async def find_customer(redis: Redis, shop: str, needles: Needles) -> Search:
    """Every text of the shop's sessions (fields and timelines) that names the customer."""
    found = Search()
    pattern = needles.pattern()
    async for ids in shop_sessions(redis, shop):
        found.sessions += len(ids)
        if pattern is None:
            continue
        async with redis.pipeline(transaction=False) as pipe:
            for session_id in ids:
                pipe.hgetall(session_key(session_id))
                pipe.lrange(timeline_key(session_id), 0, -1)
            replies = await pipe.execute()
        for index, session_id in enumerate(ids):
            raw_fields, raw_events = replies[2 * index], replies[2 * index + 1]
            fields = {text(k): text(v) for k, v in raw_fields.items()}
            named = {k: v for k, v in _texts(fields) if pattern.search(v)}
            events = [orjson.loads(e) for e in raw_events]
            marked = [
                e
                for e in events
                if any(isinstance(e.get(t), str) and pattern.search(e[t]) for t in _EVENT_TEXTS)
            ]
            if named or marked:
                found.traces.append(
                    Trace(
                        session_id,
                        fields.get("kind", ""),
                        fields.get("state", ""),
                        float(fields.get("created_at", "0")),
                        named,
                        marked,
                    )
                )
    return found


@dataclass
class Redaction:
    redacted: list[str] = field(default_factory=list)
    # Sessions still being worked on: redacted on a later attempt.
    busy: list[str] = field(default_factory=list)


async def redact_customer(redis: Redis, shop: str, needles: Needles) -> Redaction:
    """Replace every text that names the customer with `[redacted]` in the shop's finished
    sessions; money fields are never rewritten. Unfinished sessions with a match are left
    for a later attempt (a worker may be writing them)."""
    pattern = needles.pattern()
    done = Redaction()
    if pattern is None:
        return done
    rewrite = redis.register_script(_REWRITE)
    for trace in (await find_customer(redis, shop, needles)).traces:
        if trace.state not in ("reported", "failed"):
            done.busy.append(trace.session_id)
            continue
        key = session_key(trace.session_id)
        updated_at, raw_events = await _read(redis, key, timeline_key(trace.session_id))
        fields = {name: pattern.sub(REDACTED, value) for name, value in trace.fields.items()}
        events = [_redacted_event(orjson.loads(e), pattern) for e in raw_events]
        if await rewrite(
            keys=[key, timeline_key(trace.session_id)],
            args=[updated_at, orjson.dumps(fields), orjson.dumps(events)],
        ):
            done.redacted.append(trace.session_id)
        else:
            done.busy.append(trace.session_id)
    return done


async def _read(redis: Redis, key: str, timeline: str) -> tuple[str, Sequence[bytes]]:
    async with redis.pipeline(transaction=False) as pipe:
        pipe.hget(key, "updated_at")
        pipe.lrange(timeline, 0, -1)
        updated_at, events = await pipe.execute()
    return ("" if updated_at is None else text(updated_at)), events


def _redacted_event(event: dict[str, Any], pattern: re.Pattern[str]) -> str:
    for name in _EVENT_TEXTS:
        if isinstance(event.get(name), str):
            event[name] = pattern.sub(REDACTED, event[name])
    return orjson.dumps(event).decode()
