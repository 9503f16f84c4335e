"""Shopify's side of the OAuth install, played by the sandbox (rules: `sandbox.oauth_state`).

- `GET /{shop}/admin/oauth/authorize?client_id&scope&redirect_uri&state` approves at once,
  as a merchant who is logged in and clicks Install would, and redirects (302) to
  `redirect_uri` with `code`, `hmac`, `host`, `shop`, `state` and `timestamp`, signed with
  the app's secret. An unknown `client_id` or a `redirect_uri` that is not an absolute
  http(s) URL is a 400 and no redirect.
- `POST /{shop}/admin/oauth/access_token` with `client_id`, `client_secret` and `code` (JSON
  or a form) answers `{"access_token", "scope"}`; a code is good once (400 after).

The token issued becomes the only one the GraphQL endpoint accepts for that shop, so a
session reported afterwards shows that the install's token is the one in use.
"""

from __future__ import annotations

import base64
import time
from urllib.parse import urlencode, urlsplit

from aiohttp import web

from sandbox.oauth_state import Issued, sign_query
from sandbox.state import SANDBOX_STATE

AUTHORIZE_PATH = "/{shop}/admin/oauth/authorize"
TOKEN_PATH = "/{shop}/admin/oauth/access_token"  # noqa: S105 - a path


def add_oauth_routes(app: web.Application) -> None:
    app.router.add_get(AUTHORIZE_PATH, authorize)
    app.router.add_post(TOKEN_PATH, access_token)


def _refused(message: str, status: int = 400) -> web.Response:
    return web.json_response(
        {"error": "invalid_request", "error_description": message}, status=status
    )


async def authorize(request: web.Request) -> web.Response:
    shop = request.match_info["shop"]
    grants = request.app[SANDBOX_STATE].grants
    query = request.query
    client_id = query.get("client_id", "")
    secret = grants.secret_of(client_id)
    if secret is None:
        return _refused(f"no app has the client_id {client_id!r}")
    redirect_uri, scope = query.get("redirect_uri", ""), query.get("scope", "")
    target = urlsplit(redirect_uri)
    if target.scheme not in ("http", "https") or not target.netloc:
        return _refused("redirect_uri must be an absolute http(s) URL")
    if not scope:
        return _refused("scope is required")
    store = shop.split(".", 1)[0]
    params = {
        "code": grants.grant(shop, client_id, scope),
        "host": base64.urlsafe_b64encode(f"admin.shopify.com/store/{store}".encode())
        .decode()
        .rstrip("="),
        "shop": shop,
        "state": query.get("state", ""),
        "timestamp": str(int(time.time())),
    }
    params["hmac"] = sign_query(params, secret)
    joiner = "&" if target.query else "?"
    raise web.HTTPFound(redirect_uri + joiner + urlencode(params))


async def access_token(request: web.Request) -> web.Response:
    shop = request.match_info["shop"]
    if request.content_type == "application/json":
        try:
            body = await request.json()
        except ValueError:
            body = None
    else:
        body = dict(await request.post())
    if not isinstance(body, dict):
        return _refused("send client_id, client_secret and code")
    fields = [body.get(name) for name in ("client_id", "client_secret", "code")]
    if not all(isinstance(value, str) and value for value in fields):
        return _refused("client_id, client_secret and code are required")
    client_id, client_secret, code = (str(value) for value in fields)
    state = request.app[SANDBOX_STATE]
    result = state.grants.exchange(shop, client_id, client_secret, code)
    if not isinstance(result, Issued):
        return _refused(result)
    state.tokens[shop] = result.token
    return web.json_response({"access_token": result.token, "scope": result.scope})
