"""Reading a session request: headers, size, media type and JSON, before any model."""

from __future__ import annotations

import json
import re
from decimal import Decimal
from typing import Any

from aiohttp import web

from webhook.errors import ApiError

_SHOP = re.compile(r"^[a-z0-9][a-z0-9-]*(\.[a-z0-9-]+)+$")
_API_VERSION = re.compile(r"^(\d{4}-\d{2}|unstable)$")


def shopify_headers(request: web.Request) -> tuple[str, str, str]:
    """(shop, request id, API version), each required and well formed."""
    values = []
    for name in ("Shopify-Shop-Domain", "Shopify-Request-Id", "Shopify-Api-Version"):
        value = request.headers.get(name, "").strip()
        if not value:
            raise ApiError(400, "missing_header", f"the {name} header is required", name)
        if len(value) > 255:
            raise ApiError(400, "invalid_header", f"the {name} header is too long", name)
        values.append(value)
    shop, request_id, version = values
    if not _SHOP.fullmatch(shop.lower()):
        raise ApiError(
            400, "invalid_header", "Shopify-Shop-Domain is not a domain", "Shopify-Shop-Domain"
        )
    if not _API_VERSION.fullmatch(version):
        raise ApiError(
            400,
            "invalid_header",
            "Shopify-Api-Version is not like '2025-10'",
            "Shopify-Api-Version",
        )
    return shop.lower(), request_id, version


async def read_body(request: web.Request, max_bytes: int) -> bytes:
    """The whole body, however many TCP segments it arrives in, and never more than
    `max_bytes` of it (the app's `client_max_size` is the same bound)."""
    if request.content_length is not None and request.content_length > max_bytes:
        raise _too_large(max_bytes)
    try:
        raw = await request.read()
    except web.HTTPRequestEntityTooLarge:
        raise _too_large(max_bytes) from None
    if len(raw) > max_bytes:
        raise _too_large(max_bytes)
    return raw


async def json_object(request: web.Request, max_bytes: int) -> dict[str, Any]:
    if request.content_type != "application/json":
        raise ApiError(
            415,
            "unsupported_media_type",
            f"expected application/json, got {request.content_type or 'nothing'}",
            "Content-Type",
        )
    raw = await read_body(request, max_bytes)
    try:
        # Numbers become Decimal, so an amount sent as a JSON number keeps every digit.
        body = json.loads(raw, parse_float=Decimal, parse_int=Decimal)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ApiError(400, "invalid_json", f"the body is not valid JSON: {exc}") from None
    if not isinstance(body, dict):
        raise ApiError(422, "invalid_body", "the body must be a JSON object")
    return body


def _too_large(max_bytes: int) -> ApiError:
    return ApiError(413, "payload_too_large", f"the body is larger than {max_bytes} bytes")
