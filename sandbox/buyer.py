"""The simulator PSP's buyer page, served by the sandbox, and Shopify's pages the buyer is
sent back to.

Shopify sends the buyer to the `redirect_url` payhook answered for a payment session; in the
sandbox that is `GET /pay/{session_id}`, a page with Approve, Decline, Leave pending and
Cancel buttons. The choice is reported to payhook's callback, signed with the shared webhook
secret over the session and the time (`webhook.signing`), exactly as a PSP would (a cancel is
reported as a decline); then, like a PSP, the page sends the buyer to payhook's `return_url`
(`303`), which sends them on to Shopify. Without a secret the page calls nobody back.
`POST /_sandbox/buyer {"auto": "approved"}` makes every page visit decide at once, for tests
and demos.

A payment left pending waits for the buyer (`pending_reason` left out: payhook's default),
except for a magic amount: one whose last two digits in minor units are 57 (`10.57 EUR`,
`1057 JPY`) is held for the merchant's review, `merchant_action_required`.

Shopify's side of the trip: `GET /_sandbox/checkout/{id}/{page}`, the pages the sandbox's
`nextAction.context.redirectUrl` names (`thank_you` after resolve or pending, `declined`
after reject) and a `cancel` page for a checkout's `cancel_url`. Each visit is remembered
(`GET /_sandbox/buyer` lists them under `arrivals`), so a test sees where the buyer landed.
"""

from __future__ import annotations

import html
import json
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any
from urllib.parse import quote, urlsplit

import aiohttp
from aiohttp import web

from sandbox.checkout import CHECKOUT_PAGES, CHECKOUT_PATH
from sandbox.state import SANDBOX_STATE
from sessions.money import to_minor
from webhook.signing import sign, simulator_reference

# What a buyer may choose; a cancel reaches payhook as a decline, as a PSP reports it.
OUTCOMES = ("approved", "declined", "pending", "cancelled")
CANCELLED = "The buyer cancelled the payment on the payment page."
AUTHORIZATION_DAYS = 7
# Amounts ending in this (minor units) are pending for the merchant, not the buyer.
MERCHANT_REVIEW = 57


@dataclass
class BuyerState:
    secret: str | None
    auto: str | None = None
    decisions: list[dict[str, Any]] = field(default_factory=list)
    # Every visit to a checkout page: the buyer back at Shopify.
    arrivals: list[dict[str, Any]] = field(default_factory=list)


BUYER_STATE = web.AppKey("buyer_state", BuyerState)

_PAGE = """<!doctype html><html><head><meta charset="utf-8"><title>Simulator PSP</title>
<style>body{{font-family:sans-serif;max-width:32rem;margin:3rem auto}}button{{margin:.3rem;
padding:.6rem 1.2rem;font-size:1rem}}</style></head><body>
<h1>Pay {amount} {currency}</h1><p>Simulator PSP · session <code>{session}</code></p>
<form method="post" action="/pay/{session_q}/decide">
<input type="hidden" name="callback" value="{callback}">
<input type="hidden" name="return_url" value="{return_url}">
<input type="hidden" name="amount" value="{amount}">
<input type="hidden" name="currency" value="{currency}">
<button name="outcome" value="approved">Approve</button>
<button name="outcome" value="declined">Decline</button>
<button name="outcome" value="pending">Leave pending</button>
<button name="outcome" value="cancelled">Cancel</button></form></body></html>"""

_DONE = """<!doctype html><html><head><meta charset="utf-8"><title>Simulator PSP</title></head>
<body><h1>Payment {outcome}</h1><p>payhook answered {status}.</p></body></html>"""

_CHECKOUT = """<!doctype html><html><head><meta charset="utf-8"><title>Sandbox Shopify</title>
</head><body><h1>{title}</h1><p>Back at Shopify · payment session <code>{session}</code>
· <span id="state">{state}</span></p></body></html>"""


def loopback_url(url: str) -> bool:
    # The sandbox only ever calls back to this machine.
    parts = urlsplit(url)
    return parts.scheme in ("http", "https") and parts.hostname in ("127.0.0.1", "localhost")


def _merchant_review(amount: str, currency: str) -> bool:
    try:
        value = Decimal(amount[:40])
        # `1e999999999` would be a billion-digit integer: no amount is that large.
        if not value.is_finite() or value.adjusted() > 20:
            return False
        return to_minor(value, currency) % 100 == MERCHANT_REVIEW
    except (ArithmeticError, ValueError):
        # Not an amount in a currency the page knows: no magic.
        return False


async def _decide(
    request: web.Request,
    session_id: str,
    outcome: str,
    callback: str,
    amount: str = "",
    currency: str = "",
    back: str = "",
) -> web.Response:
    state = request.app[BUYER_STATE]
    if outcome not in OUTCOMES:
        return web.Response(status=400, text=f"outcome must be one of {', '.join(OUTCOMES)}")
    if not loopback_url(callback):
        return web.Response(status=400, text="the callback must be on 127.0.0.1 or localhost")
    if back and not loopback_url(back):
        return web.Response(status=400, text="the return_url must be on 127.0.0.1 or localhost")
    if state.secret is None:
        return web.Response(
            status=503, text="no callback secret: set PAYHOOK_SIMULATOR_WEBHOOK_SECRET"
        )
    told = "declined" if outcome == "cancelled" else outcome
    body: dict[str, Any] = {"outcome": told, "reference": simulator_reference(session_id)}
    if outcome == "approved":
        expires = datetime.fromtimestamp(time.time() + AUTHORIZATION_DAYS * 86400, UTC)
        body["authorization_expires_at"] = expires.strftime("%Y-%m-%dT%H:%M:%SZ")
    if outcome == "declined":
        body["message"] = "The buyer's bank declined the payment."
    if outcome == "cancelled":
        body["message"] = CANCELLED
    if outcome == "pending" and _merchant_review(amount, currency):
        body["pending_reason"] = "merchant_action_required"
    raw = json.dumps(body).encode()
    status = 0
    async with aiohttp.ClientSession() as http:
        for _ in range(3):  # like a PSP, retry a callback that did not land
            try:
                async with http.post(
                    callback,
                    data=raw,
                    headers={
                        "Content-Type": "application/json",
                        # Signed at each try: a retry is a fresh callback.
                        "X-Payhook-Signature": sign(
                            state.secret, session_id, int(time.time()), raw
                        ),
                    },
                ) as answer:
                    status = answer.status
                if status < 500:
                    break
            except aiohttp.ClientError:
                status = 0
    state.decisions.append(
        {"session_id": session_id, "outcome": outcome, "status": status, "at": time.time()}
    )
    if back and 200 <= status < 300:
        # Told: like a PSP, send the buyer back to the app, which sends them on to Shopify.
        raise web.HTTPSeeOther(back)
    return web.Response(
        text=_DONE.format(outcome=outcome, status=status or "nothing"), content_type="text/html"
    )


async def buyer_page(request: web.Request) -> web.Response:
    session_id = request.match_info["session_id"]
    callback = request.query.get("callback", "")
    back = request.query.get("return_url", "")
    auto = request.app[BUYER_STATE].auto
    amount, currency = request.query.get("amount", ""), request.query.get("currency", "")
    if auto is not None:
        return await _decide(request, session_id, auto, callback, amount, currency, back)
    page = _PAGE.format(
        amount=html.escape(request.query.get("amount", "?")),
        currency=html.escape(request.query.get("currency", "")),
        session=html.escape(session_id),
        session_q=html.escape(quote(session_id, safe=""), quote=True),
        callback=html.escape(callback, quote=True),
        return_url=html.escape(back, quote=True),
    )
    return web.Response(text=page, content_type="text/html")


async def buyer_decides(request: web.Request) -> web.Response:
    form = await request.post()
    return await _decide(
        request,
        request.match_info["session_id"],
        str(form.get("outcome", "")),
        str(form.get("callback", "")),
        str(form.get("amount", "")),
        str(form.get("currency", "")),
        str(form.get("return_url", "")),
    )


async def checkout_page(request: web.Request) -> web.Response:
    """The buyer back at Shopify: which page, and what the sandbox's ledger holds of the
    payment session."""
    session_id = request.match_info["session_id"]
    page = request.match_info["page"]
    title = CHECKOUT_PAGES.get(page)
    if title is None:
        return web.Response(status=404, text="no such checkout page")
    record = request.app[SANDBOX_STATE].ledger.get(f"gid://shopify/PaymentSession/{session_id}")
    known = record.state if record is not None and record.state is not None else "unknown"
    request.app[BUYER_STATE].arrivals.append(
        {"session_id": session_id, "page": page, "state": known, "at": time.time()}
    )
    body = _CHECKOUT.format(title=title, session=html.escape(session_id), state=known)
    return web.Response(text=body, content_type="text/html")


async def buyer_settings(request: web.Request) -> web.Response:
    state = request.app[BUYER_STATE]
    if request.method == "POST":
        body = await request.json()
        auto = body.get("auto") if isinstance(body, dict) else None
        if auto is not None and auto not in OUTCOMES:
            return web.json_response(
                {"error": f"auto must be one of {OUTCOMES} or null"}, status=400
            )
        state.auto = auto
    return web.json_response(
        {"auto": state.auto, "decisions": state.decisions, "arrivals": state.arrivals}
    )


def add_buyer_routes(app: web.Application, secret: str | None) -> None:
    app[BUYER_STATE] = BuyerState(secret=secret)
    app.router.add_get("/pay/{session_id}", buyer_page)
    app.router.add_post("/pay/{session_id}/decide", buyer_decides)
    app.router.add_route("*", "/_sandbox/buyer", buyer_settings)
    app.router.add_get(CHECKOUT_PATH, checkout_page)
