"""The console's sub-app factory."""

from __future__ import annotations

from aiohttp import web

from webhook.console import api, dashboard, webhooks_api


def create_console() -> web.Application:
    """The admin API and the dashboard, to mount at `/admin` (every route the modules add
    is relative to it).

    The console holds no state and opens nothing: its handlers read the web app's settings,
    Redis client, stores and attempt budget through `request.config_dict`. The web app's
    middlewares wrap its routes (JSON errors, the server span) and the web app's
    `client_max_size` bounds their bodies: a request is read by the app that accepted it.
    """
    console = web.Application()
    api.add_routes(console)
    webhooks_api.add_routes(console)
    dashboard.add_routes(console)
    return console
