"""Where a buyer may be sent: the one check every URL passes before payhook keeps it or
answers with it.

A buyer is only ever sent to a URL Shopify gave: a payment session's `cancel_url`, or the
`nextAction.context.redirectUrl` of Shopify's answer to the payment's report. Each is held
to the same shape when it comes in and again before it goes out in a `Location` header: an
absolute `http(s)` URL with a host, in printable ASCII (what is left of an IRI is
percent-encoded), no longer than Shopify lets a `redirect_url` be.
"""

from __future__ import annotations

from urllib.parse import urlsplit

# Shopify refuses a longer `redirect_url`; no URL it gives is longer.
MAX_URL_BYTES = 8192


def is_web_url(value: object) -> bool:
    """An absolute http or https URL with a host, in printable ASCII, at most 8 KiB."""
    if not isinstance(value, str) or not 0 < len(value) <= MAX_URL_BYTES:
        return False
    # No space or control character (a header cannot carry one), nothing beyond ASCII, and
    # no backslash: browsers read it as a slash, so `https://a\@b` would be a's, not b's.
    if any(not "\x21" <= c <= "\x7e" for c in value) or "\\" in value:
        return False
    try:
        parts = urlsplit(value)
        parts.port  # noqa: B018 - raises on a port that is not a number
    except ValueError:
        return False
    return parts.scheme.lower() in ("http", "https") and bool(parts.hostname)
