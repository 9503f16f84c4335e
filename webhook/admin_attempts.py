"""Guessing the admin token is slowed to nothing: wrong tokens are counted per client and in
all, in Redis (every web process shares the budgets), and past either budget no token is
compared until it refills.

Every place that takes the admin token (the dashboard's login form, a bearer header on the
dashboard, the admin API, `/metrics` and the readiness detail) goes through
`AdminAttempts.check`, so none of them is a way around the limit. A client is the socket's
peer, or, from a trusted proxy, the address that proxy put last in `X-Forwarded-For`. While
the budget of all clients is spent (a guess from many addresses at once) the real token waits
too: sessions never do. While Redis cannot be reached nothing can be counted, and tokens are
compared as before: monitoring must not go blind in an outage.
"""

from __future__ import annotations

import contextlib
import hmac
import logging
from ipaddress import ip_address

from aiohttp import web
from redis.asyncio import Redis
from redis.exceptions import RedisError

from config import Settings
from errors import TooManyAttempts
from sessions.keys import admin_attempts_key
from webhook.auth import from_trusted_proxy
from webhook.rate_limit import RateLimit

log = logging.getLogger("payhook.admin")

WINDOW_SECONDS = 60.0
ALL_CLIENTS = "*"


class AdminAttempts:
    def __init__(self, redis: Redis, settings: Settings) -> None:
        self._per_client = RateLimit(
            redis,
            limit=settings.admin_attempts_per_client,
            window_seconds=WINDOW_SECONDS,
            key=admin_attempts_key,
        )
        self._in_all = RateLimit(
            redis,
            limit=settings.admin_attempts_in_all,
            window_seconds=WINDOW_SECONDS,
            key=admin_attempts_key,
        )

    async def check(self, token: bytes, sent: bytes, client: str) -> bool:
        """Whether `sent` is the admin token; `TooManyAttempts` (nothing compared) while
        either budget is spent. A wrong token spends one attempt of both."""
        try:
            wait = max(
                await self._per_client.would_wait(client),
                await self._in_all.would_wait(ALL_CLIENTS),
            )
        except (RedisError, OSError) as exc:
            # Uncounted while Redis is away, so that `/metrics` stays readable in an outage.
            log.warning("admin token attempts not counted", extra={"error": repr(exc)})
            return hmac.compare_digest(sent, token)
        if wait > 0:
            log.warning(
                "admin token attempts refused", extra={"remote": client, "retry_after": wait}
            )
            raise TooManyAttempts(wait)
        if hmac.compare_digest(sent, token):
            return True
        log.warning("wrong admin token", extra={"remote": client})
        with contextlib.suppress(RedisError, OSError):
            await self._per_client.wait_for(client)
            await self._in_all.wait_for(ALL_CLIENTS)
        return False


def client_of(request: web.Request, settings: Settings) -> str:
    """The address a request came from, as far as payhook can know it."""
    peer = request.transport.get_extra_info("peername") if request.transport else None
    address = str(peer[0]) if peer else "unknown"
    if from_trusted_proxy(request, settings.trusted_proxies):
        forwarded = request.headers.getall("X-Forwarded-For", [])
        if len(forwarded) == 1:
            last = forwarded[0].rsplit(",", 1)[-1].strip()
            try:
                return str(ip_address(last))
            except ValueError:
                pass
    return address
