"""What payhook asks Shopify about each shop's payments app (`paymentsAppConfigure`), and
what came of it: the onboarding record, kept in Redis until the shop is removed.

An ask (the install, or `payhook shops configure`) stores the wanted `externalHandle` and
`ready` flag under a new request number and puts the shop in the onboarding due set, the
way a session sits in the session due set; a worker's sweep takes the shops that are due,
pushing each one a hold ahead so no other sweep takes it meanwhile, and sends the mutation
(`workers.onboarding`). Its result is written only while the request number is still the
one it sent: an ask that came in meanwhile is never overwritten by an older answer, and it
is sent in turn. A worker that dies mid-call leaves the shop due again once the hold passes.

| key | type | holds |
|---|---|---|
| `onboarding:{shop}` | hash | the last ask, its state and userErrors, what Shopify last took |
| `onboarding-due` | sorted set | shops whose ask is still to be sent, by when |

An install stores the shop's token and its first ask in one script (`install`): a shop is
never installed without being onboarded.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict
from redis.asyncio import Redis

from sessions.keys import PREFIX, SHOPS, WRONG_TYPE, text
from shops.tokens import PREFIX as SEALED
from shops.tokens import uninstalled_at

ONBOARDING_PREFIX = f"{PREFIX}onboarding:"
ONBOARDING_DUE = f"{PREFIX}onboarding-due"


def onboarding_key(shop: str) -> str:
    return ONBOARDING_PREFIX + shop


class OnboardingState(StrEnum):
    QUEUED = "queued"  # to be sent, or to be sent again after a retryable failure
    CONFIGURED = "configured"  # Shopify took it
    REFUSED = "refused"  # Shopify answered userErrors
    FAILED = "failed"  # no token, a token Shopify refuses, or retries ran out


class UserError(BaseModel):
    model_config = ConfigDict(frozen=True, extra="ignore")

    field: list[str] | None = None
    message: str


class Onboarding(BaseModel):
    """One shop's onboarding, as `payhook shops list`, the admin API and the dashboard show it."""

    model_config = ConfigDict(frozen=True)

    shop: str
    handle: str | None
    ready: bool
    asked_at: float
    asked_by: str
    request: int
    state: OnboardingState
    attempts: int = 0
    at: float | None = None
    user_errors: list[UserError] = []
    last_error: str | None = None
    # What Shopify last accepted, which may be an earlier ask than the one shown above.
    accepted_ready: bool | None = None
    accepted_handle: str | None = None
    accepted_at: float | None = None


@dataclass(frozen=True)
class Ask:
    """One ask as a sweep took it: what to send, and how many times it was tried."""

    shop: str
    request: int
    handle: str | None
    ready: bool
    attempts: int
    since: float | None


@dataclass(frozen=True)
class Attempt:
    """What one sending came to. `QUEUED` with `retry_at`: try again then."""

    state: OnboardingState
    user_errors: tuple[UserError, ...] = ()
    error: str | None = None
    retry_at: float | None = None


# KEYS: the record, the due set, and the shop registry or '' (an install stores the token).
# ARGV: shop, handle as JSON, ready (1/0), who asks, now, the sealed token.
_ASK = (
    WRONG_TYPE
    + """
local bad = wrong_type({KEYS[1], 'hash', KEYS[2], 'zset', KEYS[3], 'hash'})
if bad then return redis.error_reply('WRONGTYPE ' .. bad) end
local request = redis.call('HINCRBY', KEYS[1], 'request', 1)
redis.call('HSET', KEYS[1], 'shop', ARGV[1], 'handle', ARGV[2], 'ready', ARGV[3],
  'asked_by', ARGV[4], 'asked_at', ARGV[5], 'state', 'queued', 'attempts', 0)
redis.call('HDEL', KEYS[1], 'at', 'since', 'user_errors', 'last_error')
redis.call('ZADD', KEYS[2], ARGV[5], ARGV[1])
if KEYS[3] ~= '' then redis.call('HSET', KEYS[3], ARGV[1], ARGV[6]) end
return request
"""
)

# KEYS: the due set. ARGV: now, limit, held until. The shops due, each pushed to `until`.
_TAKE_DUE = """
local shops = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'LIMIT', 0, tonumber(ARGV[2]))
for _, shop in ipairs(shops) do redis.call('ZADD', KEYS[1], ARGV[3], shop) end
return shops
"""

# KEYS: the due set. ARGV: shop, now, held until. 1 when the shop was due and is now held.
_TAKE_ONE = """
local due = redis.call('ZSCORE', KEYS[1], ARGV[1])
if not due or tonumber(due) > tonumber(ARGV[2]) then return 0 end
redis.call('ZADD', KEYS[1], ARGV[3], ARGV[1])
return 1
"""

# KEYS: the record, the due set. ARGV: shop. A due entry whose record is gone (the shop was
# removed while a sweep held it) leaves the due set; one an install has just made stays.
_DROP_ORPHAN = """
if redis.call('EXISTS', KEYS[1]) == 0 then redis.call('ZREM', KEYS[2], ARGV[1]) end
return 0
"""

# KEYS: the record, the due set. ARGV: shop, request, state, now, detail, retry at.
# Only while the record still holds this request: a newer ask is left to be sent.
_FINISH = """
if redis.call('HGET', KEYS[1], 'request') ~= ARGV[2] then return 0 end
local state, now = ARGV[3], ARGV[4]
redis.call('HINCRBY', KEYS[1], 'attempts', 1)
if not redis.call('HGET', KEYS[1], 'since') then redis.call('HSET', KEYS[1], 'since', now) end
redis.call('HSET', KEYS[1], 'state', state, 'at', now)
if state == 'queued' then
  redis.call('HSET', KEYS[1], 'last_error', ARGV[5])
  redis.call('ZADD', KEYS[2], ARGV[6], ARGV[1])
  return 1
end
redis.call('ZREM', KEYS[2], ARGV[1])
if state == 'configured' then
  local asked = redis.call('HMGET', KEYS[1], 'ready', 'handle')
  redis.call('HSET', KEYS[1], 'accepted_ready', asked[1], 'accepted_handle', asked[2],
    'accepted_at', now)
  redis.call('HDEL', KEYS[1], 'user_errors', 'last_error')
elseif state == 'refused' then
  redis.call('HSET', KEYS[1], 'user_errors', ARGV[5])
  redis.call('HDEL', KEYS[1], 'last_error')
else
  redis.call('HSET', KEYS[1], 'last_error', ARGV[5])
end
return 1
"""


def _float(value: Any) -> float | None:
    return None if value is None else float(text(value))


def _record(raw: dict[Any, Any]) -> Onboarding | None:
    fields = {text(k): text(v) for k, v in raw.items()}
    if "shop" not in fields:
        return None
    accepted = fields.get("accepted_ready")
    return Onboarding(
        shop=fields["shop"],
        handle=json.loads(fields.get("handle", "null")),
        ready=fields.get("ready") == "1",
        asked_at=float(fields.get("asked_at", "0")),
        asked_by=fields.get("asked_by", ""),
        request=int(fields.get("request", "0")),
        state=OnboardingState(fields.get("state", "queued")),
        attempts=int(fields.get("attempts", "0")),
        at=_float(fields.get("at")),
        user_errors=json.loads(fields.get("user_errors", "[]")),
        last_error=fields.get("last_error"),
        accepted_ready=None if accepted is None else accepted == "1",
        accepted_handle=json.loads(fields.get("accepted_handle", "null")),
        accepted_at=_float(fields.get("accepted_at")),
    )


class OnboardingStore:
    def __init__(self, redis: Redis) -> None:
        self._redis = redis
        self._ask = redis.register_script(_ASK)
        self._take_due = redis.register_script(_TAKE_DUE)
        self._take_one = redis.register_script(_TAKE_ONE)
        self._finish = redis.register_script(_FINISH)
        self._drop_orphan = redis.register_script(_DROP_ORPHAN)

    async def ask(self, shop: str, *, handle: str | None, ready: bool, by: str, now: float) -> int:
        """Queue `paymentsAppConfigure(handle, ready)` for `shop`; returns the request number."""
        return await self._asked(shop, handle, ready, by, now, sealed_token=None)

    async def install(
        self, shop: str, sealed_token: str, *, handle: str | None, ready: bool, now: float
    ) -> int:
        """Store the shop's (sealed) token and queue its onboarding, in one step."""
        return await self._asked(shop, handle, ready, "install", now, sealed_token=sealed_token)

    async def _asked(
        self,
        shop: str,
        handle: str | None,
        ready: bool,
        by: str,
        now: float,
        *,
        sealed_token: str | None,
    ) -> int:
        registry = SHOPS if sealed_token is not None else ""
        request = await self._ask(
            keys=[onboarding_key(shop), ONBOARDING_DUE, registry],
            args=[
                shop,
                json.dumps(handle),
                "1" if ready else "0",
                by,
                repr(now),
                sealed_token or "",
            ],
        )
        return int(request)

    async def take_due(self, now: float, *, limit: int, hold_for: float) -> list[Ask]:
        """Up to `limit` due asks, each held for `hold_for` seconds."""
        shops = await self._take_due(
            keys=[ONBOARDING_DUE], args=[repr(now), limit, repr(now + hold_for)]
        )
        return await self._asks([text(shop) for shop in shops])

    async def take(self, shop: str, now: float, *, hold_for: float) -> Ask | None:
        """The shop's ask if it is due (and now held); None when it is not, or another
        process holds it."""
        taken = await self._take_one(
            keys=[ONBOARDING_DUE], args=[shop, repr(now), repr(now + hold_for)]
        )
        if not int(taken):
            return None
        found = await self._asks([shop])
        return found[0] if found else None

    async def _asks(self, shops: list[str]) -> list[Ask]:
        if not shops:
            return []
        async with self._redis.pipeline(transaction=False) as pipe:
            for shop in shops:
                pipe.hmget(onboarding_key(shop), "request", "handle", "ready", "attempts", "since")
            rows = await pipe.execute()
        asks = []
        for shop, (request, handle, ready, attempts, since) in zip(shops, rows, strict=True):
            if request is None:
                # Removed while due: nothing to send.
                await self._drop_orphan(keys=[onboarding_key(shop), ONBOARDING_DUE], args=[shop])
                continue
            asks.append(
                Ask(
                    shop=shop,
                    request=int(request),
                    handle=json.loads(text(handle)) if handle is not None else None,
                    ready=text(ready) == "1",
                    attempts=int(attempts or 0),
                    since=_float(since),
                )
            )
        return asks

    async def finish(self, ask: Ask, attempt: Attempt, now: float) -> bool:
        """Record what the sending came to; False (nothing written) when a newer ask came."""
        if attempt.state is OnboardingState.REFUSED:
            detail = json.dumps([error.model_dump() for error in attempt.user_errors])
        else:
            detail = attempt.error or ""
        retry_at = attempt.retry_at if attempt.retry_at is not None else now
        written = await self._finish(
            keys=[onboarding_key(ask.shop), ONBOARDING_DUE],
            args=[ask.shop, ask.request, attempt.state.value, repr(now), detail, repr(retry_at)],
        )
        return bool(int(written))

    async def get(self, shop: str) -> Onboarding | None:
        return _record(await self._redis.hgetall(onboarding_key(shop)))

    async def read(self, shops: Iterable[str]) -> dict[str, Onboarding]:
        wanted = list(shops)
        async with self._redis.pipeline(transaction=False) as pipe:
            for shop in wanted:
                pipe.hgetall(onboarding_key(shop))
            rows = await pipe.execute()
        found = {}
        for shop, raw in zip(wanted, rows, strict=True):
            record = _record(raw)
            if record is not None:
                found[shop] = record
        return found

    async def forget(self, shop: str) -> None:
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.delete(onboarding_key(shop))
            pipe.zrem(ONBOARDING_DUE, shop)
            await pipe.execute()


class ShopStatus(BaseModel):
    """A shop in the registry: how its token is kept (never the token; `uninstalled` when the
    shop uninstalled the app and only its tombstone is left) and its onboarding."""

    model_config = ConfigDict(frozen=True)

    shop: str
    token: Literal["encrypted", "plain_text", "uninstalled"]
    onboarding: Onboarding | None


async def shop_statuses(redis: Redis) -> list[ShopStatus]:
    """Every shop with a token of its own, by name."""
    stored = {text(shop): text(value) for shop, value in (await redis.hgetall(SHOPS)).items()}
    shops = sorted(stored)
    onboarding = await OnboardingStore(redis).read(shops)
    return [
        ShopStatus(
            shop=shop,
            token=_kept(stored[shop]),
            onboarding=onboarding.get(shop),
        )
        for shop in shops
    ]


def _kept(stored: str) -> Literal["encrypted", "plain_text", "uninstalled"]:
    if uninstalled_at(stored) is not None:
        return "uninstalled"
    return "encrypted" if stored.startswith(SEALED) else "plain_text"
