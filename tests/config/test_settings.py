"""The fleet settings: sentinels, the broker they imply, and the replica wait's bounds."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from config import Settings


def test_sentinels_name_the_broker_too_with_the_store_database_and_password() -> None:
    settings = Settings(
        redis_url="redis://:s3cret@ignored:6379/2",
        redis_sentinels="10.0.0.1:26379, sentinel-b:26380",
        redis_sentinel_master="payments",
    )
    assert settings.redis_sentinels == (("10.0.0.1", 26379), ("sentinel-b", 26380))
    assert settings.broker == (
        "sentinel://:s3cret@10.0.0.1:26379/2;sentinel://:s3cret@sentinel-b:26380/2"
    )
    assert settings.broker_is_store


def test_without_sentinels_the_broker_is_the_store_url() -> None:
    assert Settings(redis_url="redis://r:6379/1").broker == "redis://r:6379/1"


@pytest.mark.parametrize("entry", ["sentinel-a", "sentinel-a:", ":26379", "host:99999", "h:p"])
def test_a_sentinel_without_host_and_port_is_refused(entry: str) -> None:
    with pytest.raises(ValidationError, match="host:port"):
        Settings(redis_sentinels=entry)


def test_the_replica_wait_must_end_before_the_redis_command_times_out() -> None:
    with pytest.raises(ValidationError, match="REPLICA_TIMEOUT"):
        Settings(redis_min_replicas=1, redis_replica_timeout_seconds=2, redis_timeout_seconds=2)
    # No replica required, no wait: any command timeout will do.
    Settings(redis_min_replicas=0, redis_timeout_seconds=0.4)
