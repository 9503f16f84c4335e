"""The Redis clients every process uses: bounded pools, a timeout on every command, and the
primary that Redis Sentinel names when sentinels are configured.

With `PAYHOOK_REDIS_SENTINELS` a client asks the sentinels for the primary's address before
each new connection, and a connection to a server that is no longer primary is dropped
(redis-py's `SentinelManagedConnection`), so after a failover every process finds the
promoted replica by itself. `PAYHOOK_REDIS_URL` then only gives the database and password.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import unquote, urlsplit

from redis import Redis as SyncRedis
from redis.asyncio import BlockingConnectionPool, ConnectionPool, Redis
from redis.asyncio.sentinel import Sentinel, SentinelConnectionPool
from redis.sentinel import Sentinel as SyncSentinel

from config import Settings
from config.settings import redis_database


class BlockingSentinelPool(SentinelConnectionPool, BlockingConnectionPool):
    """redis-py's sentinel pool (each new connection asks the sentinels for the primary)
    with the blocking pool's wait: past `max_connections` a command waits up to `timeout`
    for a free connection, where the sentinel pool alone fails at once."""


def redis_client(
    settings: Settings, *, connections: int, name: str, wait_for_connection: bool = True
) -> Redis:
    """A client whose every command gives up after `PAYHOOK_REDIS_TIMEOUT_SECONDS`.

    The pool blocks (up to the same timeout) rather than open more than `connections`,
    with sentinels too (`BlockingSentinelPool`): a process past its capacity waits, then
    says so (`overloaded`), and never reads as a Redis outage. A caller whose own concurrency can
    never need more than `connections` (the worker) passes `wait_for_connection=False`:
    the blocking pool's lock and timer cost a tenth of a busy worker's CPU. Connections carry
    `name` (`CLIENT LIST` shows who is connected).
    """
    timeouts = _timeouts(settings)
    if settings.redis_sentinels:
        sentinel = Sentinel(  # type: ignore[no-untyped-call, unused-ignore]
            list(settings.redis_sentinels), sentinel_kwargs=timeouts, **_credentials(settings)
        )
        pooled: dict[str, Any] = {"max_connections": connections, **timeouts}
        if wait_for_connection:
            # The blocking pool's own argument: how long a command waits for a connection.
            pooled["timeout"] = settings.redis_timeout_seconds
        primary: Redis = sentinel.master_for(
            settings.redis_sentinel_master,
            connection_pool_class=(
                BlockingSentinelPool if wait_for_connection else SentinelConnectionPool
            ),
            health_check_interval=30,
            client_name=name,
            **pooled,
        )
        return primary
    if not wait_for_connection:
        pool = ConnectionPool.from_url(
            settings.redis_url,
            max_connections=connections,
            health_check_interval=30,
            client_name=name,
            **timeouts,
        )
        return Redis(connection_pool=pool)
    blocking = BlockingConnectionPool.from_url(
        settings.redis_url,
        max_connections=connections,
        timeout=settings.redis_timeout_seconds,
        health_check_interval=30,
        client_name=name,
        **timeouts,
    )
    return Redis(connection_pool=blocking)


def tool_client(settings: Settings) -> Redis:
    """The client of a command-line tool: unbounded pool, no read timeout (a tool may wait
    on a long command), but a bounded connect, so a host that drops packets fails in seconds."""
    connect = settings.redis_timeout_seconds
    if settings.redis_sentinels:
        sentinel = Sentinel(  # type: ignore[no-untyped-call, unused-ignore]
            list(settings.redis_sentinels),
            sentinel_kwargs=_timeouts(settings),
            **_credentials(settings),
        )
        primary: Redis = sentinel.master_for(
            settings.redis_sentinel_master,
            client_name="payhook-tool",
            socket_connect_timeout=connect,
        )
        return primary
    return Redis.from_url(settings.redis_url, socket_connect_timeout=connect)


def sync_client(settings: Settings, *, name: str) -> SyncRedis:
    """A blocking client, for beat's scheduler (it runs no event loop)."""
    timeouts = _timeouts(settings)
    if settings.redis_sentinels:
        sentinel = SyncSentinel(  # type: ignore[no-untyped-call, unused-ignore]
            list(settings.redis_sentinels), sentinel_kwargs=timeouts, **_credentials(settings)
        )
        primary: SyncRedis = sentinel.master_for(  # type: ignore[no-untyped-call, unused-ignore]
            settings.redis_sentinel_master, client_name=name, **timeouts
        )
        return primary
    return SyncRedis.from_url(settings.redis_url, client_name=name, **timeouts)


def _timeouts(settings: Settings) -> dict[str, Any]:
    return {
        "socket_timeout": settings.redis_timeout_seconds,
        "socket_connect_timeout": settings.redis_timeout_seconds,
    }


def _credentials(settings: Settings) -> dict[str, Any]:
    """Database and credentials of the primary, from `PAYHOOK_REDIS_URL`."""
    url = urlsplit(settings.redis_url)
    found: dict[str, Any] = {"db": redis_database(settings.redis_url)}
    if url.username:
        found["username"] = unquote(url.username)
    if url.password:
        found["password"] = unquote(url.password)
    return found
