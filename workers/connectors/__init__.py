"""PSP connectors behind one port (`workers.connectors.base.Connector`)."""

from __future__ import annotations

from redis.asyncio import Redis

from config import Settings
from workers.connectors.base import Connector
from workers.connectors.simulator import SimulatorConnector


def build_connector(settings: Settings, redis: Redis) -> Connector:
    """The connector named by `PAYHOOK_CONNECTOR`."""
    if settings.connector == "simulator":
        return SimulatorConnector(redis)
    raise ValueError(f"unknown connector {settings.connector!r}")  # pragma: no cover
