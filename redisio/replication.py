"""Writes that must survive a failover: Redis `WAIT` after them, on their own connection.

Redis replicates asynchronously: a primary that dies can take with it writes it had already
answered. Two answers of payhook rest on a write and cannot be taken back: the `201` to
Shopify (the session is stored) and the outcome told to Shopify (its PSP result is stored).
With `PAYHOOK_REDIS_MIN_REPLICAS` = N > 0, each of those writes is followed, in the same
pipeline and so on the same connection, by `WAIT N timeout`: Redis answers once N replicas
have acknowledged every write that connection made. Fewer in time raises `NotReplicated`;
the write itself stands, and the caller answers as if Redis had been away.

`WAIT` counts the connection's own writes only: a write that changes nothing is not
propagated, so a path that only reads what another connection wrote (a duplicate request)
writes something first (see `sessions.store`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from redis.asyncio import Redis
from redis.commands.core import AsyncScript
from redis.exceptions import NoScriptError

from config import Settings
from errors.replication import NotReplicated


@dataclass(frozen=True)
class Replication:
    """How many replicas must hold a write before payhook answers on it (0: none)."""

    replicas: int = 0
    timeout_seconds: float = 0.5

    @classmethod
    def from_settings(cls, settings: Settings) -> Replication:
        return cls(settings.redis_min_replicas, settings.redis_replica_timeout_seconds)

    async def run(
        self, redis: Redis, script: AsyncScript, keys: Sequence[str], args: Sequence[Any]
    ) -> Any:
        """Run `script`, then `WAIT` on the same connection; returns the script's reply.

        Without replicas required this is the plain script call. The pipeline sends
        EVALSHA itself (redis-py would check the script cache first, one more round trip
        each time) and loads the script when the server has not seen it: after a failover
        the promoted replica's script cache is empty.
        """
        if not self.replicas:
            return await script(keys=keys, args=args)
        wait_ms = max(1, int(self.timeout_seconds * 1000))
        for loaded in (False, True):
            async with redis.pipeline(transaction=False) as pipe:
                pipe.evalsha(script.sha, len(keys), *keys, *args)
                pipe.wait(self.replicas, wait_ms)
                try:
                    reply, acknowledged = await pipe.execute()
                except NoScriptError:
                    if loaded:
                        raise
                    await redis.script_load(script.script)
                    continue
            if int(acknowledged) < self.replicas:
                raise NotReplicated(self.replicas, int(acknowledged), self.timeout_seconds)
            return reply
        raise AssertionError("unreachable")


NONE = Replication()
