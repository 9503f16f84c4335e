"""The Redis broker transport, with one fix for surviving a Redis restart.

When the broker connection drops, Celery collects the connection (dropping its client
parameters) and then closes the channel, which tries to put unacknowledged messages back
and needs those parameters: kombu 5.7's Redis channel then raises `AttributeError`, which
Celery treats as unrecoverable, and the worker stops. Raising a connection error instead
lets Celery ignore the failed clean-up and reconnect. The messages it could not put back
return after the visibility timeout, and their sessions come back sooner from the due set.
"""

from __future__ import annotations

from typing import Any

from kombu.transport import redis as kombu_redis
from redis.exceptions import ConnectionError as RedisConnectionError


class Channel(kombu_redis.Channel):
    def _connparams(self, asynchronous: bool = False) -> Any:
        if self.connection.client is None:
            raise RedisConnectionError("the broker connection was already collected")
        return super()._connparams(asynchronous=asynchronous)  # type: ignore[misc]


class Transport(kombu_redis.Transport):
    Channel = Channel


TRANSPORT = f"{__name__}:Transport"
