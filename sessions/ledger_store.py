"""The per-payment ledger in Redis: the rules of `sessions.ledger`, each step one Lua call.

| key | type | holds |
|---|---|---|
| `pay:book:{id}` | hash | currency, authorized, sale, captured, refunded, voided, expires_at, |
| | | provider_payment_id, and reservation totals `res_capture`, `res_refund`, `res_void` |
| `pay:res:{id}` | hash | session id → `op:amount` for each open reservation |
| `pay:settled:{id}` | set | sessions already committed or released (repeats are no-ops) |

All amounts are integers in minor units. The payment id comes last in each key, after a
prefix that starts no other key (see `sessions.keys`), so no payment id can name another
payment's book.
"""

from __future__ import annotations

from collections.abc import Sequence

from redis.asyncio import Redis

from sessions.keys import LEDGER_RETENTION_SECONDS
from sessions.ledger import Book, Refusal, Refused, Reservation, Reserved
from sessions.models import Op

PREFIX = "payhook:pay:"

_COMMON = """
local book, reservations, settled = KEYS[1], KEYS[2], KEYS[3]
"""

_RESERVE = (
    _COMMON
    + """
local session, op, amount, currency, now = ARGV[1], ARGV[2], tonumber(ARGV[3]), ARGV[4],
  tonumber(ARGV[5])
if redis.call('EXISTS', book) == 0 then return {'unknown_payment', 0, '', ''} end
local raw = redis.call('HGETALL', book)
local b = {}
for i = 1, #raw, 2 do b[raw[i]] = raw[i + 1] end
local function reply(verdict, available)
  return {verdict, available, b['provider_payment_id'] or '', b['currency'] or ''}
end
if redis.call('HEXISTS', reservations, session) == 1 then return reply('ok', 0) end
if redis.call('SISMEMBER', settled, session) == 1 then return reply('ok', 0) end
local function n(name) return tonumber(b[name] or '0') or 0 end
if currency ~= '' and currency ~= b['currency'] then return reply('currency', 0) end
if op == 'capture' then
  if b['sale'] == '1' then return reply('sale_already_captured', 0) end
  if b['voided'] == '1' or n('res_void') > 0 then return reply('voided', 0) end
  if (b['expires_at'] or '') ~= '' and now >= tonumber(b['expires_at']) then
    return reply('expired', 0)
  end
  local available = n('authorized') - n('captured') - n('res_capture')
  if amount > available then return reply('exceeds', available) end
elseif op == 'refund' then
  local available = n('captured') - n('refunded') - n('res_refund')
  if amount > available then return reply('exceeds', available) end
else
  if b['voided'] == '1' or n('res_void') > 0 then return reply('voided', 0) end
  if b['sale'] == '1' or n('captured') > 0 or n('res_capture') > 0 then
    return reply('captured', 0)
  end
  amount = 1
end
redis.call('HSET', reservations, session, op .. ':' .. amount)
-- The book lives as long as its payment is worked on: every reservation extends it.
local ttl = tonumber(ARGV[6])
redis.call('EXPIRE', book, ttl)
redis.call('EXPIRE', reservations, ttl)
if redis.call('EXISTS', settled) == 1 then redis.call('EXPIRE', settled, ttl) end
redis.call('HINCRBY', book, 'res_' .. op, amount)
return reply('ok', 0)
"""
)

# Shared with the session store's write script, which settles a reservation in the same
# atomic step that stores the PSP's outcome. `final` false gives a reservation back without
# marking the session settled: nothing happened at the PSP and the session may reserve again
# when it is replayed.
SETTLE_RESERVATION = """
local function settle_reservation(book, reservations, settled, session, approved, final,
                                  op, amount)
  local held = redis.call('HGET', reservations, session)
  if held then
    op, amount = string.match(held, '^(%a+):(%d+)$')
    amount = tonumber(amount)
    redis.call('HINCRBY', book, 'res_' .. op, -amount)
    redis.call('HDEL', reservations, session)
  elseif not (approved and final and op ~= '' and redis.call('EXISTS', book) == 1
              and redis.call('SISMEMBER', settled, session) == 0) then
    return 0
  end
  -- Without a reservation (a failover lost it) an approved operation still moved the
  -- money: it is counted from the session's own operation, once (the settled set says so).
  if approved then
    if op == 'capture' then redis.call('HINCRBY', book, 'captured', amount)
    elseif op == 'refund' then redis.call('HINCRBY', book, 'refunded', amount)
    else redis.call('HSET', book, 'voided', 1) end
  end
  if final then
    redis.call('SADD', settled, session)
    local ttl = redis.call('TTL', book)
    if ttl > 0 then redis.call('EXPIRE', settled, ttl) end
  end
  return 1
end
"""

_SETTLE = (
    SETTLE_RESERVATION
    + """
return settle_reservation(KEYS[1], KEYS[2], KEYS[3], ARGV[1], ARGV[2] == '1', true, '', 0)
"""
)

_OPEN = """
if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end
redis.call('HSET', KEYS[1], 'currency', ARGV[1], 'authorized', ARGV[2], 'sale', ARGV[3],
           'captured', ARGV[4], 'refunded', ARGV[5], 'voided', ARGV[6], 'expires_at', ARGV[7],
           'provider_payment_id', ARGV[8], 'res_capture', 0, 'res_refund', 0, 'res_void', 0)
redis.call('EXPIRE', KEYS[1], tonumber(ARGV[9]))
return 1
"""


def ledger_keys(payment_id: str) -> list[str]:
    return [
        f"{PREFIX}book:{payment_id}",
        f"{PREFIX}res:{payment_id}",
        f"{PREFIX}settled:{payment_id}",
    ]


def _reservation(raw: object) -> tuple[Op, int] | None:
    if raw is None:
        return None
    op, _, amount = _text(raw).partition(":")
    return Op(op), int(amount)


def _text(value: object) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


class LedgerStore:
    def __init__(self, redis: Redis, *, retention_seconds: int = LEDGER_RETENTION_SECONDS) -> None:
        self._redis = redis
        # A book expires this long after its last reservation (PAYHOOK_LEDGER_RETENTION_DAYS).
        self._retention = retention_seconds
        self._reserve = redis.register_script(_RESERVE)
        self._settle = redis.register_script(_SETTLE)
        self._open = redis.register_script(_OPEN)

    async def open(self, payment_id: str, book: Book, provider_payment_id: str = "") -> bool:
        """Record a payment once; False if it was already known (the first record wins)."""
        created = await self._open(
            keys=ledger_keys(payment_id)[:1],
            args=[
                book.currency,
                book.authorized,
                int(book.sale),
                book.captured,
                book.refunded,
                int(book.voided),
                "" if book.expires_at is None else repr(book.expires_at),
                provider_payment_id,
                self._retention,
            ],
        )
        return bool(created)

    async def get(self, payment_id: str) -> Book | None:
        book_key, res_key, settled_key = ledger_keys(payment_id)
        fields = {_text(k): _text(v) for k, v in (await self._redis.hgetall(book_key)).items()}
        if not fields:
            return None
        held = await self._redis.hgetall(res_key)
        reservations = {}
        for session, entry in held.items():
            op, amount = _text(entry).split(":")
            reservations[_text(session)] = Reservation(Op(op), 0 if op == "void" else int(amount))
        settled = frozenset(_text(s) for s in await self._redis.smembers(settled_key))
        return Book(
            currency=fields["currency"],
            authorized=int(fields["authorized"]),
            sale=fields.get("sale") == "1",
            captured=int(fields.get("captured", 0)),
            refunded=int(fields.get("refunded", 0)),
            voided=fields.get("voided") == "1",
            expires_at=float(fields["expires_at"]) if fields.get("expires_at") else None,
            reservations=reservations,
            settled=settled,
        )

    async def provider_payment(self, payment_id: str) -> tuple[str, str]:
        """(the PSP's id for the payment, the book's currency); "" for what is not known."""
        provider_id, currency = await self._redis.hmget(
            ledger_keys(payment_id)[0], ["provider_payment_id", "currency"]
        )
        return (
            "" if provider_id is None else _text(provider_id),
            "" if currency is None else _text(currency),
        )

    async def reserve(
        self,
        payment_id: str,
        session_id: str,
        op: Op,
        amount: int,
        currency: str | None,
        now: float,
    ) -> Reserved | Refused:
        """Hold `amount` for the session, in one round trip that also reads what the PSP
        call needs; idempotent for a session that holds or already settled its reservation."""
        reply = await self._reserve(
            keys=ledger_keys(payment_id),
            args=[session_id, op.value, amount, currency or "", repr(now), self._retention],
        )
        verdict, provider_id, book_currency = _text(reply[0]), _text(reply[2]), _text(reply[3])
        if verdict == "ok":
            return Reserved(provider_id, book_currency)
        return Refused(Refusal(verdict), int(reply[1]), book_currency or None)

    async def held(self, payment_id: str, session_id: str) -> tuple[Op, int] | None:
        """The reservation `session_id` holds on the payment's book: (operation, minor units)."""
        return _reservation(await self._redis.hget(ledger_keys(payment_id)[1], session_id))

    async def held_many(self, wanted: Sequence[tuple[str, str]]) -> list[tuple[Op, int] | None]:
        """`held` for each (payment id, session id), in one round trip."""
        async with self._redis.pipeline(transaction=False) as pipe:
            for payment_id, session_id in wanted:
                pipe.hget(ledger_keys(payment_id)[1], session_id)
            found = await pipe.execute()
        return [_reservation(raw) for raw in found]

    async def commit(self, payment_id: str, session_id: str) -> None:
        await self._settle(keys=ledger_keys(payment_id), args=[session_id, "1"])

    async def release(self, payment_id: str, session_id: str) -> None:
        await self._settle(keys=ledger_keys(payment_id), args=[session_id, "0"])
