"""The OAuth install: `GET /shopify/install?shop=…` and `GET /shopify/callback`.

The install sends the merchant to the shop's authorize page with the app's key, the scopes
the payments app needs and a `state` nonce bound to the shop (`shops.installs`). Shopify
sends the merchant back to the callback with a signed query; the callback checks, in this
order and before anything is written, the signature (`webhook.oauth`), the shop domain, the
signing time, and the nonce, which it spends only when it is this shop's. Then it exchanges
the code for the offline token (`webhook.token_exchange`) and stores the token, encrypted,
with the shop's first onboarding ask in one step (`shops.onboarding`); a worker's sweep
sends `paymentsAppConfigure` from there, retrying as reports do.

These routes are the merchant's browser's, not Shopify's servers': no client certificate is
asked of them. Starting installs is rate limited per client and in all, since each one keeps
a nonce in Redis for a while; a callback costs Redis nothing until its signature holds.
Without `PAYHOOK_SHOPIFY_API_KEY`, `PAYHOOK_SHOPIFY_API_SECRET` and `PAYHOOK_TOKEN_KEYS`
both routes answer 404 `not_configured`.
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass

import aiohttp
from aiohttp import web

from config import Settings
from config.shop_domains import is_shop_domain
from errors import ApiError, CodeRefused, ExchangeFailed
from sessions.keys import PREFIX
from shops.installs import InstallStates, Taken
from shops.onboarding import OnboardingStore
from shops.tokens import TokenCipher, token_cipher
from webhook.admin_attempts import client_of
from webhook.keys import REDIS, SETTINGS
from webhook.oauth import authorize_url, missing_scopes, signed_by
from webhook.rate_limit import RateLimit
from webhook.token_exchange import exchange_code

log = logging.getLogger("payhook.install")

# Installs started per minute, from one client and from all: a merchant starts one, and at
# these rates the nonces kept in Redis stay below a few thousand.
INSTALLS_PER_CLIENT = 30
INSTALLS_IN_ALL = 600
_WINDOW_SECONDS = 60.0
_ALL_CLIENTS = "*"
# A callback's query: Shopify's few parameters, each short. Anything larger is not Shopify's.
MAX_PARAMETERS = 32
MAX_VALUE_CHARS = 2048
_TIMESTAMP = re.compile(r"[0-9]{1,12}")
_CODE = re.compile(r"[\x21-\x7e]{1,255}")


def install_rate_key(client: str) -> str:
    return f"{PREFIX}install-rate:{client}"


@dataclass(frozen=True)
class Installs:
    """What the install routes use, built with the app's Redis client and HTTP session."""

    states: InstallStates
    onboarding: OnboardingStore
    cipher: TokenCipher | None
    per_client: RateLimit
    in_all: RateLimit
    http: aiohttp.ClientSession


INSTALLS = web.AppKey("installs", Installs)


async def install_resources(app: web.Application) -> AsyncIterator[None]:
    """The install's HTTP session (bounded by the Shopify timeout) and its stores; after
    the app's Redis client, whose life it shares."""
    settings, redis = app[SETTINGS], app[REDIS]
    timeout = aiohttp.ClientTimeout(total=settings.shopify_timeout_seconds)
    http = aiohttp.ClientSession(
        timeout=timeout, connector=aiohttp.TCPConnector(limit=32), trust_env=False
    )
    app[INSTALLS] = Installs(
        states=InstallStates(redis),
        onboarding=OnboardingStore(redis),
        cipher=token_cipher(settings.token_key_list),
        per_client=RateLimit(
            redis, limit=INSTALLS_PER_CLIENT, window_seconds=_WINDOW_SECONDS, key=install_rate_key
        ),
        in_all=RateLimit(
            redis, limit=INSTALLS_IN_ALL, window_seconds=_WINDOW_SECONDS, key=install_rate_key
        ),
        http=http,
    )
    yield
    await http.close()


def _configured(settings: Settings) -> tuple[str, str]:
    """(API key, API secret), or the 404 saying what is missing."""
    problem = settings.install_problem
    key, secret = settings.shopify_api_key, settings.shopify_api_secret
    if problem is not None or key is None or secret is None:
        raise ApiError(404, "not_configured", str(problem))
    return key, secret.get_secret_value()


def _shop(value: str | None, settings: Settings) -> str:
    if not value:
        raise ApiError(
            400, "missing_parameter", "give the shop: ?shop=<shop>.myshopify.com", "shop"
        )
    suffixes = settings.shop_domain_suffixes
    if len(value) > 255 or not is_shop_domain(value, suffixes):
        shapes = " or ".join(f"<shop>{suffix}" for suffix in suffixes)
        raise ApiError(400, "invalid_shop", f"shop is not a Shopify shop domain ({shapes})", "shop")
    return value


async def _within_budget(request: web.Request, installs: Installs) -> None:
    client = client_of(request, request.app[SETTINGS])
    # One client past its budget spends nothing of everyone's.
    wait = await installs.per_client.wait_for(client)
    if wait <= 0:
        wait = await installs.in_all.wait_for(_ALL_CLIENTS)
    if wait > 0:
        retry_after = str(max(1, round(wait + 0.5)))
        raise ApiError(
            429,
            "too_many_installs",
            f"too many installs started; try again in {retry_after} s",
            headers={"Retry-After": retry_after},
        )


async def install(request: web.Request) -> web.Response:
    settings = request.app[SETTINGS]
    api_key, _ = _configured(settings)
    shops = request.query.getall("shop", [])
    if len(shops) > 1:
        raise ApiError(400, "invalid_parameter", "give the shop once", "shop")
    # A merchant may type the shop's name in capitals; Shopify's own are lowercase.
    shop = _shop(shops[0].strip().lower() if shops else None, settings)
    installs = request.app[INSTALLS]
    await _within_budget(request, installs)
    state = await installs.states.issue(shop)
    location = authorize_url(
        settings.shopify_authorize_url,
        shop,
        api_key=api_key,
        scopes=settings.shopify_scopes,
        redirect_uri=settings.install_callback_url,
        state=state,
    )
    log.info("install started", extra={"shop": shop})
    return web.Response(status=302, headers={"Location": location, "Cache-Control": "no-store"})


def _query(request: web.Request) -> list[tuple[str, str]]:
    pairs = list(request.query.items())
    if len(pairs) > MAX_PARAMETERS or any(
        len(name) > 64 or len(value) > MAX_VALUE_CHARS for name, value in pairs
    ):
        raise ApiError(400, "invalid_query", "the query is larger than any Shopify sends")
    return pairs


def _one(query: list[tuple[str, str]], name: str) -> str:
    values = [value for key, value in query if key == name]
    if not values:
        raise ApiError(400, "missing_parameter", f"the callback carries no {name}", name)
    if len(values) > 1:
        raise ApiError(400, "invalid_parameter", f"the callback carries {name} twice", name)
    return values[0]


def _signed_now(query: list[tuple[str, str]], settings: Settings) -> None:
    timestamp = _one(query, "timestamp")
    if not _TIMESTAMP.fullmatch(timestamp):
        raise ApiError(400, "invalid_parameter", "timestamp is not Unix seconds", "timestamp")
    tolerance = settings.callback_tolerance_seconds
    if abs(time.time() - int(timestamp)) > tolerance:
        raise ApiError(
            401,
            "stale_timestamp",
            f"the callback was signed more than {tolerance:g} s from now; install again",
            "timestamp",
        )


async def callback(request: web.Request) -> web.Response:
    settings = request.app[SETTINGS]
    api_key, api_secret = _configured(settings)
    query = _query(request)
    if not signed_by(query, api_secret):
        raise ApiError(401, "bad_hmac", "the callback is not signed with the app's secret", "hmac")
    shop = _shop(_one(query, "shop"), settings)
    _signed_now(query, settings)
    code = _one(query, "code")
    if not _CODE.fullmatch(code):
        raise ApiError(400, "invalid_parameter", "code is not an authorization code", "code")
    installs = request.app[INSTALLS]
    taken = await installs.states.take(_one(query, "state"), shop)
    if taken is Taken.OTHER_SHOP:
        raise ApiError(
            403, "state_for_another_shop", f"this install was not started for {shop}", "state"
        )
    if taken is not Taken.TAKEN:
        raise ApiError(
            403,
            "unknown_state",
            "the install's state is unknown: used already, expired, or never made; install again",
            "state",
        )
    try:
        answer = await exchange_code(
            installs.http,
            settings.shopify_token_url.format(shop=shop),
            api_key=api_key,
            api_secret=api_secret,
            code=code,
        )
    except CodeRefused as exc:
        raise ApiError(
            400, "code_refused", f"Shopify refused the code ({exc}); install again", "code"
        ) from None
    except ExchangeFailed as exc:
        log.warning("token exchange failed", extra={"shop": shop, "error": str(exc)})
        raise ApiError(
            502, "shopify_unavailable", f"Shopify did not give a token ({exc}); install again"
        ) from None
    missing = missing_scopes(settings.shopify_scopes, answer.scope)
    if missing:
        raise ApiError(
            403,
            "scopes_not_granted",
            f"the token lacks {', '.join(missing)}; nothing stored",
            "scope",
        )
    assert installs.cipher is not None  # `_configured` requires PAYHOOK_TOKEN_KEYS
    sealed = installs.cipher.seal(answer.access_token.get_secret_value())
    request_number = await installs.onboarding.install(
        shop, sealed, handle=shop, ready=True, now=time.time()
    )
    log.info("shop installed", extra={"shop": shop, "onboarding_request": request_number})
    return web.json_response(
        {
            "shop": shop,
            "installed": True,
            "scopes": [s for s in answer.scope.split(",") if s],
            "onboarding": {"handle": shop, "ready": True, "state": "queued"},
        },
        headers={"Cache-Control": "no-store"},
    )


def add_install_routes(app: web.Application) -> None:
    app.router.add_get("/shopify/install", install)
    app.router.add_get("/shopify/callback", callback)
