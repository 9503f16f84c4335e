"""A typed client for the sandbox Shopify's admin API (`/_sandbox/...`).

The caller owns the `aiohttp.ClientSession`, as everywhere in payhook; this class only
borrows it.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any
from urllib.parse import quote

import aiohttp
from yarl import URL


class SandboxAdminError(Exception):
    """The sandbox refused an admin request (a bad fault rule, an invalid gid...)."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(f"sandbox answered {status}: {message}")
        self.status = status
        self.message = message


class SandboxShopifyClient:
    def __init__(self, base_url: str, session: aiohttp.ClientSession) -> None:
        self.base_url = base_url.rstrip("/")
        self._session = session

    async def calls(
        self, gid: str | None = None, mutation: str | None = None
    ) -> list[dict[str, Any]]:
        """Recorded GraphQL calls, oldest first, optionally only one gid or mutation."""
        params = {key: value for key, value in (("gid", gid), ("mutation", mutation)) if value}
        body = await self._request("GET", "/_sandbox/calls", params=params)
        calls: list[dict[str, Any]] = body["calls"]
        return calls

    async def session_state(self, gid: str) -> dict[str, Any] | None:
        """The session's state as the sandbox holds it; None if the gid is unknown."""
        # Encoded by hand: the gid's own slashes must not read as path separators.
        url = URL(f"{self.base_url}/_sandbox/sessions/{quote(gid, safe='')}", encoded=True)
        async with self._session.get(url) as response:
            if response.status == 404:
                return None
            return await _json_or_raise(response)

    async def register(
        self, gids: Iterable[str], *, confirmation_callback_url: str | None = None
    ) -> None:
        """Make gids known, as Shopify does when it creates a session; a payment's
        confirmation request (after `paymentSessionConfirm`) goes to
        `confirmation_callback_url`, or to the sandbox's own default."""
        body: dict[str, Any] = {"gids": list(gids)}
        if confirmation_callback_url is not None:
            body["confirmation_callback_url"] = confirmation_callback_url
        await self._request("POST", "/_sandbox/sessions", json=body)

    async def confirmations(self, gid: str | None = None) -> list[dict[str, Any]]:
        """The confirmation requests sent: `gid`, `url`, `confirmation_result`, `status` (the
        app's last answer; 0 none, None still being sent), `attempts`."""
        params = {"gid": gid} if gid else None
        body = await self._request("GET", "/_sandbox/confirmations", params=params)
        sent: list[dict[str, Any]] = body["confirmations"]
        return sent

    async def add_fault(self, rule: Mapping[str, Any]) -> dict[str, Any]:
        """Arm one fault rule; returns it as the sandbox understood it."""
        body = await self._request("POST", "/_sandbox/faults", json=dict(rule))
        fault: dict[str, Any] = body["fault"]
        return fault

    async def faults(self) -> list[dict[str, Any]]:
        body = await self._request("GET", "/_sandbox/faults")
        faults: list[dict[str, Any]] = body["faults"]
        return faults

    async def clear_faults(self) -> None:
        await self._request("DELETE", "/_sandbox/faults")

    async def buyer(self, auto: str | None = None, *, change: bool = False) -> dict[str, Any]:
        """The simulator buyer page's settings and decisions; `change=True` sets `auto`."""
        if change:
            return await self._request("POST", "/_sandbox/buyer", json={"auto": auto})
        return await self._request("GET", "/_sandbox/buyer")

    async def send_webhook(self, topic: str, shop: str, **options: Any) -> dict[str, Any]:
        """Have the sandbox deliver one of Shopify's webhooks to the app (options as
        `sandbox.app_webhooks` lists them: `customer`, `orders`, `url`, `wait`, ...)."""
        body = await self._request(
            "POST", "/_sandbox/webhooks", json={"topic": topic, "shop": shop, **options}
        )
        delivery: dict[str, Any] = body["delivery"]
        return delivery

    async def webhook_deliveries(self) -> list[dict[str, Any]]:
        body = await self._request("GET", "/_sandbox/webhooks")
        deliveries: list[dict[str, Any]] = body["deliveries"]
        return deliveries

    async def reset(self) -> None:
        await self._request("POST", "/_sandbox/reset")

    async def add_app(self, api_key: str, api_secret: str) -> None:
        """Let the app with these credentials be installed through OAuth."""
        await self._request(
            "POST", "/_sandbox/apps", json={"api_key": api_key, "api_secret": api_secret}
        )

    async def token_exchanges(self, shop: str | None = None) -> list[dict[str, Any]]:
        """Every OAuth token exchange, oldest first, optionally only one shop's."""
        body = await self._request("GET", "/_sandbox/installs")
        exchanges: list[dict[str, Any]] = body["exchanges"]
        return [e for e in exchanges if shop is None or e["shop"] == shop]

    async def configurations(self) -> dict[str, dict[str, Any]]:
        """Each shop's payments app configuration, as `paymentsAppConfigure` last set it."""
        body = await self._request("GET", "/_sandbox/configurations")
        configurations: dict[str, dict[str, Any]] = body["configurations"]
        return configurations

    async def _request(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, str] | None = None,
        json: object = None,
    ) -> dict[str, Any]:
        async with self._session.request(
            method, self.base_url + path, params=params, json=json
        ) as response:
            return await _json_or_raise(response)


async def _json_or_raise(response: aiohttp.ClientResponse) -> dict[str, Any]:
    try:
        body = await response.json()
    except (aiohttp.ContentTypeError, ValueError):
        raise SandboxAdminError(response.status, await response.text()) from None
    if response.status >= 400 or not isinstance(body, dict):
        message = body.get("error", body) if isinstance(body, dict) else body
        raise SandboxAdminError(response.status, str(message))
    return body
