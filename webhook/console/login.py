"""Who may see the dashboard: the admin bearer token, or a login made with it.

A login is a cookie `payhook_admin` = `<expires>.<login id>.<signature>`, signed with HMAC-SHA256
under a key derived from `PAYHOOK_ADMIN_TOKEN`: it never carries the token, and changing the
token ends every login. It is HttpOnly, SameSite=Strict, limited to `/admin`, Secure when the
browser came over TLS (to payhook, or to the trusted proxy in front: `webhook.auth.over_tls`),
and lasts `PAYHOOK_ADMIN_LOGIN_SECONDS`. Logging out records the login
id in Redis until the cookie would have expired, so a copied cookie dies with the logout.

Forms that change something (replay, logout) are guarded twice against cross-site requests:
the browser does not send a SameSite=Strict cookie with another site's request, and each form
carries a CSRF token, an HMAC of the login id that only pages of this login contain. A form
whose `Origin` names another host is refused as well. A request with the bearer token needs
none of this: browsers never add that header on their own.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import re
import secrets
import time
from dataclasses import dataclass
from urllib.parse import urlencode, urlparse

from aiohttp import web

from errors import ApiError
from sessions.keys import logout_key
from webhook.admin_attempts import client_of
from webhook.admin_token import admin_token, bearer_ok
from webhook.auth import over_tls
from webhook.keys import ADMIN_ATTEMPTS, REDIS, SETTINGS

log = logging.getLogger("payhook.dashboard")

COOKIE = "payhook_admin"
LOGIN_PATH = "/admin/login"
_COOKIE_SHAPE = re.compile(r"^(\d{1,12})\.([A-Za-z0-9_-]{16,64})\.([0-9a-f]{64})$")
# Where a login may send the browser on: a dashboard page of this host, nothing else.
_NEXT = re.compile(r"^/admin(/[A-Za-z0-9/_-]*)?(\?[\x21-\x7e]{0,1000})?$")


@dataclass(frozen=True)
class Viewer:
    """Someone the dashboard let in: with a login (a CSRF token for its forms), or the token."""

    login: str | None
    csrf: str | None
    expires: float | None = None


def _key(token: bytes) -> bytes:
    return hmac.new(token, b"payhook dashboard login", hashlib.sha256).digest()


def _sign(key: bytes, message: str) -> str:
    return hmac.new(key, message.encode(), hashlib.sha256).hexdigest()


def csrf_token(key: bytes, login: str) -> str:
    return _sign(key, f"csrf.{login}")


async def _from_cookie(request: web.Request, key: bytes) -> Viewer | None:
    shape = _COOKIE_SHAPE.fullmatch(request.cookies.get(COOKIE, ""))
    if shape is None:
        return None
    expires, login, signature = shape.groups()
    if not hmac.compare_digest(signature, _sign(key, f"{expires}.{login}")):
        return None
    if int(expires) <= time.time():
        return None
    if await request.config_dict[REDIS].exists(logout_key(login)):
        return None
    return Viewer(login, csrf_token(key, login), float(expires))


def login_redirect(request: web.Request) -> web.HTTPSeeOther:
    wanted = request.path_qs if request.method == "GET" else "/admin"
    target = LOGIN_PATH
    if _NEXT.fullmatch(wanted) and wanted != "/admin":
        target += "?" + urlencode({"next": wanted})
    return web.HTTPSeeOther(target)


async def viewer(request: web.Request) -> Viewer:
    """The viewer of a dashboard request; a browser without a login goes to the form.

    Answers 404 when no admin token is configured, like the admin API.
    """
    token = admin_token(request.config_dict[SETTINGS])
    bearer = await bearer_ok(request, token)
    if bearer is True:
        return Viewer(None, None)
    if bearer is False:
        raise ApiError(
            401, "unauthorized", "a valid admin bearer token is required", "Authorization"
        )
    found = await _from_cookie(request, _key(token))
    if found is None:
        raise login_redirect(request)
    return found


def same_origin(request: web.Request) -> bool:
    """A form sent from a page of this host (or one without an Origin, as old browsers do)."""
    origin = request.headers.get("Origin")
    if origin is None:
        return True
    allowed = {request.host, urlparse(request.config_dict[SETTINGS].public_base_url).netloc}
    return origin != "null" and urlparse(origin).netloc in allowed


def check_form(request: web.Request, seen: Viewer, form: dict[str, str]) -> None:
    """Refuse a state-changing form that this login's own pages did not send."""
    if seen.login is None:
        return
    if not same_origin(request):
        raise ApiError(403, "cross_origin", "the form was sent from another site", "Origin")
    sent = form.get("csrf", "")
    if seen.csrf is None or not hmac.compare_digest(sent.encode(), seen.csrf.encode()):
        raise ApiError(403, "csrf", "the form's CSRF token is missing or stale; reload", "csrf")


def safe_next(value: str | None) -> str:
    return value if value and _NEXT.fullmatch(value) else "/admin"


def redirect(location: str) -> web.Response:
    return web.Response(status=303, headers={"Location": location})


async def log_in(request: web.Request, token: str, wanted: str | None) -> web.Response | None:
    """Check the token sent by the login form and set the login cookie; None if wrong,
    `TooManyAttempts` while wrong tokens have spent their budget."""
    settings = request.config_dict[SETTINGS]
    expected = admin_token(settings)
    key = _key(expected)
    client = client_of(request, settings)
    if not await request.config_dict[ADMIN_ATTEMPTS].check(expected, token.encode(), client):
        log.warning("dashboard login refused", extra={"remote": client})
        return None
    expires = int(time.time()) + settings.admin_login_seconds
    login = secrets.token_urlsafe(18)
    answer = redirect(safe_next(wanted))
    answer.set_cookie(
        COOKIE,
        f"{expires}.{login}.{_sign(key, f'{expires}.{login}')}",
        max_age=settings.admin_login_seconds,
        path="/admin",
        httponly=True,
        samesite="Strict",
        secure=over_tls(request, settings),
    )
    log.info("dashboard login", extra={"remote": client})
    return answer


async def log_out(request: web.Request, seen: Viewer) -> web.Response:
    if seen.login is not None and seen.expires is not None:
        remaining = max(1, int(seen.expires - time.time()) + 1)
        await request.config_dict[REDIS].set(logout_key(seen.login), b"1", ex=remaining)
    answer = redirect(LOGIN_PATH)
    answer.del_cookie(COOKIE, path="/admin")
    return answer
