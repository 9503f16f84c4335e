"""The dashboard's Shops page: each shop payhook holds a token for, how the token is kept
(never the token), and its onboarding: whether Shopify took `ready`, the handle, the last
`paymentsAppConfigure` asked and its answer, userErrors included."""

from __future__ import annotations

from aiohttp import web

from shops.onboarding import Onboarding, OnboardingState, shop_statuses
from webhook.console.html import esc, page, table, when
from webhook.console.login import Viewer
from webhook.keys import REDIS

_STATE_CLASS = {
    OnboardingState.CONFIGURED: "state-reported",
    OnboardingState.REFUSED: "state-failed",
    OnboardingState.FAILED: "state-failed",
    OnboardingState.QUEUED: "",
}


def _flag(ready: bool | None) -> str:
    return "-" if ready is None else ("ready" if ready else "not ready")


def _answer(record: Onboarding) -> str:
    parts = [
        f'<span class="{_STATE_CLASS[record.state]}">{esc(record.state.value)}</span> '
        f"{esc(when(record.at))} ({record.attempts} attempt(s))"
    ]
    for error in record.user_errors:
        where = ".".join(error.field or [])
        field = f"<code>{esc(where)}</code>: " if where else ""
        parts.append(f'<span class="err">userError {field}{esc(error.message)}</span>')
    if record.last_error and record.state is not OnboardingState.CONFIGURED:
        parts.append(f'<span class="err">{esc(record.last_error)}</span>')
    return "<br>".join(parts)


async def shops_page(request: web.Request, seen: Viewer) -> web.Response:
    rows = []
    for status in await shop_statuses(request.config_dict[REDIS]):
        record = status.onboarding
        if record is None:
            rows.append([esc(status.shop), esc(status.token), "-", "-", "-", "never configured"])
            continue
        asked = (
            f"{esc(_flag(record.ready))}, <code>{esc(record.handle or '-')}</code> "
            f"by {esc(record.asked_by)} at {esc(when(record.asked_at))}"
        )
        rows.append(
            [
                esc(status.shop),
                esc(status.token),
                esc(_flag(record.accepted_ready)),
                f"<code>{esc(record.accepted_handle or '-')}</code>",
                asked,
                _answer(record),
            ]
        )
    intro = (
        '<p class="note">A shop offers the payment method once Shopify has taken '
        "<code>ready</code> (<code>paymentsAppConfigure</code>). The install asks it; "
        "<code>payhook shops configure SHOP --ready</code> asks it again.</p>"
    )
    headings = ["shop", "token", "at Shopify", "handle", "last asked", "answer"]
    body = intro + table(headings, rows, empty="No shop has a token of its own yet.")
    return page("Shops", body, seen)
