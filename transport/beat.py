"""Beat, once: Celery's scheduler, sending only while it holds payhook's beat lock in Redis.

Every host may run `payhook beat`; exactly one sends the sweeper's schedule. The lock is a
Redis key holding its owner, set with an expiry and extended on every tick; the others keep
asking and take over once the holder stops extending it (it died, or lost Redis). Nothing is
kept in a file: the schedule is one interval, rebuilt in memory at start.

The lock narrows, but cannot close, the window in which two beats send: a holder that
stalls past the expiry, or a failover that loses the key, lets a second one in for a moment.
That is safe because the sweeper is: it takes due sessions in one atomic step that pushes
each one ahead by a lease, so two sweeps never queue the same session twice.
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import uuid
from typing import Any

from celery import beat
from redis import Redis
from redis.exceptions import RedisError

from config import Settings
from redisio.connect import sync_client
from sessions.keys import BEAT_LOCK

log = logging.getLogger("payhook.beat")

# Take the lock when free, extend it when ours; 1 when held after the call.
_HOLD = """
local owner = redis.call('GET', KEYS[1])
if owner and owner ~= ARGV[1] then return 0 end
redis.call('SET', KEYS[1], ARGV[1], 'PX', tonumber(ARGV[2]))
return 1
"""

_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""


def lock_seconds(settings: Settings) -> float:
    """How long the lock outlives its holder's last extension: three sweep intervals, and
    never under a few Redis timeouts, so a slow Redis does not hand it over by itself."""
    return max(3 * settings.sweep_interval_seconds, 3 * settings.redis_timeout_seconds, 3.0)


class BeatLock:
    def __init__(self, redis: Redis, *, seconds: float, owner: str | None = None) -> None:
        self.owner = owner or f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"
        self.seconds = seconds
        self._hold = redis.register_script(_HOLD)
        self._release = redis.register_script(_RELEASE)

    def hold(self) -> bool:
        """Take or extend the lock; False when another beat has it or Redis did not answer."""
        try:
            return bool(self._hold(keys=[BEAT_LOCK], args=[self.owner, int(self.seconds * 1000)]))
        except RedisError as exc:
            log.warning("beat lock not extended", extra={"error": repr(exc)})
            return False

    def release(self) -> None:
        # Failing that, it expires on its own.
        with contextlib.suppress(RedisError):
            self._release(keys=[BEAT_LOCK], args=[self.owner])


class LockedScheduler(beat.Scheduler):
    """`beat.Scheduler` (in memory) whose ticks send only while this process holds the lock."""

    lock: BeatLock

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self._holding = False
        super().__init__(*args, **kwargs)

    def tick(self, *args: Any, **kwargs: Any) -> float:
        holding = self.lock.hold()
        if holding != self._holding:
            self._holding = holding
            message = "beat lock taken: sending the schedule" if holding else "beat on standby"
            log.info(message, extra={"owner": self.lock.owner})
        # Asked again well before the lock could lapse.
        again = self.lock.seconds / 3
        if not holding:
            return again
        return float(min(super().tick(*args, **kwargs), again))

    def close(self) -> None:
        super().close()
        if self._holding:
            self.lock.release()


def locked_scheduler(settings: Settings) -> type[LockedScheduler]:
    """The scheduler class for `payhook beat`, bound to this process's lock."""
    lock = BeatLock(sync_client(settings, name="payhook-beat"), seconds=lock_seconds(settings))
    return type("PayhookScheduler", (LockedScheduler,), {"lock": lock})
