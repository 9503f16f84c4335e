"""`payhook doctor`: can this configuration keep every session? Exits 1 on any FAIL or WARN."""

from __future__ import annotations

from redis.asyncio import Redis

from config import Settings
from sessions.durability import durability_warnings


async def run_doctor(settings: Settings) -> int:
    status = 0
    urls = {"redis": settings.redis_url, "broker": settings.broker}
    for name, url in urls.items():
        if name == "broker" and url == settings.redis_url:
            print("ok    broker is the session Redis")
            continue
        redis = Redis.from_url(url, socket_connect_timeout=3)
        try:
            await redis.ping()
        except Exception as exc:  # any failure to connect is the finding
            print(f"FAIL  {name} at {_safe(url)} is unreachable: {type(exc).__name__}: {exc}")
            status = 1
            continue
        else:
            print(f"ok    {name} at {_safe(url)} answers")
            for warning in await durability_warnings(redis):
                print(f"WARN  {name}: {warning}")
                status = 1
        finally:
            await redis.aclose()
    if settings.shopify_access_token is None:
        print("note  no PAYHOOK_SHOPIFY_ACCESS_TOKEN: every shop needs `payhook shops add`")
    if settings.tls_client_ca_file is None:
        print("note  no PAYHOOK_TLS_CLIENT_CA_FILE: mTLS must be enforced by a proxy in front")
    return status


def _safe(url: str) -> str:
    """The URL without its password."""
    if "@" not in url:
        return url
    scheme, rest = url.split("://", 1)
    return f"{scheme}://***@{rest.split('@', 1)[1]}"
