"""The Redis client both sides use: bounded pools, and a timeout on every command."""

from __future__ import annotations

from redis.asyncio import BlockingConnectionPool, Redis

from config import Settings


def redis_client(settings: Settings, *, connections: int, name: str) -> Redis:
    """A client whose every command gives up after `PAYHOOK_REDIS_TIMEOUT_SECONDS`.

    The pool blocks (up to the same timeout) rather than open more than `connections`, and
    names its connections (`CLIENT LIST` shows who is connected).
    """
    pool = BlockingConnectionPool.from_url(
        settings.redis_url,
        max_connections=connections,
        timeout=settings.redis_timeout_seconds,
        socket_timeout=settings.redis_timeout_seconds,
        socket_connect_timeout=settings.redis_timeout_seconds,
        health_check_interval=30,
        client_name=name,
    )
    return Redis(connection_pool=pool)
