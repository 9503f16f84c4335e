"""The Payments Apps API versions the sandbox can serve: one schema file each.

Each `payments_apps_<version>.graphql` next to this module is Shopify's Payments Apps schema
for that version, as the public reference has it (package data). The sandbox serves exactly
these; adding a file adds a version.
"""

from __future__ import annotations

import re
from functools import cache
from importlib import resources

DEFAULT_API_VERSION = "2025-10"

_FILE = re.compile(r"^payments_apps_(\d{4}-\d{2})\.graphql$")


class UnknownApiVersion(ValueError):
    """The sandbox has no schema file for this API version."""

    def __init__(self, version: str) -> None:
        known = ", ".join(api_versions())
        super().__init__(
            f"the sandbox has no Payments Apps schema for API version {version!r} (it has "
            f"{known}): set PAYHOOK_SHOPIFY_API_VERSION to one of them"
        )
        self.version = version


@cache
def api_versions() -> tuple[str, ...]:
    """Every version with a schema file, oldest first."""
    names = (entry.name for entry in resources.files("sandbox").iterdir())
    return tuple(sorted(match[1] for name in names if (match := _FILE.match(name))))


def schema_file(version: str) -> str:
    """The file name of `version`'s schema; `UnknownApiVersion` when there is none."""
    if version not in api_versions():
        raise UnknownApiVersion(version)
    return f"payments_apps_{version}.graphql"


def load_sdl(version: str) -> str:
    return resources.files("sandbox").joinpath(schema_file(version)).read_text(encoding="utf-8")
