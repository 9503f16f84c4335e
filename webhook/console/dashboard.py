"""The sessions dashboard under /admin: server-rendered pages over the same reads and the same
replay as the admin API (`webhook.console.api`), for a browser.

| route | page |
|---|---|
| `GET /admin` | counts by state and kind, backlog, money held, the last hour's charts |
| `GET /admin/dashboard/sessions` | search: id, shop, state, kind, error text, times |
| `GET /admin/dashboard/session?id=` | one session: fields, money held, its timeline |
| `GET /admin/dashboard/failed` | the dead letters, each with its replay button |
| `GET /admin/dashboard/bulk-replay` | a bulk replay's dry run: how many, where they resume |
| `POST /admin/dashboard/bulk-replay` | the bulk replay itself, for what the dry run counted |
| `POST /admin/dashboard/replay` | replay one failed session |
| `GET /admin/dashboard/held` | failed sessions still holding a ledger reservation |
| `GET /admin/dashboard/shops` | each shop's onboarding (`webhook.console.shops_page`) |
| `GET, POST /admin/login`, `POST /admin/logout` | the login form (`webhook.console.login`) |

Pages show what an operator needs and nothing of the buyer: no cancel URL or checkout id,
no token. Bad input is a 4xx page that names it and changes nothing.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from http import HTTPStatus
from typing import Any

from aiohttp import web
from yarl import URL

from errors import ApiError, TooManyAttempts
from readouts.activity import last_hour
from readouts.held import holdings, money_held
from readouts.query import find_sessions
from readouts.stats import COUNT_SCAN, collect
from sessions.ledger_store import LedgerStore
from sessions.models import Session
from sessions.replay import replay
from sessions.states import State
from webhook.admin_token import admin_token
from webhook.console.api import MAX_HTTP_REPLAY, Filters, parse_filters
from webhook.console.html import esc, page, session_link, table, when
from webhook.console.login import (
    Viewer,
    check_form,
    log_in,
    log_out,
    redirect,
    safe_next,
    same_origin,
    viewer,
)
from webhook.console.shops_page import shops_page
from webhook.console.views import (
    bulk_preview_body,
    bulk_result_body,
    failed_body,
    login_body,
    overview_body,
    session_body,
    sessions_body,
)
from webhook.keys import REDIS, SETTINGS, STORE

MAX_ID_CHARS = 255
HELD_ROWS = 200
# Replays from a page go at the admin API's default pace.
REPLAY_RATE = 20.0

PageHandler = Callable[[web.Request, Viewer], Awaitable[web.Response]]


def _page(handler: PageHandler) -> Callable[[web.Request], Awaitable[web.Response]]:
    """Let the viewer in (or send them to the form), then render refusals as pages."""

    async def guarded(request: web.Request) -> web.Response:
        seen = await viewer(request)
        try:
            return await handler(request, seen)
        except ApiError as refused:
            body = f'<p class="err">{esc(refused.message)}</p>'
            return page(HTTPStatus(refused.status).phrase, body, seen, status=refused.status)

    return guarded


def _query(request: web.Request) -> dict[str, str]:
    return {k: v for k, v in request.query.items() if v.strip()}


async def _form(request: web.Request) -> dict[str, str]:
    # The pages' forms are URL-encoded; aiohttp's multipart reader would fail on a malformed
    # multipart body instead of refusing it.
    if request.content_type != "application/x-www-form-urlencoded":
        raise ApiError(
            415, "unsupported_media_type", "send the form as application/x-www-form-urlencoded"
        )
    try:
        posted = await request.post()
    except (ValueError, UnicodeDecodeError):
        raise ApiError(400, "invalid_form", "the form could not be read") from None
    return {k: v for k, v in posted.items() if isinstance(v, str) and v.strip()}


def _session_id(value: str | None) -> str:
    if not value:
        raise ApiError(400, "missing_field", "give a session id", "id")
    if len(value) > MAX_ID_CHARS:
        raise ApiError(400, "invalid_field", "a session id has at most 255 characters", "id")
    return value


async def overview(request: web.Request, seen: Viewer) -> web.Response:
    redis = request.config_dict[REDIS]
    now = time.time()
    stats = await collect(redis, now)
    activity = await last_hour(
        redis, now, retention_seconds=request.config_dict[SETTINGS].retention_seconds
    )
    return page("Sessions", overview_body(stats, activity), seen)


async def sessions_list(request: web.Request, seen: Viewer) -> web.Response:
    query = _query(request)
    wanted_id = query.pop("id", None)
    filters: Filters = parse_filters(Filters, {"limit": "50", **query})
    store = request.config_dict[STORE]
    if wanted_id is not None:
        found = await store.get(_session_id(wanted_id))
        sessions = [found] if found is not None else []
    else:
        sessions = await find_sessions(store, filters.to_filter(filters.state))
    return page("Sessions", sessions_body(filters, wanted_id, sessions), seen)


async def session_page(request: web.Request, seen: Viewer) -> web.Response:
    session_id = _session_id(request.query.get("id"))
    store = request.config_dict[STORE]
    session = await store.get(session_id)
    if session is None:
        raise ApiError(404, "not_found", f"no session {session_id}")
    held = await money_held(LedgerStore(store.redis), session)
    timeline = await store.timeline(session_id)
    # Only a state name is echoed back: the link cannot put other words on the page.
    note = request.query.get("replayed")
    replayed = note if note in {s.value for s in State} else None
    body = session_body(session, held, timeline, seen, replayed=replayed)
    return page(f"Session {session_id}", body, seen)


async def replay_one(request: web.Request, seen: Viewer) -> web.Response:
    form = await _form(request)
    check_form(request, seen, form)
    session_id = _session_id(form.get("id"))
    [result] = await replay(
        request.config_dict[STORE],
        [session_id],
        lease_seconds=request.config_dict[SETTINGS].lease_seconds,
        per_second=REPLAY_RATE,
        actor="dashboard",
    )
    if result.state is None:
        missing = result.note == "no such session"
        raise ApiError(404 if missing else 409, "not_replayed", f"{session_id}: {result.note}")
    target = URL("/admin/dashboard/session").with_query(id=session_id, replayed=result.state.value)
    return redirect(str(target))


async def failed_list(request: web.Request, seen: Viewer) -> web.Response:
    filters: Filters = parse_filters(Filters, {"limit": "100", **_query(request)})
    found = await find_sessions(request.config_dict[STORE], filters.to_filter(State.FAILED))
    return page("Dead letters", failed_body(filters, found, seen), seen)


def _bulk_filters(data: dict[str, str]) -> Filters:
    data = {k: v for k, v in data.items() if k not in ("csrf", "expected")}
    # The dry run fixes `until`: a session failing after it is not part of what was counted.
    data.setdefault("until", datetime.fromtimestamp(time.time(), UTC).isoformat())
    data["limit"] = str(MAX_HTTP_REPLAY)
    filters: Filters = parse_filters(Filters, data)
    if filters.state not in (None, State.FAILED):
        raise ApiError(422, "invalid_field", "only failed sessions are replayed", "state")
    return filters


async def _matching(request: web.Request, filters: Filters) -> list[Session]:
    return await find_sessions(request.config_dict[STORE], filters.to_filter(State.FAILED))


async def bulk_preview(request: web.Request, seen: Viewer) -> web.Response:
    filters = _bulk_filters(_query(request))
    results = await replay(
        request.config_dict[STORE],
        [s.id for s in await _matching(request, filters)],
        lease_seconds=request.config_dict[SETTINGS].lease_seconds,
        per_second=REPLAY_RATE,
        dry_run=True,
    )
    return page("Bulk replay: dry run", bulk_preview_body(filters, results, seen), seen)


async def bulk_replay(request: web.Request, seen: Viewer) -> web.Response:
    form = await _form(request)
    check_form(request, seen, form)
    filters = _bulk_filters(form)
    results = await replay(
        request.config_dict[STORE],
        [s.id for s in await _matching(request, filters)],
        lease_seconds=request.config_dict[SETTINGS].lease_seconds,
        per_second=REPLAY_RATE,
        actor="dashboard",
    )
    expected = form.get("expected", "")
    counted = int(expected) if expected.isdigit() and len(expected) < 6 else None
    return page("Bulk replay", bulk_result_body(results, counted), seen)


async def held_list(request: web.Request, seen: Viewer) -> web.Response:
    store = request.config_dict[STORE]
    rows: list[list[str]] = []
    async for session, hold in holdings(store, LedgerStore(store.redis), scan=COUNT_SCAN):
        rows.append(
            [
                session_link(session.id),
                esc(session.shop),
                esc(session.kind),
                esc(hold.describe()),
                esc(when(session.failed_at)),
                f'<span class="err">{esc(session.last_error)}</span>',
            ]
        )
        if len(rows) >= HELD_ROWS:
            break
    intro = (
        '<p class="note">Failed sessions whose last PSP answer was lost keep their ledger '
        "reservation: the provider may have moved the money. Check the provider, then replay "
        "the session or release it (<code>payhook sessions release ID</code>).</p>"
    )
    headings = ["id", "shop", "kind", "held", "failed at", "last error"]
    body = intro + table(headings, rows, empty="No failed session holds money.")
    return page("Held money", body, seen)


async def login_form(request: web.Request) -> web.Response:
    admin_token(request.config_dict[SETTINGS])  # 404 without one
    return page("Log in", login_body(safe_next(request.query.get("next")), None), None)


async def login(request: web.Request) -> web.Response:
    admin_token(request.config_dict[SETTINGS])  # 404 without one
    if not same_origin(request):
        refused = '<p class="err">The form was sent from another site.</p>'
        return page("Forbidden", refused, None, status=403)
    form = await _form(request)
    wanted = safe_next(form.get("next"))
    try:
        answer = await log_in(request, form.get("token", ""), wanted)
    except TooManyAttempts as exc:
        refused = f'<p class="err">Too many wrong tokens. Try again in {exc.retry_after} s.</p>'
        waited = page("Log in", login_body(wanted, None) + refused, None, status=429)
        waited.headers["Retry-After"] = str(exc.retry_after)
        return waited
    if answer is None:
        return page("Log in", login_body(wanted, "That is not the admin token."), None, status=401)
    return answer


async def logout(request: web.Request, seen: Viewer) -> web.Response:
    check_form(request, seen, await _form(request))
    return await log_out(request, seen)


async def _to_overview(request: web.Request) -> web.Response:
    admin_token(request.config_dict[SETTINGS])  # 404 without one
    return redirect("/admin")


def add_routes(console: web.Application) -> None:
    """The pages of the table above, under the console's `/admin` ("" is `/admin` itself)."""
    routes: list[tuple[str, str, Any]] = [
        ("GET", "", _page(overview)),
        ("GET", "/", _to_overview),
        ("GET", "/login", login_form),
        ("POST", "/login", login),
        ("POST", "/logout", _page(logout)),
        ("GET", "/dashboard/sessions", _page(sessions_list)),
        ("GET", "/dashboard/session", _page(session_page)),
        ("POST", "/dashboard/replay", _page(replay_one)),
        ("GET", "/dashboard/failed", _page(failed_list)),
        ("GET", "/dashboard/bulk-replay", _page(bulk_preview)),
        ("POST", "/dashboard/bulk-replay", _page(bulk_replay)),
        ("GET", "/dashboard/held", _page(held_list)),
        ("GET", "/dashboard/shops", _page(shops_page)),
    ]
    for method, path, handler in routes:
        console.router.add_route(method, path, handler)
