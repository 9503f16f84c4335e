"""`build_connector` builds each connector from `PAYHOOK_*` settings, and says which
setting is missing."""

from __future__ import annotations

import fakeredis
import pytest

from config import Settings
from config.settings import ACCOUNT_SETTINGS
from errors import ConnectorSettingsError
from tests.workers.connectors.conftest import settings_for
from workers.connectors.aplazame import AplazameConnector
from workers.connectors.bigcommerce import BigCommerceConnector
from workers.connectors.build import build_connector
from workers.connectors.http import HttpConnector
from workers.connectors.ledyer import LedyerConnector
from workers.connectors.purchase import PurchaseConnector
from workers.connectors.simulator import SimulatorConnector


@pytest.mark.parametrize(
    ("name", "kind"),
    [
        ("http", HttpConnector),
        ("ledyer", LedyerConnector),
        ("aplazame", AplazameConnector),
        ("purchase", PurchaseConnector),
        ("bigcommerce", BigCommerceConnector),
    ],
)
async def test_each_connector_is_built_from_its_settings(name: str, kind: type) -> None:
    connector = build_connector(settings_for(name, "http://psp.test"), fakeredis.FakeAsyncRedis())
    assert isinstance(connector, kind)
    assert connector.name == name
    await connector.close()  # nothing was opened: closing is still fine


def test_the_simulator_stays_the_default() -> None:
    connector = build_connector(Settings(), fakeredis.FakeAsyncRedis())
    assert isinstance(connector, SimulatorConnector)
    # It moves no money: Shopify's test sessions go to it.
    assert connector.live is False


@pytest.mark.parametrize("name", ["http", "ledyer", "aplazame", "purchase", "bigcommerce"])
@pytest.mark.parametrize(("account", "live"), [(None, True), ("live", True), ("test", False)])
def test_each_connector_knows_whether_its_account_is_live(
    name: str, account: str | None, live: bool
) -> None:
    # A fake of `payhook dev` is a test account; left unset, an account is taken as live.
    settings = settings_for(name, "http://psp.test")
    variable = ACCOUNT_SETTINGS[name].removeprefix("PAYHOOK_").lower()
    assert getattr(settings, variable) == "test"
    fields = settings.model_dump()
    fields.pop(variable)
    if account is not None:
        fields[variable] = account
    connector = build_connector(Settings(**fields), fakeredis.FakeAsyncRedis())
    assert connector.live is live


@pytest.mark.parametrize(
    ("name", "missing"),
    [
        ("http", "http_connector_url"),
        ("ledyer", "ledyer_access_token"),
        ("aplazame", "aplazame_private_key"),
        ("purchase", "purchase_graphql_url"),
        ("purchase", "purchase_token"),
        ("bigcommerce", "bigcommerce_store_hash"),
        ("bigcommerce", "bigcommerce_access_token"),
    ],
)
def test_a_missing_setting_is_named(name: str, missing: str) -> None:
    settings = settings_for(name, "http://psp.test", **{missing: None})
    with pytest.raises(ConnectorSettingsError, match=f"PAYHOOK_{missing.upper()}"):
        build_connector(settings, fakeredis.FakeAsyncRedis())


def test_credentials_are_secrets() -> None:
    settings = settings_for("ledyer", "http://psp.test")
    assert "sandbox-token" not in repr(settings)
