"""The admin API for Shopify's webhooks: list them, read one (its events, never the customer
identifiers a privacy webhook brought), fetch a data request's report, replay dead letters.

Every route needs `Authorization: Bearer <PAYHOOK_ADMIN_TOKEN>` (404 with none configured).
"""

from __future__ import annotations

import time
from typing import Annotated

from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field

from errors import ApiError
from shops.webhook_store import replay_webhooks
from shops.webhooks import HookState
from webhook.admin_token import require_admin
from webhook.body import parse_object, read_body
from webhook.console.api import parse_filters
from webhook.keys import SETTINGS, WEBHOOKS

MAX_LISTED = 1000


class _Listing(BaseModel):
    model_config = ConfigDict(extra="forbid")

    state: HookState | None = None
    shop: str | None = Field(default=None, max_length=255)
    limit: int = Field(default=100, ge=1, le=MAX_LISTED)


class _Replay(BaseModel):
    model_config = ConfigDict(extra="forbid")

    webhook_ids: list[Annotated[str, Field(min_length=1, max_length=255)]] = Field(
        min_length=1, max_length=MAX_LISTED
    )
    dry_run: bool = False
    again: bool = False


async def list_webhooks(request: web.Request) -> web.Response:
    await require_admin(request)
    wanted = parse_filters(_Listing, dict(request.query))
    hooks = request.config_dict[WEBHOOKS]
    if wanted.state is HookState.FAILED:
        found = await hooks.failed(MAX_LISTED)
    else:
        found = await hooks.recent(MAX_LISTED)
    chosen = [
        w
        for w in found
        if (wanted.state is None or w.state is wanted.state)
        and (wanted.shop is None or w.shop == wanted.shop)
    ]
    return web.json_response({"webhooks": [w.shown() for w in chosen[: wanted.limit]]})


async def show_webhook(request: web.Request) -> web.Response:
    await require_admin(request)
    hooks = request.config_dict[WEBHOOKS]
    webhook_id = request.match_info["webhook_id"]
    webhook = await hooks.get(webhook_id)
    if webhook is None:
        raise ApiError(404, "not_found", f"no webhook {webhook_id}")
    events = await hooks.events(webhook_id)
    return web.json_response(
        {
            "webhook": webhook.shown(),
            "events": [e.model_dump(mode="json", exclude_none=True) for e in events],
        }
    )


async def webhook_report(request: web.Request) -> web.Response:
    await require_admin(request)
    webhook_id = request.match_info["webhook_id"]
    report = await request.config_dict[WEBHOOKS].report(webhook_id)
    if report is None:
        raise ApiError(
            404,
            "not_found",
            f"no report for webhook {webhook_id} (not a data request, not done yet, or expired)",
        )
    return web.json_response({"report": report})


async def replay(request: web.Request) -> web.Response:
    await require_admin(request)
    settings = request.config_dict[SETTINGS]
    body = parse_object(await read_body(request, settings.max_body_bytes))
    wanted = parse_filters(_Replay, body)
    results = await replay_webhooks(
        request.config_dict[WEBHOOKS],
        wanted.webhook_ids,
        lease_seconds=settings.lease_seconds,
        now=time.time(),
        actor="admin API",
        dry_run=wanted.dry_run,
        again=wanted.again,
    )
    return web.json_response(
        {
            "dry_run": wanted.dry_run,
            "replayed": [r.webhook_id for r in results if r.replayed],
            "skipped": [{"id": r.webhook_id, "reason": r.note} for r in results if not r.replayed],
        }
    )


def add_routes(console: web.Application) -> None:
    """`/admin/webhooks`, `/admin/webhooks/{id}`, `/admin/webhooks/{id}/report`,
    `/admin/webhooks/replay`."""
    console.router.add_get("/webhooks", list_webhooks)
    console.router.add_get("/webhooks/{webhook_id:[^/]+}", show_webhook)
    console.router.add_get("/webhooks/{webhook_id:[^/]+}/report", webhook_report)
    console.router.add_post("/webhooks/replay", replay)
