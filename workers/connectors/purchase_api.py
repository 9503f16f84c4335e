"""The Purchase PSP's GraphQL API, spoken through `gql`, with its answers made plain.

The reference names the mutations (`newPurchaseCaptureAll`, `newPurchaseCapture`,
`newPurchaseCaptureWithItemReferences`, `newPurchaseReturnAll`, `newPurchaseReturn`), says
each takes an `idempotencyKey`, and that the `purchases` query gives a purchase with its
items, captures and returns. It does not print the schema; the shapes below are payhook's
reading of it (one `input` object per mutation, `{ id amount }` back, integer minor units)
and the sandbox serves exactly these, so a schema difference is a change in this module only.

`PurchaseApi.call` never raises for what the network or the PSP said: it returns a
`GqlAnswer` (HTTP status, data, first error code) or a `TryAgain`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import aiohttp
from gql import Client, GraphQLRequest
from gql.client import AsyncClientSession
from gql.transport.aiohttp import AIOHTTPTransport
from gql.transport.exceptions import (
    TransportConnectionFailed,
    TransportError,
    TransportProtocolError,
    TransportQueryError,
    TransportServerError,
)
from pydantic import BaseModel, ConfigDict, Field

from workers.connectors.base import TryAgain

PURCHASE_QUERY = """
query Purchase($id: String!) {
  purchases(where: {id: {_eq: $id}}) {
    id currency amount status expiresAt
    items { reference name quantity amount }
    captures { id amount items { reference amount } }
    returns { id amount items { reference amount } }
  }
}
"""

MUTATIONS = {
    "newPurchaseCaptureAll": "PurchaseCaptureAllInput",
    "newPurchaseCapture": "PurchaseCaptureInput",
    "newPurchaseCaptureWithItemReferences": "PurchaseCaptureWithItemReferencesInput",
    "newPurchaseReturnAll": "PurchaseReturnAllInput",
    "newPurchaseReturn": "PurchaseReturnInput",
}


def mutation_document(field: str) -> str:
    return (
        f"mutation {field[0].upper()}{field[1:]}($input: {MUTATIONS[field]}!) "
        f"{{ {field}(input: $input) {{ id amount }} }}"
    )


class _Model(BaseModel):
    model_config = ConfigDict(populate_by_name=True, extra="ignore")


class ItemAmount(_Model):
    reference: str
    amount: int


class Item(ItemAmount):
    name: str = ""
    quantity: int = 1


class Movement(_Model):
    """A capture or a return."""

    id: str
    amount: int
    items: list[ItemAmount] = Field(default_factory=list)


class Purchase(_Model):
    id: str
    currency: str
    amount: int
    status: str
    expires_at: str | None = Field(default=None, alias="expiresAt")
    items: list[Item] = Field(default_factory=list)
    captures: list[Movement] = Field(default_factory=list)
    returns: list[Movement] = Field(default_factory=list)


@dataclass(frozen=True)
class GqlAnswer:
    status: int
    data: dict[str, Any]
    code: str | None  # extensions.code of the first error; None when there were none
    message: str | None


class _StatusAwareTransport(AIOHTTPTransport):
    """Remembers the HTTP status: gql reads a JSON body with `errors` alike whatever it is."""

    last_status: int | None = None
    connections: int = 100

    async def connect(self) -> None:
        # A pool sized to the sessions in flight; a fresh one for every aiohttp session gql
        # opens, since closing a session closes its pool.
        self.client_session_args = {
            **(self.client_session_args or {}),
            "connector": aiohttp.TCPConnector(limit=self.connections),
        }
        await super().connect()

    async def _get_json_result(self, response: aiohttp.ClientResponse) -> Any:
        self.last_status = response.status
        return await super()._get_json_result(response)


def purchase_client(
    url: str, *, token: str, timeout_seconds: float, connections: int = 100
) -> Client:
    """The gql client `build_connector` hands the connector (no I/O until first used)."""
    transport = _StatusAwareTransport(
        url=url,
        headers={"Authorization": f"Bearer {token}"},
        client_session_args={"timeout": aiohttp.ClientTimeout(total=timeout_seconds)},
    )
    transport.connections = connections
    return Client(
        transport=transport, fetch_schema_from_transport=False, execute_timeout=timeout_seconds
    )


class PurchaseApi:
    def __init__(self, client: Client) -> None:
        self._client = client
        self._session: AsyncClientSession | None = None

    async def call(
        self, document: str, variables: dict[str, Any], *, write: bool
    ) -> GqlAnswer | TryAgain:
        what = "purchase mutation" if write else "purchase query"
        transport = self._client.transport
        assert isinstance(transport, _StatusAwareTransport)
        transport.last_status = None
        try:
            session = await self._connect()
            data = await session.execute(GraphQLRequest(document, variable_values=variables))
        except TransportQueryError as exc:
            code, message = _first_error(exc.errors)
            return GqlAnswer(transport.last_status or 200, dict(exc.data or {}), code, message)
        except TransportServerError as exc:
            return GqlAnswer(exc.code or 500, {}, None, str(exc)[:200])
        except TransportConnectionFailed as exc:
            await self._forget()
            never_sent = isinstance(
                exc.__cause__, aiohttp.ClientConnectorError | aiohttp.ConnectionTimeoutError
            )
            return TryAgain(f"{what}: {exc}", ambiguous=write and not never_sent)
        except TransportProtocolError as exc:
            # A 2xx body that is not GraphQL: the mutation may have run.
            return TryAgain(f"{what}: malformed answer: {exc}"[:300], ambiguous=write)
        except (TimeoutError, TransportError, aiohttp.ClientError, OSError) as exc:
            await self._forget()
            return TryAgain(f"{what}: {type(exc).__name__}: {exc}", ambiguous=write)
        return GqlAnswer(transport.last_status or 200, data, None, None)

    async def _connect(self) -> AsyncClientSession:
        if self._session is None:
            session = await self._client.connect_async(reconnecting=False)  # type: ignore[no-untyped-call]
            assert isinstance(session, AsyncClientSession)
            self._session = session
        return self._session

    async def _forget(self) -> None:
        if self._session is not None:
            self._session = None
            await self._client.close_async()  # type: ignore[no-untyped-call]

    async def close(self) -> None:
        await self._forget()


def _first_error(errors: Any) -> tuple[str | None, str | None]:
    if not isinstance(errors, list) or not errors or not isinstance(errors[0], dict):
        return "GRAPHQL_ERROR", None
    first = errors[0]
    code = (first.get("extensions") or {}).get("code")
    message = first.get("message")
    return (
        str(code) if code else "GRAPHQL_ERROR",
        str(message)[:500] if message else None,
    )
