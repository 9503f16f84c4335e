"""PSP fakes: real aiohttp servers that follow each provider's documented contract.

One per connector (`http`, `ledyer`, `aplazame`, `purchase`, `bigcommerce`), each with
the shared fault rules, call log and admin API of `sandbox.psp.common`. `payhook dev
--connector NAME` runs one (`payhook psp-sandbox NAME --port P`), and the connector tests
drive each connector against its fake over HTTP.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from aiohttp import web

from config.settings import ACCOUNT_SETTINGS
from sandbox.psp.aplazame import create_aplazame_app
from sandbox.psp.bigcommerce import create_bigcommerce_app
from sandbox.psp.common import PSP_STATE
from sandbox.psp.http import create_http_psp_app
from sandbox.psp.ledyer import create_ledyer_app
from sandbox.psp.purchase import create_purchase_app

# Every fake accepts `token` (None: any credential) and `open_orders`.
FAKES: dict[str, Callable[..., web.Application]] = {
    "http": create_http_psp_app,
    "ledyer": create_ledyer_app,
    "aplazame": create_aplazame_app,
    "purchase": create_purchase_app,
    "bigcommerce": create_bigcommerce_app,
}

# Where each connector's settings point inside a fake served at some base URL.
STORE_HASH = "sandbox"
SETTINGS_PATHS = {
    "http": ("PAYHOOK_HTTP_CONNECTOR_URL", ""),
    "ledyer": ("PAYHOOK_LEDYER_BASE_URL", ""),
    "aplazame": ("PAYHOOK_APLAZAME_BASE_URL", ""),
    "purchase": ("PAYHOOK_PURCHASE_GRAPHQL_URL", "/graphql"),
    "bigcommerce": ("PAYHOOK_BIGCOMMERCE_BASE_URL", ""),
}


def create_psp_fake(
    name: str, *, token: str | None = None, open_orders: bool = False
) -> web.Application:
    if name == "http":
        return create_http_psp_app(token=token)
    return FAKES[name](token=token, open_orders=open_orders)


def connector_environment(name: str, base_url: str, token: str) -> dict[str, str]:
    """The `PAYHOOK_*` variables that point connector `name` at its fake, a test account
    (Shopify's test-mode sessions are sent to it)."""
    variable, path = SETTINGS_PATHS[name]
    env = {"PAYHOOK_CONNECTOR": name, variable: base_url + path, ACCOUNT_SETTINGS[name]: "test"}
    credential = {
        "http": "PAYHOOK_HTTP_CONNECTOR_TOKEN",
        "ledyer": "PAYHOOK_LEDYER_ACCESS_TOKEN",
        "aplazame": "PAYHOOK_APLAZAME_PRIVATE_KEY",
        "purchase": "PAYHOOK_PURCHASE_TOKEN",
        "bigcommerce": "PAYHOOK_BIGCOMMERCE_ACCESS_TOKEN",
    }[name]
    env[credential] = token
    if name == "bigcommerce":
        env["PAYHOOK_BIGCOMMERCE_STORE_HASH"] = STORE_HASH
    return env


@dataclass(frozen=True)
class RunningFake:
    runner: web.AppRunner
    url: str
    port: int

    async def close(self) -> None:
        await self.runner.cleanup()


async def start_psp_fake(
    name: str,
    host: str = "127.0.0.1",
    port: int = 0,
    *,
    open_orders: bool = True,
    latency: float = 0.0,
    read_latency: float = 0.0,
) -> RunningFake:
    """Serve fake `name` on `host:port` (0 picks a free port, read it from `.port`).

    `latency`: seconds every money call waits before it is answered, as a real PSP would;
    `read_latency`: the same for every read.
    """
    app = create_psp_fake(name, open_orders=open_orders)
    app[PSP_STATE].latency = latency
    app[PSP_STATE].read_latency = read_latency
    runner = web.AppRunner(app)
    await runner.setup()
    try:
        await web.TCPSite(runner, host, port).start()
    except BaseException:
        await runner.cleanup()
        raise
    bound = int(runner.addresses[0][1])
    url_host = "127.0.0.1" if host in ("", "0.0.0.0") else host
    return RunningFake(runner=runner, url=f"http://{url_host}:{bound}", port=bound)
