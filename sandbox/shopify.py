"""A sandbox Shopify: a real aiohttp server speaking the Payments Apps GraphQL API.

payhook talks to it in dev mode and in tests exactly as it talks to Shopify, by pointing
`PAYHOOK_SHOPIFY_GRAPHQL_URL` at `graphql_url_template`. Behind the GraphQL endpoint sit
Shopify's session rules (`sandbox.ledger`), fault rules (`sandbox.faults`), a call log and
the confirmation requests it sends the app (`sandbox.confirmations`), all steered through
the admin API (`sandbox.admin`).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from aiohttp import web

from sandbox.admin import add_admin_routes
from sandbox.api_versions import DEFAULT_API_VERSION
from sandbox.app_webhooks import add_webhook_routes
from sandbox.buyer import add_buyer_routes
from sandbox.graphql_endpoint import graphql_endpoint
from sandbox.oauth import AUTHORIZE_PATH, TOKEN_PATH, add_oauth_routes
from sandbox.state import SANDBOX_STATE, SandboxState

GRAPHQL_PATH = "/{shop}/payments_apps/api/{version}/graphql.json"


def create_shopify_app(
    *,
    strict_sessions: bool = True,
    tokens: Mapping[str, str] | None = None,
    clock: Callable[[], float] = time.monotonic,
    callback_secret: str | None = None,
    apps: Mapping[str, str] | None = None,
    confirmation_callback_url: str | None = None,
    webhook_secret: str | None = None,
    app_url: str | None = None,
    api_version: str = DEFAULT_API_VERSION,
) -> web.Application:
    """The sandbox app.

    `strict_sessions`: a gid must be registered (`POST /_sandbox/sessions`) before a
    mutation can find it, as on Shopify; off, unknown gids are registered on first use.
    `tokens`: shop → the only access token accepted for it; other shops accept any
    non-empty token. `clock`: monotonic seconds for fault windows and the cost bucket.
    `callback_secret`: what the simulator's buyer page signs its callbacks with (payhook's
    `PAYHOOK_SIMULATOR_WEBHOOK_SECRET`); without one it calls nobody back.
    `apps`: API key → API secret of the apps that may be installed (`sandbox.oauth`).
    `confirmation_callback_url`: the app's (the extension setting), where confirmation
    requests go for sessions registered without one of their own; without either, a
    `paymentSessionConfirm` is refused `CONFIRMATION_NOT_SUPPORTED`.
    `webhook_secret`: what Shopify's own webhooks are signed with (payhook's
    `PAYHOOK_SHOPIFY_API_SECRET`); `app_url`: where they go by default (`sandbox.app_webhooks`).
    `api_version`: the Payments Apps API version served (payhook's
    `PAYHOOK_SHOPIFY_API_VERSION`), its schema the reference one; `UnknownApiVersion` when
    the sandbox has no schema of it (`sandbox.api_versions`).
    """
    app = web.Application()
    app[SANDBOX_STATE] = SandboxState.create(
        api_version=api_version,
        strict_sessions=strict_sessions,
        tokens=dict(tokens or {}),
        apps=dict(apps or {}),
        clock=clock,
        confirmation_callback_url=confirmation_callback_url,
    )

    async def stop_confirmations(app: web.Application) -> None:
        await app[SANDBOX_STATE].confirmations.close()

    app.on_cleanup.append(stop_confirmations)
    app.router.add_post(GRAPHQL_PATH, graphql_endpoint)
    add_oauth_routes(app)
    add_admin_routes(app)
    add_buyer_routes(app, callback_secret)
    add_webhook_routes(app, webhook_secret, app_url, api_version)
    return app


@dataclass(frozen=True)
class RunningShopifySandbox:
    """A started sandbox; `close()` stops it."""

    runner: web.AppRunner
    url: str
    port: int
    api_version: str = DEFAULT_API_VERSION

    @property
    def graphql_url_template(self) -> str:
        """With `{shop}` and `{version}` left in, as `PAYHOOK_SHOPIFY_GRAPHQL_URL` expects."""
        return self.url + GRAPHQL_PATH

    def graphql_url(self, shop: str, version: str | None = None) -> str:
        return self.graphql_url_template.format(shop=shop, version=version or self.api_version)

    @property
    def authorize_url_template(self) -> str:
        """With `{shop}` left in, as `PAYHOOK_SHOPIFY_AUTHORIZE_URL` expects."""
        return self.url + AUTHORIZE_PATH

    @property
    def token_url_template(self) -> str:
        """With `{shop}` left in, as `PAYHOOK_SHOPIFY_TOKEN_URL` expects."""
        return self.url + TOKEN_PATH

    async def close(self) -> None:
        await self.runner.cleanup()


async def start_shopify_sandbox(
    host: str = "127.0.0.1",
    port: int = 0,
    *,
    strict_sessions: bool = True,
    tokens: Mapping[str, str] | None = None,
    callback_secret: str | None = None,
    apps: Mapping[str, str] | None = None,
    confirmation_callback_url: str | None = None,
    webhook_secret: str | None = None,
    app_url: str | None = None,
    api_version: str = DEFAULT_API_VERSION,
) -> RunningShopifySandbox:
    """Serve the sandbox on `host:port`; port 0 picks a free one, read it from `.port`."""
    app = create_shopify_app(
        strict_sessions=strict_sessions,
        tokens=tokens,
        callback_secret=callback_secret,
        apps=apps,
        confirmation_callback_url=confirmation_callback_url,
        webhook_secret=webhook_secret,
        app_url=app_url,
        api_version=api_version,
    )
    runner = web.AppRunner(app)
    await runner.setup()
    try:
        await web.TCPSite(runner, host, port).start()
    except BaseException:
        await runner.cleanup()
        raise
    bound_port = int(runner.addresses[0][1])
    # A wildcard bind is reachable on loopback; an IPv6 literal needs brackets in a URL.
    url_host = "127.0.0.1" if host in ("", "0.0.0.0") else host
    if ":" in url_host:
        url_host = f"[{url_host}]"
    return RunningShopifySandbox(
        runner=runner,
        url=f"http://{url_host}:{bound_port}",
        port=bound_port,
        api_version=api_version,
    )
