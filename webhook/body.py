"""Reading a request: headers, size, media type and JSON, before any model.

Everything here is bounded before it is used: header values are short printable ASCII,
bodies are read whole up to the size limit, JSON nests at most `MAX_JSON_DEPTH` levels and
its numbers are short. Whatever fails is a 4xx `ApiError`; nothing reaches a model, Redis or
a log line unbounded.
"""

from __future__ import annotations

import json
import re
from decimal import Decimal
from typing import Any

from aiohttp import web

from config.shop_domains import is_shop_domain
from errors import ApiError
from webhook.keys import SETTINGS

_API_VERSION = re.compile(r"^(\d{4}-\d{2}|unstable)$")
_PRINTABLE = re.compile(r"^[\x20-\x7e]*$")
MAX_HEADER_CHARS = 255

# A session body is a few levels deep. The bound keeps json's recursive decoder, and
# everything that walks what it returns, far from Python's recursion limit.
MAX_JSON_DEPTH = 32
# No amount or count payhook reads needs more. Refused at the parser, a ten-byte
# `1e999999999` never turns into a gigabyte of digits where a value is formatted or converted.
MAX_NUMBER_CHARS = 40
MAX_NUMBER_EXPONENT = 40
_SURROGATE = re.compile("[\ud800-\udfff]")
_STRUCTURE = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*"|[\[\]{}]')


def shopify_headers(request: web.Request) -> tuple[str, str, str]:
    """(shop, request id, API version), each required and well formed."""
    values = []
    for name in ("Shopify-Shop-Domain", "Shopify-Request-Id", "Shopify-Api-Version"):
        value = request.headers.get(name, "").strip()
        if not value:
            raise ApiError(400, "missing_header", f"the {name} header is required", name)
        if len(value) > MAX_HEADER_CHARS:
            raise ApiError(400, "invalid_header", f"the {name} header is too long", name)
        # aiohttp hands undecodable bytes through as surrogates; they cannot be stored.
        if not _PRINTABLE.fullmatch(value):
            raise ApiError(400, "invalid_header", f"the {name} header is not printable ASCII", name)
        values.append(value)
    shop, request_id, version = values
    shop = shop.lower()
    suffixes = request.app[SETTINGS].shop_domain_suffixes
    if not is_shop_domain(shop, suffixes):
        shapes = " or ".join(f"<shop>{suffix}" for suffix in suffixes)
        raise ApiError(
            400,
            "invalid_header",
            f"Shopify-Shop-Domain is not a Shopify shop domain ({shapes})",
            "Shopify-Shop-Domain",
        )
    if not _API_VERSION.fullmatch(version):
        raise ApiError(
            400,
            "invalid_header",
            "Shopify-Api-Version is not like '2025-10'",
            "Shopify-Api-Version",
        )
    return shop, request_id, version


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
    return parse_object(await read_body(request, max_bytes))


def parse_object(raw: bytes) -> dict[str, Any]:
    """A JSON object, nested at most `MAX_JSON_DEPTH` deep, with short numbers only."""
    if _too_deep(raw):
        raise ApiError(400, "invalid_json", f"the body nests deeper than {MAX_JSON_DEPTH} levels")
    try:
        # Numbers become Decimal, so an amount sent as a JSON number keeps every digit.
        body = json.loads(raw, parse_float=_number, parse_int=_number, parse_constant=_not_a_number)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ApiError(400, "invalid_json", f"the body is not valid JSON: {exc}") from None
    if not isinstance(body, dict):
        raise ApiError(422, "invalid_body", "the body must be a JSON object")
    if _holds_unpaired_surrogate(body):
        # JSON may escape one (`"\\ud800"`), but no UTF-8 text holds it: Redis could not
        # store it and a log line could not print it.
        raise ApiError(400, "invalid_json", "a string in the body holds an unpaired surrogate")
    return body


def header_bytes(request: web.Request, name: str) -> bytes:
    """A header as the bytes that were sent, for comparing against a secret: any bytes
    compare (unequal), none raise."""
    return request.headers.get(name, "").encode("utf-8", "surrogateescape")


def _too_deep(raw: bytes) -> bool:
    depth = 0
    for token in _STRUCTURE.findall(raw):
        if token in (b"{", b"["):
            depth += 1
            if depth > MAX_JSON_DEPTH:
                return True
        elif token in (b"}", b"]"):
            depth -= 1
    return False


def _holds_unpaired_surrogate(value: object) -> bool:
    # Recursion is bounded: the body nests at most MAX_JSON_DEPTH levels.
    if isinstance(value, str):
        return bool(_SURROGATE.search(value))
    if isinstance(value, dict):
        return any(
            _holds_unpaired_surrogate(k) or _holds_unpaired_surrogate(v) for k, v in value.items()
        )
    if isinstance(value, list):
        return any(_holds_unpaired_surrogate(item) for item in value)
    return False


def _number(text: str) -> Decimal:
    number = Decimal(text) if len(text) <= MAX_NUMBER_CHARS else None
    if number is None or abs(number.adjusted()) > MAX_NUMBER_EXPONENT:
        raise ApiError(
            400,
            "invalid_json",
            f"a number in the body has more than {MAX_NUMBER_CHARS} characters or an exponent "
            f"beyond {MAX_NUMBER_EXPONENT}",
        )
    return number


def _not_a_number(text: str) -> Decimal:
    raise ApiError(400, "invalid_json", f"{text} is not a JSON number")


def _too_large(max_bytes: int) -> ApiError:
    return ApiError(413, "payload_too_large", f"the body is larger than {max_bytes} bytes")
