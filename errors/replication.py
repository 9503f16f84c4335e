"""The one payhook error that is also a library's: `NotReplicated` is a `RedisError`, since
the session consumer treats a write its replicas did not confirm as Redis being away. It
lives apart so that `import errors` loads no Redis client (the pure decisions import the
tree and must not)."""

from __future__ import annotations

from redis.exceptions import RedisError

from errors import RetryableError


class NotReplicated(RetryableError, RedisError):
    """Fewer replicas than required acknowledged a write in time; the write stands."""

    def __init__(self, wanted: int, acknowledged: int, timeout_seconds: float) -> None:
        super().__init__(
            f"{acknowledged} of {wanted} replica(s) acknowledged within {timeout_seconds:g}s"
        )
        self.wanted = wanted
        self.acknowledged = acknowledged
