"""The connector `PAYHOOK_CONNECTOR` names, built from its settings.

`build_connector` is the only place that reads connector settings: it builds each
connector's HTTP endpoint (or gql client) and hands it in. Nothing connects until the
first call, which runs inside the worker's event loop; every HTTP pool is sized to the
sessions a worker process keeps in flight.
"""

from __future__ import annotations

from pydantic import SecretStr
from redis.asyncio import Redis

from config import Settings
from errors import ConnectorSettingsError
from redisio.replication import Replication
from workers.connectors.aplazame import AplazameConnector
from workers.connectors.base import Connector
from workers.connectors.bigcommerce import BigCommerceConnector
from workers.connectors.http import HttpConnector
from workers.connectors.http_client import PspHttp
from workers.connectors.journal import Journal
from workers.connectors.ledyer import LedyerConnector
from workers.connectors.order_lock import OrderLock
from workers.connectors.purchase import PurchaseConnector
from workers.connectors.purchase_api import PurchaseApi, purchase_client
from workers.connectors.simulator import SimulatorConnector


def _required(value: str | SecretStr | None, variable: str) -> str:
    if value is None:
        raise ConnectorSettingsError(f"{variable} must be set for this PAYHOOK_CONNECTOR")
    text = value.get_secret_value() if isinstance(value, SecretStr) else value
    if not text:
        raise ConnectorSettingsError(f"{variable} must not be empty")
    return text


def build_connector(settings: Settings, redis: Redis) -> Connector:
    """The connector named by `PAYHOOK_CONNECTOR`."""
    name = settings.connector
    timeout = settings.psp_timeout_seconds
    # A journal entry is sent on only once the replicas a claim waits for hold it too.
    replication = Replication.from_settings(settings)
    # Sized to the sessions a worker process keeps in flight.
    pool = settings.worker_concurrency
    lock_seconds = settings.psp_order_lock_seconds
    live = settings.psp_account == "live"

    def bearer(base_url: str, token: str) -> PspHttp:
        headers = {"Authorization": f"Bearer {token}"}
        return PspHttp(
            base_url, name=name, timeout_seconds=timeout, headers=headers, connections=pool
        )

    if name == "simulator":
        return SimulatorConnector(redis)
    if name == "http":
        token = settings.http_connector_token
        headers = {"Authorization": f"Bearer {token.get_secret_value()}"} if token else {}
        url = _required(settings.http_connector_url, "PAYHOOK_HTTP_CONNECTOR_URL")
        return HttpConnector(
            PspHttp(url, name="http", timeout_seconds=timeout, headers=headers, connections=pool),
            live=live,
        )
    if name == "ledyer":
        token_text = _required(settings.ledyer_access_token, "PAYHOOK_LEDYER_ACCESS_TOKEN")
        return LedyerConnector(
            bearer(settings.ledyer_base_url, token_text),
            Journal(redis, "ledyer", replication=replication),
            OrderLock(redis, "ledyer", ttl_seconds=lock_seconds),
            live=live,
        )
    if name == "aplazame":
        key = _required(settings.aplazame_private_key, "PAYHOOK_APLAZAME_PRIVATE_KEY")
        http = bearer(settings.aplazame_base_url, key)
        # No idempotency key: a lost request may still land, so it is not resent at once.
        journal = Journal(
            redis,
            "aplazame",
            in_flight_seconds=settings.psp_in_flight_seconds,
            replication=replication,
        )
        return AplazameConnector(
            http, journal, OrderLock(redis, "aplazame", ttl_seconds=lock_seconds), live=live
        )
    if name == "purchase":
        client = purchase_client(
            _required(settings.purchase_graphql_url, "PAYHOOK_PURCHASE_GRAPHQL_URL"),
            token=_required(settings.purchase_token, "PAYHOOK_PURCHASE_TOKEN"),
            timeout_seconds=timeout,
            connections=pool,
        )
        return PurchaseConnector(
            PurchaseApi(client),
            Journal(redis, "purchase", replication=replication),
            OrderLock(redis, "purchase", ttl_seconds=lock_seconds),
            live=live,
        )
    if name == "bigcommerce":
        store = _required(settings.bigcommerce_store_hash, "PAYHOOK_BIGCOMMERCE_STORE_HASH")
        token_text = _required(
            settings.bigcommerce_access_token, "PAYHOOK_BIGCOMMERCE_ACCESS_TOKEN"
        )
        http = PspHttp(
            settings.bigcommerce_base_url,
            name="bigcommerce",
            timeout_seconds=timeout,
            headers={"X-Auth-Token": token_text, "Accept": "application/json"},
            connections=pool,
        )
        return BigCommerceConnector(http, store, live=live)
    raise ValueError(f"unknown connector {name!r}")  # pragma: no cover
