"""The install's one call out: an OAuth `code` for the shop's offline access token.

`POST {PAYHOOK_SHOPIFY_TOKEN_URL}` (default `https://{shop}/admin/oauth/access_token`) with
`client_id`, `client_secret` and `code`; Shopify answers `{"access_token", "scope"}`. A code
is good once: Shopify refuses a used or unknown one with a 4xx, which is the caller's to
report (`CodeRefused`); a 5xx, a timeout, a redirect or a body that is not the documented
answer is Shopify being unavailable (`ExchangeFailed`). The answer is read up to a bound,
and the token never reaches a log line or an error message.
"""

from __future__ import annotations

import json

import aiohttp
from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError

from errors import CodeRefused, ExchangeFailed

# Shopify's answer is a few hundred bytes; nothing it sends here needs more.
MAX_ANSWER_BYTES = 64 * 1024


class AccessToken(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)

    access_token: SecretStr = Field(min_length=1, max_length=1024)
    scope: str = Field(default="", max_length=4096)


def _description(raw: bytes | bytearray) -> str:
    """Shopify's own words for a refusal (`error_description`, `error`), short."""
    try:
        body = json.loads(raw)
    except ValueError:
        return "no reason given"
    if not isinstance(body, dict):
        return "no reason given"
    said = body.get("error_description") or body.get("error") or body.get("errors")
    return str(said)[:200] if said else "no reason given"


async def exchange_code(
    http: aiohttp.ClientSession, url: str, *, api_key: str, api_secret: str, code: str
) -> AccessToken:
    form = {"client_id": api_key, "client_secret": api_secret, "code": code}
    try:
        async with http.post(
            url, json=form, headers={"Accept": "application/json"}, allow_redirects=False
        ) as answer:
            status = answer.status
            raw = bytearray()
            # However many segments it comes in, and never more than the bound.
            async for chunk in answer.content.iter_chunked(16 * 1024):
                raw += chunk
                if len(raw) > MAX_ANSWER_BYTES:
                    break
    except (TimeoutError, aiohttp.ClientError, OSError) as exc:
        raise ExchangeFailed(f"{type(exc).__name__} asking for the token") from None
    if len(raw) > MAX_ANSWER_BYTES:
        raise ExchangeFailed("the token answer is larger than any Shopify sends")
    if 400 <= status < 500:
        raise CodeRefused(f"HTTP {status}: {_description(raw)}")
    if status != 200:
        raise ExchangeFailed(f"HTTP {status} asking for the token")
    try:
        return AccessToken.model_validate_json(bytes(raw))
    except ValidationError:
        raise ExchangeFailed("the token answer is not Shopify's access token") from None
