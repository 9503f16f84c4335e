"""The buyer's whole trip, through real HTTP: Shopify sends a payment session, the buyer opens
the simulator PSP's page in the sandbox and chooses, the page tells payhook (signed) and
sends the buyer back to `GET /payments/{id}/return`, a real worker reports the outcome to the
sandbox Shopify, and the buyer's browser ends on the page Shopify's answer named.

Over HTTP with aiohttp following every redirect (runs everywhere), and once in a real
headless chromium (skips without it, as tests/integration/test_dashboard_browser.py does).
"""

from __future__ import annotations

import asyncio
import shutil
from collections.abc import Iterator
from typing import Any
from urllib.parse import parse_qs, urlsplit

import aiohttp
import pytest

from ops.redis_server import LocalRedis
from sandbox.checkout import checkout_url
from sandbox.client import SandboxShopifyClient
from sandbox.shopify import RunningShopifySandbox
from sessions.models import Report
from sessions.states import State
from sessions.store import SessionStore
from tests.factories import new_id
from tests.integration.conftest import (
    BUYER_PAGE,
    ServeApp,
    WorkerProcess,
    buyer_page,
    open_payment,
    wait_final,
    worker_environment,
)

pytestmark = pytest.mark.integration

SHOP = "round-trip-shop.myshopify.com"
BUYER_PATH = BUYER_PAGE + "&return_url={return_url}"


@pytest.fixture(scope="module")
def worker(
    redis_server: LocalRedis,
    shopify_sandbox: RunningShopifySandbox,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[WorkerProcess]:
    """A worker whose Shopify ladder outlasts a Shopify that is down for a few seconds."""
    state = tmp_path_factory.mktemp("worker")
    env = worker_environment(
        redis_server,
        shopify_sandbox,
        state,
        PAYHOOK_SHOPIFY_RETRY_LADDER="0.3",
        PAYHOOK_SHOPIFY_MAX_ATTEMPTS="200",
    )
    process = WorkerProcess.start(["worker"], env, state / "worker.log")
    yield process
    process.stop()


@pytest.fixture
async def app_url(serve_app: ServeApp, shopify_sandbox: RunningShopifySandbox) -> str:
    return await serve_app(**buyer_page(shopify_sandbox, BUYER_PATH), buyer_return_wait_seconds=5)


async def checkout_payment(
    http: aiohttp.ClientSession, app_url: str, sandbox: SandboxShopifyClient
) -> tuple[str, str]:
    """Shopify sends a payment session whose checkout is the sandbox's; returns its id and
    the `redirect_url` the buyer is sent to."""
    session_id = new_id()
    opened = await open_payment(
        http,
        app_url,
        sandbox,
        shop=SHOP,
        id=session_id,
        payment_method={"type": "offsite", "data": {}},
        cancel_url=checkout_url(sandbox.base_url, session_id, "cancel"),
    )
    return opened.id, opened.redirect_url


async def buyer_chooses(
    http: aiohttp.ClientSession, redirect_url: str, choice: str
) -> aiohttp.ClientResponse:
    """The buyer's browser: the PSP's page, its button, then every redirect after it."""
    async with http.get(redirect_url) as page:
        assert page.status == 200
        assert f'value="{choice}"' in await page.text()
    query = parse_qs(urlsplit(redirect_url).query)
    path = urlsplit(redirect_url).path
    form = {"outcome": choice, "callback": query["callback"][0]}
    form["return_url"] = query["return_url"][0]
    origin = redirect_url[: redirect_url.index(path)]
    async with http.post(f"{origin}{path}/decide", data=form) as landed:
        await landed.read()
        return landed


@pytest.mark.parametrize(
    ("choice", "mutation", "report", "page", "state"),
    [
        ("approved", "paymentSessionResolve", Report.RESOLVED, "thank_you", "resolved"),
        ("declined", "paymentSessionReject", Report.REJECTED, "declined", "rejected"),
        ("pending", "paymentSessionPending", Report.PENDING, "thank_you", "pending"),
        ("cancelled", "paymentSessionReject", Report.REJECTED, "declined", "rejected"),
    ],
)
async def test_the_buyer_ends_on_the_page_shopify_named_after_the_report(
    http: aiohttp.ClientSession,
    app_url: str,
    sandbox: SandboxShopifyClient,
    store: SessionStore,
    worker: WorkerProcess,
    choice: str,
    mutation: str,
    report: Report,
    page: str,
    state: str,
) -> None:
    payment, redirect_url = await checkout_payment(http, app_url, sandbox)
    landed = await buyer_chooses(http, redirect_url, choice)

    expected = checkout_url(sandbox.base_url, payment, page)
    assert (landed.status, str(landed.url)) == (200, expected)
    # The way there: payhook's return route, which sent the buyer on (303) to Shopify.
    hops = [(r.status, str(r.url)) for r in landed.history]
    assert hops[-1] == (303, f"{app_url}/payments/{payment}/return")
    # Shopify had the report before the buyer arrived, and payhook kept where it sent them.
    arrival = (await sandbox.buyer())["arrivals"][-1]
    assert (arrival["session_id"], arrival["page"], arrival["state"]) == (payment, page, state)
    session = await store.get(payment)
    assert session is not None
    assert (session.report, session.redirect_url) == (report, expected)
    gid = f"gid://shopify/PaymentSession/{payment}"
    assert [c["mutation"] for c in await sandbox.calls(gid=gid) if c["applied"]] == [mutation]


async def test_a_decline_shopify_cannot_be_told_in_time_sends_the_buyer_back_to_checkout(
    http: aiohttp.ClientSession,
    app_url: str,
    sandbox: SandboxShopifyClient,
    store: SessionStore,
    worker: WorkerProcess,
) -> None:
    # Shopify answers 503 to the reject for longer than the buyer is kept waiting.
    await sandbox.add_fault(
        {"kind": "status", "status": 503, "for_seconds": 8, "mutation": "paymentSessionReject"}
    )
    payment, redirect_url = await checkout_payment(http, app_url, sandbox)
    landed = await buyer_chooses(http, redirect_url, "declined")
    assert str(landed.url) == checkout_url(sandbox.base_url, payment, "cancel")
    session = await store.get(payment)
    assert session is not None
    assert (session.state, session.report) == (State.SETTLED, None)
    # Shopify is still told, once it answers again.
    await sandbox.clear_faults()
    assert (await wait_final(store, payment)).report is Report.REJECTED


async def test_an_approval_shopify_cannot_be_told_in_time_is_never_sent_to_checkout(
    http: aiohttp.ClientSession,
    app_url: str,
    sandbox: SandboxShopifyClient,
    store: SessionStore,
    worker: WorkerProcess,
) -> None:
    await sandbox.add_fault(
        {"kind": "status", "status": 503, "for_seconds": 7, "mutation": "paymentSessionResolve"}
    )
    payment, redirect_url = await checkout_payment(http, app_url, sandbox)
    landed = await buyer_chooses(http, redirect_url, "approved")
    # The page that asks again, on payhook: going back to checkout could mean paying twice.
    assert str(landed.url) == f"{app_url}/payments/{payment}/return"
    assert '<meta http-equiv="refresh"' in await landed.text()
    await sandbox.clear_faults()
    await wait_final(store, payment)
    # The page's next look finds the report and sends the buyer on.
    async with http.get(str(landed.url)) as again:
        assert str(again.url) == checkout_url(sandbox.base_url, payment, "thank_you")


@pytest.fixture
def chromium() -> Iterator[Any]:
    webdriver = pytest.importorskip("selenium.webdriver", reason="selenium is not installed")
    from selenium.webdriver.chrome.options import Options
    from selenium.webdriver.chrome.service import Service

    binary, driver_path = shutil.which("chromium"), shutil.which("chromedriver")
    if binary is None or driver_path is None:
        pytest.skip("no chromium or chromedriver: `make chromium` installs Debian's (needs root)")
    options = Options()
    options.binary_location = binary
    for argument in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu"):
        options.add_argument(argument)
    driver = webdriver.Chrome(options=options, service=Service(executable_path=driver_path))
    driver.set_page_load_timeout(20)
    # The click returns before the redirects end: finding waits for the last page.
    driver.implicitly_wait(15)
    yield driver
    driver.quit()


async def test_in_a_real_browser_the_buyer_pays_and_lands_on_shopifys_thank_you_page(
    chromium: Any,
    http: aiohttp.ClientSession,
    app_url: str,
    sandbox: SandboxShopifyClient,
    store: SessionStore,
    worker: WorkerProcess,
) -> None:
    from selenium.webdriver.common.by import By

    payment, redirect_url = await checkout_payment(http, app_url, sandbox)
    # Selenium blocks: it runs beside the event loop that serves payhook.
    await asyncio.to_thread(chromium.get, redirect_url)
    button = await asyncio.to_thread(
        chromium.find_element, By.CSS_SELECTOR, 'button[value="approved"]'
    )
    await asyncio.to_thread(button.click)

    def landed() -> str:
        text: str = chromium.find_element(By.ID, "state").text
        return text

    assert await asyncio.to_thread(landed) == "resolved"
    assert chromium.current_url == checkout_url(sandbox.base_url, payment, "thank_you")
    session = await store.get(payment)
    assert session is not None
    assert session.redirect_url == chromium.current_url
