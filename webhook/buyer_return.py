"""`GET /payments/{session_id}/return`: the buyer back from the PSP's page, sent on to Shopify.

payhook gives the PSP this URL with the buyer page (`{return_url}` in
`PAYHOOK_BUYER_PAGE_URL`); the PSP sends the buyer here once it has told payhook the outcome.
After `paymentSessionResolve`, `paymentSessionReject` or `paymentSessionPending` Shopify
answers where the buyer goes next (`nextAction.context.redirectUrl`); the worker stores it
with the report. This route waits, at most `PAYHOOK_BUYER_RETURN_WAIT_SECONDS`, for that
report, then answers `303` to it. A payment the PSP declined (a buyer who cancelled is a
decline too) that Shopify has not heard of by then goes back to checkout, its own
`cancel_url`. Anything else still under way gets a small page that asks again by itself.

It is the buyer's browser that comes here: no client certificate, no token. So:

- the only places it ever sends anyone are the two URLs Shopify gave for this session, each
  checked again (`sessions.urls`), never one taken from the request: it is no open redirect;
- an id that is no payment session (unknown, malformed, a capture's) gets the same plain 404
  page, and no page names a session, a shop, an amount or a state;
- it reads with one HMGET per look, soon at first and then five a second, and a process
  lets at most `MAX_WAITING` buyers wait at once (beyond that, they get the page that asks
  again);
- Redis away or answering badly is the page that asks again, never a 5xx.
"""

from __future__ import annotations

import asyncio
import logging
import re
from dataclasses import dataclass
from urllib.parse import quote

from aiohttp import web
from redis.exceptions import RedisError

from sessions.models import Kind, Outcome, Report
from sessions.urls import is_web_url
from webhook.keys import METRICS, SETTINGS, STORE

log = logging.getLogger("payhook.webhook")

# Any id but a slash: aiohttp's default segment pattern would not route ids with braces.
PATH = "/payments/{session_id:[^/]+}/return"
# Between two looks at the session while the buyer waits: soon at first (a worker usually
# reports within tens of milliseconds of the PSP's callback), then every POLL_SECONDS.
FIRST_POLL_SECONDS = 0.025
POLL_SECONDS = 0.2
# How soon the "still processing" page asks again.
REFRESH_SECONDS = 2
# Buyers one web process lets wait at once; each costs a look every POLL_SECONDS.
MAX_WAITING = 1000

_SESSION_ID = re.compile(r"[\x21-\x7e]{1,255}")
_FIELDS = ("kind", "outcome", "report", "redirect_url", "cancel_url")


def return_url(base_url: str, session_id: str) -> str:
    """The URL the PSP sends the buyer back to, for `PAYHOOK_BUYER_PAGE_URL`'s `{return_url}`."""
    # Quoted: an id may hold '/', '?' or '#' and must still reach its session.
    return f"{base_url}/payments/{quote(session_id, safe='')}/return"


# Where the buyer goes, given what is stored.
@dataclass(frozen=True)
class Redirect:
    url: str
    # For the metrics: `redirected` (Shopify's redirectUrl) or `cancelled` (the cancel_url).
    result: str


@dataclass(frozen=True)
class Wait:
    """Shopify has not been told yet: look again, or ask the browser to."""


@dataclass(frozen=True)
class Finished:
    """Shopify took the outcome, but named no place to send the buyer (its answer was lost
    and a repeat was refused as already done): nothing to send them to but home."""


@dataclass(frozen=True)
class NotFound:
    pass


Place = Redirect | Wait | Finished | NotFound


def where(fields: dict[str, str] | None, *, last_look: bool) -> Place:
    """Where the buyer of a session with these stored fields goes. `last_look`: the wait is
    over, so a decline Shopify has not heard of yet sends the buyer back to checkout."""
    if fields is None or fields.get("kind") != Kind.PAYMENT:
        return NotFound()
    redirect = fields.get("redirect_url")
    cancel = fields.get("cancel_url")
    if fields.get("report") is not None:
        if is_web_url(redirect):
            assert redirect is not None
            return Redirect(redirect, "redirected")
        if fields["report"] == Report.REJECTED and is_web_url(cancel):
            assert cancel is not None
            return Redirect(cancel, "cancelled")
        return Finished()
    # Only a decline goes back to checkout before Shopify knows: an approval or a pending
    # payment must not, or the buyer might pay a second time.
    if last_look and fields.get("outcome") == Outcome.DECLINED and is_web_url(cancel):
        assert cancel is not None
        return Redirect(cancel, "cancelled")
    return Wait()


@dataclass
class Waiting:
    """How many buyers this process has waiting now."""

    count: int = 0


WAITING = web.AppKey("buyer_returns_waiting", Waiting)

_HEADERS = {
    "Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'",
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    # Neither the PSP's page nor Shopify's learns this URL from the browser.
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
}
_PAGE = (
    '<!doctype html><html><head><meta charset="utf-8">{refresh}<title>{title}</title>'
    "<style>body{{font-family:sans-serif;max-width:32rem;margin:3rem auto}}</style>"
    "</head><body><h1>{title}</h1><p>{text}</p></body></html>"
)


def _page(status: int, title: str, text: str, *, refresh: bool = False) -> web.Response:
    again = f'<meta http-equiv="refresh" content="{REFRESH_SECONDS}">' if refresh else ""
    body = _PAGE.format(refresh=again, title=title, text=text)
    return web.Response(status=status, text=body, content_type="text/html", headers=_HEADERS)


def _answer(place: Place) -> web.Response:
    if isinstance(place, Redirect):
        body = _PAGE.format(refresh="", title="Back to the shop", text="Taking you back.")
        headers = {**_HEADERS, "Location": place.url}
        return web.Response(status=303, text=body, content_type="text/html", headers=headers)
    if isinstance(place, NotFound):
        return _page(404, "Not found", "There is no such payment.")
    if isinstance(place, Finished):
        return _page(
            200,
            "Payment received",
            "The shop has your payment. You can close this page and return to the shop.",
        )
    return _page(
        200,
        "Processing your payment",
        "Your payment is being confirmed with the shop. This page checks again by itself; "
        "please keep it open.",
        refresh=True,
    )


def _result(place: Place) -> str:
    if isinstance(place, Redirect):
        return place.result
    if isinstance(place, NotFound):
        return "not_found"
    return "finished" if isinstance(place, Finished) else "processing"


async def buyer_return(request: web.Request) -> web.Response:
    session_id = request.match_info["session_id"]
    # The path is percent-decoded: what no session id can be never reaches a Redis key.
    if not _SESSION_ID.fullmatch(session_id):
        place: Place = NotFound()
    else:
        place = await _look(request, session_id)
    request.app[METRICS].buyer_returns.labels(_result(place)).inc()
    return _answer(place)


async def _look(request: web.Request, session_id: str) -> Place:
    """Look at the session until it says where the buyer goes, or the wait is over."""
    store = request.app[STORE]
    waiting = request.app[WAITING]
    loop = asyncio.get_running_loop()
    deadline = loop.time() + request.app[SETTINGS].buyer_return_wait_seconds
    # Past the cap, one look and no wait: the page asks again in a moment.
    may_wait = waiting.count < MAX_WAITING
    pause = FIRST_POLL_SECONDS
    waiting.count += 1
    try:
        while True:
            try:
                fields = await store.fields(session_id, _FIELDS)
            except RedisError as exc:
                # The buyer can do nothing about it; the page asks again.
                log.warning(
                    "buyer return: store unavailable",
                    extra={"session_id": session_id, "kind": "payment", "error": repr(exc)},
                )
                return Wait()
            left = deadline - loop.time()
            place = where(fields, last_look=not may_wait or left <= 0)
            if not isinstance(place, Wait) or not may_wait or left <= 0:
                return place
            await asyncio.sleep(min(pause, left))
            pause = min(pause * 2, POLL_SECONDS)
    finally:
        waiting.count -= 1
