"""Who holds the admin token: `Authorization: Bearer <PAYHOOK_ADMIN_TOKEN>`, checked the same
way on every route that takes it, the operator's console under `/admin` (`webhook.console`)
and, on the app Shopify reaches, `/metrics` and the readiness detail (`webhook.health`).

Every check spends the same attempt budget (`webhook.admin_attempts`). The keys are read
through `request.config_dict`, so a route of the console, a sub-app, finds the web app's.
"""

from __future__ import annotations

from aiohttp import web

from config import Settings
from errors import ApiError, TooManyAttempts
from webhook.admin_attempts import client_of
from webhook.body import header_bytes
from webhook.keys import ADMIN_ATTEMPTS, SETTINGS


def admin_token(settings: Settings) -> bytes:
    """The configured admin token; without one neither the admin API nor the dashboard
    exists (404)."""
    if settings.admin_token is None:
        raise ApiError(404, "not_found", "Not Found")
    return settings.admin_token.get_secret_value().encode()


def too_many(exc: TooManyAttempts, field: str) -> ApiError:
    return ApiError(
        429, "too_many_attempts", str(exc), field, headers={"Retry-After": str(exc.retry_after)}
    )


async def bearer_ok(request: web.Request, token: bytes) -> bool | None:
    """True/False for a request carrying an Authorization header, None without one; 429
    while wrong tokens have spent their budget (`webhook.admin_attempts`)."""
    sent = header_bytes(request, "Authorization")
    if not sent:
        return None
    attempts = request.config_dict[ADMIN_ATTEMPTS]
    try:
        return await attempts.check(
            b"Bearer " + token, sent, client_of(request, request.config_dict[SETTINGS])
        )
    except TooManyAttempts as exc:
        raise too_many(exc, "Authorization") from None


async def require_admin(request: web.Request) -> None:
    """Let through only a request with the admin bearer token: 401 without it or with
    another, 404 when no admin token is configured."""
    if not await bearer_ok(request, admin_token(request.config_dict[SETTINGS])):
        raise ApiError(
            401, "unauthorized", "a valid admin bearer token is required", "Authorization"
        )
