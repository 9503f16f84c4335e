"""How Shopify signs its webhooks: `X-Shopify-Hmac-Sha256` is the base64 of the HMAC-SHA256
of the raw body, keyed with the app's client secret (`PAYHOOK_SHOPIFY_API_SECRET`).

Only the body is signed; the topic, shop and webhook id headers are not (`shops.webhooks`
binds them to the body). While the secret is rotated, a webhook signed with the previous one
(`PAYHOOK_SHOPIFY_API_SECRET_PREVIOUS`) is accepted too.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from collections.abc import Sequence


def signature(secret: str, body: bytes) -> bytes:
    """The header value Shopify sends for `body` (ASCII bytes)."""
    return base64.b64encode(hmac.new(secret.encode(), body, hashlib.sha256).digest())


def signed_with_any(header: bytes, secrets: Sequence[str], body: bytes) -> bool:
    """True when `header` is the signature of `body` under one of `secrets`. Every secret is
    compared in constant time, and all of them always, so the time taken says nothing about
    how close a forgery came nor which secret signed."""
    matched = False
    for secret in secrets:
        matched |= hmac.compare_digest(header, signature(secret, body))
    return matched
