"""The Shopify gateway: sends a mutation for a shop and classifies what came back.

`ShopifyGateway` is the port the lifecycles use; `GqlShopifyGateway` speaks it through `gql`
over aiohttp. Everything the network or Shopify can say is translated here into payhook's
own errors (see `errors`), so no lifecycle ever sees a gql or aiohttp exception.
What Shopify took comes back as `Taken`: for a payment's resolve, reject or pending, with
the `nextAction` redirect its answer names, the one place the buyer may be sent next.
"""

from __future__ import annotations

import hashlib
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import aiohttp
from gql import Client, GraphQLRequest
from gql.client import AsyncClientSession
from gql.transport.aiohttp import AIOHTTPTransport
from gql.transport.exceptions import (
    TransportError,
    TransportProtocolError,
    TransportQueryError,
    TransportServerError,
)
from graphql import print_ast
from pydantic import BaseModel, ConfigDict, ValidationError

from config import Settings
from config.shop_domains import SHOPIFY_SUFFIXES, is_shop_domain
from errors import (
    MissingCredentials,
    ShopGone,
    ShopifyUnavailable,
    ShopifyUserError,
    ShopUninstalled,
    TokenRejected,
    TokenUnreadable,
)
from sessions.urls import is_web_url
from workers.retry_policy import parse_retry_after, usable_wait
from workers.shopify.mutations import Mutation

log = logging.getLogger("payhook.shopify")


@dataclass(frozen=True)
class Taken:
    """Shopify accepted the mutation. `redirect_url`: where its answer says to send the
    buyer next (`nextAction.context.redirectUrl` of a payment's resolve, reject or pending),
    None when it names none a browser could be sent to."""

    redirect_url: str | None = None


class ShopifyGateway(Protocol):
    async def send(self, shop: str, mutation: Mutation, *, token: str | None = None) -> Taken:
        """Deliver `mutation` with `token`, or the shop's token as the cache holds it; return
        what Shopify said once it accepted it.

        Raises `ShopifyUnavailable` (retry), `ShopifyUserError`, `TokenRejected` or
        `MissingCredentials`.
        """
        ...

    def reporting_token(self, shop: str, stored: str | None) -> str:
        """The token a report for `shop` would go with, from its registry value `stored` as
        the session's claim read it (never a cache): the check before money moves. Raises
        `MissingCredentials` when it is missing or unreadable."""
        ...

    async def close(self) -> None: ...


class TokenSource(Protocol):
    async def token_for(self, shop: str) -> str | None:
        """The shop's token for a mutation; a cache may answer."""
        ...

    def opened(self, shop: str, stored: str | None) -> str | None:
        """The token the registry value `stored`, read just now, stands for."""
        ...


class _StatusAwareTransport(AIOHTTPTransport):
    """Remembers the HTTP status of the last answer.

    gql turns a JSON body with `errors` into `TransportQueryError` whatever the status, so
    without the status a 500 carrying JSON would look like a permanent GraphQL refusal.
    """

    last_status: int | None = None

    async def _get_json_result(self, response: aiohttp.ClientResponse) -> Any:
        self.last_status = response.status
        return await super()._get_json_result(response)


class _PrintedRequest(GraphQLRequest):
    """A request whose document is printed once.

    gql prints the parsed document back to text for every request; for the handful of
    mutations payhook sends, that was a tenth of the worker's event loop time.
    """

    def __init__(
        self,
        request: str | _PrintedRequest,
        *,
        variable_values: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(request, variable_values=variable_values)
        self.query: str = (
            request.query if isinstance(request, _PrintedRequest) else print_ast(self.document)
        )

    @property
    def payload(self) -> dict[str, Any]:
        payload: dict[str, Any] = {"query": self.query}
        if self.variable_values:
            payload["variables"] = self.variable_values
        return payload


def _retry_after(headers: Any) -> float | None:
    value = headers.get("Retry-After") if headers is not None else None
    return parse_retry_after(value, now=time.time())


def _throttle_wait(extensions: Any) -> float | None:
    """Seconds until the bucket refills enough for the query, from `extensions.cost`."""
    try:
        cost = extensions["cost"]
        status = cost["throttleStatus"]
        missing = float(cost["requestedQueryCost"]) - float(status["currentlyAvailable"])
        return usable_wait(max(0.0, missing / float(status["restoreRate"])))
    except (KeyError, TypeError, ValueError, ZeroDivisionError, OverflowError):
        return None


def _http_error(
    shop: str, mutation: Mutation, status: int, transport: _StatusAwareTransport, detail: str
) -> ShopifyUnavailable | ShopifyUserError | TokenRejected:
    """429 and 5xx are Shopify (or its CDN) asking us to come back; other 4xx are final,
    and 401/403 say the shop's token is wrong or lacks the scope: the operator's to fix."""
    if status == 429 or status >= 500:
        return ShopifyUnavailable(
            f"{mutation.field}: HTTP {status}",
            retry_after=_retry_after(transport.response_headers),
            cause="http_429" if status == 429 else "http_5xx",
        )
    if status in (401, 403):
        return TokenRejected(mutation.field, shop, status, detail)
    return ShopifyUserError(mutation.field, f"HTTP_{status}", detail)


def _messages(errors: Any) -> str:
    if isinstance(errors, str):
        return errors
    parts = [str(e.get("message", e)) if isinstance(e, dict) else str(e) for e in errors or []]
    return "; ".join(parts) or "GraphQL errors"


def _is_throttled(errors: list[Any] | None) -> bool:
    for error in errors or []:
        if not isinstance(error, dict):
            continue
        code = (error.get("extensions") or {}).get("code")
        if error.get("message") == "Throttled" or code == "THROTTLED":
            return True
    return False


class GqlShopifyGateway:
    def __init__(
        self,
        *,
        url_template: str,
        api_version: str,
        tokens: TokenSource,
        timeout_seconds: float,
        connections: int = 100,
        on_token_rejected: Callable[[str], None] | None = None,
        shop_suffixes: Sequence[str] = SHOPIFY_SUFFIXES,
    ) -> None:
        self._url_template = url_template
        # Told the shop whose token Shopify refused, so a cache of tokens reads it afresh.
        self._on_token_rejected = on_token_rejected
        self._shop_suffixes = tuple(shop_suffixes)
        # Per shop: one connection per session in flight, so no mutation waits for a socket.
        self._connections = connections
        self._api_version = api_version
        self._tokens = tokens
        self._timeout = timeout_seconds
        self._sessions: dict[str, tuple[Client, AsyncClientSession, _StatusAwareTransport]] = {}
        self._documents: dict[str, _PrintedRequest] = {}

    @classmethod
    def from_settings(
        cls,
        settings: Settings,
        tokens: TokenSource,
        *,
        connections: int,
        on_token_rejected: Callable[[str], None] | None = None,
    ) -> GqlShopifyGateway:
        """The gateway as `PAYHOOK_SHOPIFY_*` configure it: the worker's, and the operator's
        `payhook shops configure`, reach Shopify the same way."""
        return cls(
            url_template=settings.shopify_graphql_url,
            api_version=settings.shopify_api_version,
            tokens=tokens,
            timeout_seconds=settings.shopify_timeout_seconds,
            connections=connections,
            on_token_rejected=on_token_rejected,
            shop_suffixes=settings.shop_domain_suffixes,
        )

    def reporting_token(self, shop: str, stored: str | None) -> str:
        self._check_domain(shop)
        # From the claim's read: a token removed a moment ago must not let money move on the
        # strength of a cached copy.
        try:
            return self._check_token(shop, self._tokens.opened(shop, stored))
        except ShopUninstalled as exc:
            raise ShopGone(str(exc)) from None
        except TokenUnreadable as exc:
            raise MissingCredentials(str(exc)) from None

    def _check_domain(self, shop: str) -> None:
        # The shop names the host the token goes to; intake checked it, and so does this
        # last step before a token leaves.
        if not is_shop_domain(shop, self._shop_suffixes):
            raise MissingCredentials(f"no token is sent to {shop!r}: not a Shopify shop domain")

    def _check_token(self, shop: str, token: str | None) -> str:
        if not token:
            raise MissingCredentials(
                f"no Shopify access token for {shop} (payhook shops add {shop})"
            )
        return token

    async def send(self, shop: str, mutation: Mutation, *, token: str | None = None) -> Taken:
        self._check_domain(shop)
        if token is None:
            try:
                token = self._check_token(shop, await self._tokens.token_for(shop))
            except ShopUninstalled as exc:
                raise ShopGone(str(exc)) from None
            except TokenUnreadable as exc:
                raise MissingCredentials(str(exc)) from None
        try:
            return await self._send(shop, token, mutation)
        except TokenRejected:
            if self._on_token_rejected is not None:
                self._on_token_rejected(shop)
            raise

    async def _send(self, shop: str, token: str, mutation: Mutation) -> Taken:
        session, transport = await self._session_for(shop, token)
        request = self._prepared(mutation)
        transport.last_status = None
        try:
            data = await session.execute(request)
        except TransportQueryError as exc:
            status = transport.last_status or 200
            if _is_throttled(exc.errors):
                raise ShopifyUnavailable(
                    f"{mutation.field}: Throttled",
                    retry_after=_throttle_wait(exc.extensions),
                    cause="throttled",
                ) from None
            if status >= 400:
                raise _http_error(
                    shop, mutation, status, transport, _messages(exc.errors)
                ) from None
            raise ShopifyUserError(mutation.field, None, _messages(exc.errors)) from None
        except TransportServerError as exc:
            raise _http_error(shop, mutation, exc.code or 0, transport, str(exc)) from None
        except TransportProtocolError as exc:
            # A body that is not GraphQL (an HTML error page from a proxy, say) is transient.
            raise ShopifyUnavailable(
                f"{mutation.field}: malformed answer: {exc}", cause="malformed"
            ) from None
        except (TimeoutError, TransportError, aiohttp.ClientError, OSError) as exc:
            await self._forget(shop, token)
            raise ShopifyUnavailable(f"{mutation.field}: {type(exc).__name__}: {exc}") from None
        _raise_user_errors(mutation, data)
        return Taken(redirect_url=_redirect_url(shop, mutation, data))

    def _prepared(self, mutation: Mutation) -> GraphQLRequest:
        parsed = self._documents.get(mutation.document)
        if parsed is None:
            parsed = self._documents[mutation.document] = _PrintedRequest(mutation.document)
        return _PrintedRequest(parsed, variable_values=mutation.variables)

    async def _session_for(
        self, shop: str, token: str
    ) -> tuple[AsyncClientSession, _StatusAwareTransport]:
        key = _cache_key(shop, token)
        cached = self._sessions.get(key)
        if cached is not None:
            return cached[1], cached[2]
        url = self._url_template.format(shop=shop, version=self._api_version)
        transport = _StatusAwareTransport(
            url=url,
            headers={"X-Shopify-Access-Token": token},
            timeout=int(self._timeout) or 1,
            client_session_args={"connector": aiohttp.TCPConnector(limit=self._connections)},
        )
        client = Client(
            transport=transport, fetch_schema_from_transport=False, execute_timeout=self._timeout
        )
        session = await client.connect_async(reconnecting=False)  # type: ignore[no-untyped-call]
        assert isinstance(session, AsyncClientSession)
        self._sessions[key] = (client, session, transport)
        return session, transport

    async def _forget(self, shop: str, token: str) -> None:
        cached = self._sessions.pop(_cache_key(shop, token), None)
        if cached is not None:
            await cached[0].close_async()  # type: ignore[no-untyped-call]

    async def close(self) -> None:
        sessions, self._sessions = self._sessions, {}
        for client, _, _ in sessions.values():
            await client.close_async()  # type: ignore[no-untyped-call]


def _cache_key(shop: str, token: str) -> str:
    # The token is part of the key so that `payhook shops add` takes effect without a
    # restart; it is hashed so that it never sits in a dict key in a traceback.
    return f"{shop}:{hashlib.sha256(token.encode()).hexdigest()[:16]}"


# userError codes that say "not now" rather than "never", each with its `cause`. A pending
# window Shopify finds too far ahead (its clock behind ours) comes within its limit as time
# passes: the same mutation again, on the Shopify ladder, is what can land it. (One already
# past, EXPIRED_PENDING_EXPIRES_AT, never will: `workers.lifecycle.decide` closes the window.)
RETRYABLE_USER_ERRORS = {"OUT_OF_RANGE_PENDING_EXPIRES_AT": "pending_out_of_range"}


def _raise_user_errors(mutation: Mutation, data: dict[str, Any]) -> None:
    payload = data.get(mutation.field)
    if not isinstance(payload, dict):
        raise ShopifyUnavailable(f"{mutation.field}: answer without a payload", cause="malformed")
    errors = payload.get("userErrors") or []
    if errors:
        first = errors[0] if isinstance(errors[0], dict) else {}
        code = first.get("code")
        message = str(first.get("message") or "refused")
        if isinstance(code, str) and code in RETRYABLE_USER_ERRORS:
            raise ShopifyUnavailable(
                f"{mutation.field}: {code}: {message}", cause=RETRYABLE_USER_ERRORS[code]
            )
        raise ShopifyUserError(
            mutation.field, code, message, [error for error in errors if isinstance(error, dict)]
        )


class _Redirect(BaseModel):
    model_config = ConfigDict(extra="ignore")

    redirectUrl: str


class _NextAction(BaseModel):
    model_config = ConfigDict(extra="ignore")

    action: str
    context: _Redirect


class _PaymentSession(BaseModel):
    model_config = ConfigDict(extra="ignore")

    nextAction: _NextAction | None = None


def _redirect_url(shop: str, mutation: Mutation, data: dict[str, Any]) -> str | None:
    """The payment session's next redirect, as the answer gives it; None for other
    mutations, for no next action, and for one no browser should be sent to (which does
    not undo the report: Shopify took it all the same)."""
    payload = data.get(mutation.field)
    found = payload.get("paymentSession") if isinstance(payload, dict) else None
    if not isinstance(found, dict):
        return None
    try:
        next_action = _PaymentSession.model_validate(found).nextAction
    except ValidationError:
        next_action = None
    if next_action is None:
        if "nextAction" in found and found["nextAction"] is not None:
            log.warning("unreadable nextAction", extra={"shop": shop, "mutation": mutation.field})
        return None
    url = next_action.context.redirectUrl
    if next_action.action != "REDIRECT" or not is_web_url(url):
        # Never logged: the URL names the buyer's checkout.
        log.warning("unusable nextAction", extra={"shop": shop, "mutation": mutation.field})
        return None
    return url
