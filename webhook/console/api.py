"""The admin API: read sessions and replay failed ones, for the operator dashboard; the
shops payhook holds tokens for, and how their onboarding at Shopify stands.

Every route needs `Authorization: Bearer <PAYHOOK_ADMIN_TOKEN>`; with no token configured
the routes answer 404, as if they did not exist.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any, TypeVar

from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from errors import ApiError
from readouts.held import money_held
from readouts.query import SessionFilter, find_sessions
from sessions.ledger_store import LedgerStore
from sessions.models import Kind, Session
from sessions.replay import replay
from sessions.states import State
from shops.onboarding import shop_statuses
from webhook.admin_token import require_admin
from webhook.body import parse_object, read_body
from webhook.errors import invalid
from webhook.keys import REDIS, SETTINGS, STORE

Model = TypeVar("Model", bound=BaseModel)

# Above this many sessions, a bulk replay belongs to `payhook replay`, not to one request.
MAX_HTTP_REPLAY = 1000


class Filters(BaseModel):
    """Which sessions: shared by the admin API and the dashboard."""

    model_config = ConfigDict(extra="forbid")

    state: State | None = None
    kind: Kind | None = None
    shop: str | None = Field(default=None, max_length=255)
    since: datetime | None = None
    until: datetime | None = None
    error_contains: str | None = Field(default=None, max_length=255)
    limit: int = Field(default=100, ge=1, le=MAX_HTTP_REPLAY)

    def to_filter(self, state: State | None) -> SessionFilter:
        return SessionFilter(
            state=state,
            kind=self.kind,
            shop=self.shop,
            since=_epoch(self.since),
            until=_epoch(self.until),
            error_contains=self.error_contains,
            limit=self.limit,
        )


def _epoch(moment: datetime | None) -> float | None:
    # Without an offset a time is UTC, as for `payhook sessions list`; read as local time,
    # year 1 would fall before the epoch's range and raise.
    if moment is None:
        return None
    return (moment if moment.tzinfo else moment.replace(tzinfo=UTC)).timestamp()


class _ReplayRequest(Filters):
    session_ids: list[Annotated[str, Field(min_length=1, max_length=255)]] = Field(
        default_factory=list, max_length=MAX_HTTP_REPLAY
    )
    failed: bool = False
    dry_run: bool = False
    rate: float = Field(default=20.0, gt=0, le=1000)


def parse_filters(model: type[Model], data: dict[str, Any]) -> Model:
    """A query or a body as `model`, or a 422 naming the first field that does not fit."""
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise invalid(exc) from None


def _summary(session: Session) -> dict[str, Any]:
    return session.model_dump(
        mode="json",
        include={
            "id",
            "kind",
            "shop",
            "state",
            "outcome",
            "report",
            "amount",
            "currency",
            "test",
            "created_at",
            "updated_at",
            "failed_at",
            "last_error",
            "psp_attempts",
            "report_attempts",
            "replays",
        },
    )


async def list_sessions(request: web.Request) -> web.Response:
    await require_admin(request)
    filters = parse_filters(Filters, dict(request.query))
    found = await find_sessions(request.config_dict[STORE], filters.to_filter(filters.state))
    return web.json_response({"sessions": [_summary(s) for s in found]})


async def show_session(request: web.Request) -> web.Response:
    await require_admin(request)
    store = request.config_dict[STORE]
    session_id = request.match_info["session_id"]
    session = await store.get(session_id)
    if session is None:
        raise ApiError(404, "not_found", f"no session {session_id}")
    timeline = await store.timeline(session_id)
    held = await money_held(LedgerStore(store.redis), session)
    return web.json_response(
        {
            "session": session.model_dump(mode="json"),
            "money_held": held and held.describe(),
            "timeline": [e.model_dump(mode="json", exclude_none=True) for e in timeline],
        }
    )


async def replay_sessions(request: web.Request) -> web.Response:
    await require_admin(request)
    body = parse_object(await read_body(request, request.config_dict[SETTINGS].max_body_bytes))
    wanted: _ReplayRequest = parse_filters(_ReplayRequest, body)
    if bool(wanted.session_ids) == wanted.failed:
        raise ApiError(
            422, "invalid_body", "give session_ids, or failed: true with filters", "session_ids"
        )
    store = request.config_dict[STORE]
    ids = wanted.session_ids
    if wanted.failed:
        ids = [s.id for s in await find_sessions(store, wanted.to_filter(State.FAILED))]
    results = await replay(
        store,
        ids,
        lease_seconds=request.config_dict[SETTINGS].lease_seconds,
        per_second=wanted.rate,
        dry_run=wanted.dry_run,
        actor="admin API",
    )
    return web.json_response(
        {
            "dry_run": wanted.dry_run,
            "replayed": [{"id": r.session_id, "resumes_at": r.state} for r in results if r.state],
            "skipped": [{"id": r.session_id, "reason": r.note} for r in results if not r.state],
        }
    )


async def list_shops(request: web.Request) -> web.Response:
    """Each shop: how its token is kept (never the token) and its `paymentsAppConfigure`."""
    await require_admin(request)
    statuses = await shop_statuses(request.config_dict[REDIS])
    return web.json_response({"shops": [status.model_dump(mode="json") for status in statuses]})


def add_routes(console: web.Application) -> None:
    """`/admin/sessions`, `/admin/sessions/{id}`, `/admin/replay`, `/admin/shops`."""
    console.router.add_get("/sessions", list_sessions)
    console.router.add_get("/sessions/{session_id:[^/]+}", show_session)
    console.router.add_post("/replay", replay_sessions)
    console.router.add_get("/shops", list_shops)
