"""The Redis broker transports (plain and Sentinel), with one fix for surviving a Redis
restart or failover.

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


def _connparams(channel: kombu_redis.Channel, base: Any, asynchronous: bool) -> Any:
    if channel.connection.client is None:
        raise RedisConnectionError("the broker connection was already collected")
    return base._connparams(channel, asynchronous=asynchronous)


class Channel(kombu_redis.Channel):
    def _connparams(self, asynchronous: bool = False) -> Any:
        return _connparams(self, kombu_redis.Channel, asynchronous)


class Transport(kombu_redis.Transport):
    Channel = Channel


class SentinelChannel(kombu_redis.SentinelChannel):
    """kombu's `sentinel://` channel: every new connection asks the sentinels for the
    primary, so after a failover the consumer reconnects to the promoted replica."""

    def _connparams(self, asynchronous: bool = False) -> Any:
        return _connparams(self, kombu_redis.SentinelChannel, asynchronous)


class SentinelTransport(kombu_redis.SentinelTransport):
    Channel = SentinelChannel


TRANSPORT = f"{__name__}:Transport"
SENTINEL_TRANSPORT = f"{__name__}:SentinelTransport"
