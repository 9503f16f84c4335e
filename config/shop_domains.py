"""Which hosts are Shopify shops.

The shop domain a session arrives with is where the worker later sends that shop's access
token (`https://{shop}/payments_apps/...`), so it is checked twice: at intake, and by the
Shopify gateway before any token leaves. A shop domain is one DNS label followed by one of
the accepted suffixes; Shopify's is `.myshopify.com`, and only a sandbox that plays Shopify
under another domain has reason to add one.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

SHOPIFY_SUFFIXES: tuple[str, ...] = (".myshopify.com",)

_LABEL = re.compile(r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?")
_SUFFIX = re.compile(r"(?:\.[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?)+")


def is_shop_domain(shop: str, suffixes: Iterable[str]) -> bool:
    """True when `shop` (lowercase) is one label, then exactly one of `suffixes`."""
    for suffix in suffixes:
        if shop.endswith(suffix) and _LABEL.fullmatch(shop[: -len(suffix)]):
            return True
    return False


def check_suffix(suffix: str) -> str:
    """A suffix as settings accept it: lowercase DNS labels, each after a dot."""
    if not _SUFFIX.fullmatch(suffix):
        raise ValueError(f"{suffix!r} is not a domain suffix such as '.myshopify.com'")
    return suffix
