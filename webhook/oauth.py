"""Shopify's OAuth install, the parts that do no I/O: the authorize URL, the check of the
callback's signed query, and whether the granted scopes cover the ones asked for.

Shopify signs the callback's query (`code`, `shop`, `state`, `timestamp`, `host`, ...) with
the app's secret: the hex HMAC-SHA256 of every other parameter, percent-decoded, sorted by
name and written `name=value` joined by `&`, where a `%` or `&` in a name or value is
written `%25` or `%26` and an `=` in a name `%3D`. The digest travels in `hmac`; a legacy
`signature` parameter is left out of the signed text too.
"""

from __future__ import annotations

import hashlib
import hmac
import re
from collections.abc import Iterable, Sequence
from urllib.parse import urlencode

_HEX_DIGEST = re.compile(r"[0-9a-f]{64}")
_UNSIGNED = frozenset({"hmac", "signature"})


def _escaped(text: str, *, name: bool) -> str:
    text = text.replace("%", "%25").replace("&", "%26")
    return text.replace("=", "%3D") if name else text


def signed_text(query: Iterable[tuple[str, str]]) -> str:
    """What Shopify signs: the query less `hmac` and `signature`, sorted, escaped."""
    pairs = sorted(
        (_escaped(name, name=True), _escaped(value, name=False))
        for name, value in query
        if name not in _UNSIGNED
    )
    return "&".join(f"{name}={value}" for name, value in pairs)


def query_digest(query: Iterable[tuple[str, str]], secret: str) -> str:
    return hmac.new(secret.encode(), signed_text(query).encode(), hashlib.sha256).hexdigest()


def signed_by(query: Sequence[tuple[str, str]], secret: str) -> bool:
    """The query carries exactly one `hmac`, and it is the digest of the rest with `secret`
    (compared in constant time)."""
    sent = [value for name, value in query if name == "hmac"]
    if len(sent) != 1 or not _HEX_DIGEST.fullmatch(sent[0]):
        return False
    return hmac.compare_digest(sent[0], query_digest(query, secret))


def authorize_url(
    template: str, shop: str, *, api_key: str, scopes: Sequence[str], redirect_uri: str, state: str
) -> str:
    """Where the merchant approves the install. No `grant_options[]`: an offline token, the
    one a worker can use long after the merchant has gone."""
    query = {
        "client_id": api_key,
        "scope": ",".join(scopes),
        "redirect_uri": redirect_uri,
        "state": state,
    }
    return template.format(shop=shop) + "?" + urlencode(query)


def missing_scopes(asked: Iterable[str], granted: str) -> list[str]:
    """The scopes asked for that `granted` (Shopify's comma-separated answer) lacks. A
    `write_` scope implies its `read_` twin, so Shopify may answer only the former."""
    held = {scope.strip() for scope in granted.split(",") if scope.strip()}
    implied = {
        "read_" + scope.removeprefix("write_") for scope in held if scope.startswith("write_")
    }
    return [scope for scope in asked if scope not in held | implied]
