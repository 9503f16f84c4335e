"""Whether the configured Redis can lose or evict what payhook stores in it."""

from __future__ import annotations

from redis.asyncio import Redis
from redis.exceptions import ResponseError


async def durability_warnings(redis: Redis) -> list[str]:
    """Human-readable warnings; empty when the configuration keeps every session.

    Managed Redis services often refuse CONFIG GET; that is reported, not treated as fine.
    """
    try:
        config = await redis.config_get("appendonly")
        config.update(await redis.config_get("appendfsync"))
        config.update(await redis.config_get("maxmemory-policy"))
        config.update(await redis.config_get("save"))
    except ResponseError:
        return [
            "cannot read the Redis configuration (CONFIG GET refused): check by hand that "
            "AOF is on and maxmemory-policy is noeviction"
        ]
    values = {_text(k): _text(v) for k, v in config.items()}
    warnings = []
    if values.get("appendonly") != "yes":
        snapshot = values.get("save") or "never"
        warnings.append(
            f"appendonly is off: a Redis restart loses every session since the last snapshot "
            f"(save: {snapshot}); set appendonly yes"
        )
    elif values.get("appendfsync") == "no":
        warnings.append(
            "appendfsync is 'no': the OS decides when sessions reach the disk; "
            "use everysec or always"
        )
    policy = values.get("maxmemory-policy", "")
    if policy != "noeviction":
        warnings.append(
            f"maxmemory-policy is {policy!r}: Redis may evict sessions and leases "
            "under memory pressure; set noeviction"
        )
    return warnings


def _text(value: object) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)
