"""Typed configuration: `Settings` is built once per entry point and passed down."""

from config.settings import ConnectorName, Settings

__all__ = ["ConnectorName", "Settings"]
