"""The dashboard in a real headless browser (Debian's chromium, driven by selenium) against
`payhook serve`, a real worker, the sandbox Shopify and a real redis-server: an operator logs
in, finds a failed session, replays it and watches it resolve; a bulk replay shows its
dry-run count before it acts.

Screenshots go to `$PAYHOOK_TEST_ARTIFACTS` (default `tests/artifacts/`, git-ignored).
`make chromium` installs the browser; without it these tests skip and say why.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import time
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import redis

from ops.redis_server import LocalRedis, free_port
from sandbox.client import SandboxShopifyClient
from sandbox.shopify import RunningShopifySandbox
from sandbox.shopify_side import send_capture_session
from sessions.keys import session_key
from sessions.store import SessionStore
from tests.factories import store_failed
from tests.integration.conftest import DB, ROOT, WorkerProcess, worker_environment

webdriver = pytest.importorskip("selenium.webdriver", reason="selenium is not installed")
from selenium.common.exceptions import NoAlertPresentException  # noqa: E402
from selenium.webdriver.chrome.options import Options  # noqa: E402
from selenium.webdriver.chrome.service import Service  # noqa: E402
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.remote.webdriver import WebDriver  # noqa: E402
from selenium.webdriver.support.ui import Select  # noqa: E402

pytestmark = pytest.mark.integration

TOKEN = "browser-test-admin-token-0123456789"
ARTIFACTS = Path(os.environ.get("PAYHOOK_TEST_ARTIFACTS") or ROOT / "tests" / "artifacts")
PATIENCE = 20.0


@pytest.fixture(scope="module")
def browser(tmp_path_factory: pytest.TempPathFactory) -> Iterator[WebDriver]:
    chromium = shutil.which("chromium")
    driver_path = shutil.which("chromedriver")
    if chromium is None or driver_path is None:
        pytest.skip("no chromium or chromedriver: `make chromium` installs Debian's (needs root)")
    options = Options()
    options.binary_location = chromium
    for argument in (
        "--headless=new",
        # Root in a container: chromium's sandbox needs user namespaces it does not get.
        "--no-sandbox",
        "--disable-dev-shm-usage",
        "--disable-gpu",
        "--window-size=1280,1000",
        f"--user-data-dir={tmp_path_factory.mktemp('chromium')}",
    ):
        options.add_argument(argument)
    # An explicit driver: selenium would otherwise try to download one.
    driver = webdriver.Chrome(options=options, service=Service(executable_path=driver_path))
    driver.set_page_load_timeout(15)
    # A form's submit returns before the next page has loaded: finding waits for it.
    driver.implicitly_wait(5)
    yield driver
    driver.quit()


@pytest.fixture(scope="module")
def app_url(
    worker: WorkerProcess,
    redis_server: LocalRedis,
    shopify_sandbox: RunningShopifySandbox,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[str]:
    """`payhook serve` with an admin token, next to the module's worker."""
    state = tmp_path_factory.mktemp("serve")
    port = free_port()
    env = worker_environment(
        redis_server,
        shopify_sandbox,
        state,
        PAYHOOK_ADMIN_TOKEN=TOKEN,
        PAYHOOK_HOST="127.0.0.1",
        PAYHOOK_PORT=str(port),
    )
    web = WorkerProcess.start(["serve"], env, state / "web.log", ready_marker=None)
    url = f"http://127.0.0.1:{port}"
    until(lambda: _answers(f"{url}/healthz"), f"payhook serve on {url}")
    yield url
    web.stop()


@pytest.fixture
def inspect(redis_server: LocalRedis) -> Iterator[redis.Redis]:
    client = redis.Redis(port=redis_server.port, db=DB, decode_responses=True)
    yield client
    client.close()


def _answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=1) as answer:
            return bool(answer.status == 200)
    except OSError:
        return False


def until(check: Callable[[], Any], what: str, patience: float = PATIENCE) -> Any:
    deadline = time.monotonic() + patience
    while time.monotonic() < deadline:
        found = check()
        if found:
            return found
        time.sleep(0.1)
    raise AssertionError(f"gave up waiting for {what}")


def shot(driver: WebDriver, name: str) -> None:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    driver.save_screenshot(str(ARTIFACTS / f"{name}.png"))


def state_of(inspect: redis.Redis, session_id: str) -> str | None:
    state: str | None = inspect.hget(session_key(session_id), "state")  # type: ignore[assignment]
    return state


def failed_captures(
    app_url: str, sandbox: RunningShopifySandbox, inspect: redis.Redis, shop: str, count: int
) -> list[str]:
    """Capture sessions that Shopify refuses (503) until their reporting runs out: failed,
    with their PSP outcome stored."""

    async def send() -> list[str]:
        async with aiohttp.ClientSession() as http:
            shopify = SandboxShopifyClient(sandbox.url, http)
            await shopify.add_fault(
                {
                    "kind": "status",
                    "status": 503,
                    "times": 1000,
                    "mutation": "captureSessionResolve",
                }
            )
            try:
                ids = []
                for _ in range(count):
                    sent = await send_capture_session(
                        http,
                        app_url=app_url,
                        sandbox=shopify,
                        shop=shop,
                        payment_id=f"pay_{uuid.uuid4().hex[:10]}",
                        amount="35.00",
                        currency="EUR",
                    )
                    assert sent.status == 201
                    ids.append(sent.id)
                for session_id in ids:
                    await asyncio.to_thread(
                        until, lambda i=session_id: state_of(inspect, i) == "failed", "a failure"
                    )
                return ids
            finally:
                await shopify.clear_faults()

    return asyncio.run(send())


def log_in(driver: WebDriver, app_url: str) -> None:
    driver.get(f"{app_url}/admin")
    if "/admin/login" not in driver.current_url:
        return
    shot(driver, "01-login")
    driver.find_element(By.NAME, "token").send_keys(TOKEN)
    driver.find_element(By.CSS_SELECTOR, "form button[type=submit]").click()
    until(lambda: driver.current_url.rstrip("/").endswith("/admin"), "the overview")


def test_log_in_find_a_failed_session_replay_it_and_see_it_resolve(
    browser: WebDriver,
    app_url: str,
    shopify_sandbox: RunningShopifySandbox,
    inspect: redis.Redis,
) -> None:
    shop = f"dash-{uuid.uuid4().hex[:8]}.myshopify.com"
    [session_id] = failed_captures(app_url, shopify_sandbox, inspect, shop, 1)
    log_in(browser, app_url)
    assert "By state and kind" in browser.page_source
    browser.find_element(By.LINK_TEXT, "Sessions").click()
    # Each step waits for the page it leads to: an element found on the page before goes
    # stale when the next one replaces it.
    until(lambda: "/admin/dashboard/sessions" in browser.current_url, "the sessions page")
    browser.find_element(By.NAME, "shop").send_keys(shop)
    Select(browser.find_element(By.NAME, "state")).select_by_value("failed")
    browser.find_element(By.XPATH, "//main//button[text()='Search']").click()
    # The unfiltered list may show the same link: wait for the search's own page.
    until(lambda: "state=failed" in browser.current_url, "the search results")
    link = browser.find_element(By.LINK_TEXT, session_id)
    assert "HTTP 503" in browser.page_source
    shot(browser, "02-search-failed")
    link.click()
    until(lambda: browser.title.startswith("Session "), "the session page")
    assert browser.find_element(By.CSS_SELECTOR, ".state-failed").text == "failed"
    assert "report_retry" in browser.page_source
    shot(browser, "03-session-failed")
    browser.find_element(By.XPATH, "//button[text()='Replay']").click()
    flash = browser.find_element(By.CSS_SELECTOR, ".flash")
    assert flash.text == "Replayed: it resumes at settled."

    def resolved() -> bool:
        browser.refresh()
        return "<td>report</td><td>resolved</td>" in browser.page_source

    until(resolved, "the replayed session to be resolved")
    assert state_of(inspect, session_id) == "reported"
    events = [td.text for td in browser.find_elements(By.XPATH, "//h2/following::table//td[2]")]
    assert events[-2:] == ["replayed", "reported"]
    shot(browser, "04-session-resolved")
    browser.find_element(By.LINK_TEXT, "Overview").click()
    shot(browser, "05-overview")


def test_bulk_replay_shows_the_dry_run_count_before_it_acts(
    browser: WebDriver,
    app_url: str,
    shopify_sandbox: RunningShopifySandbox,
    inspect: redis.Redis,
) -> None:
    shop = f"bulk-{uuid.uuid4().hex[:8]}.myshopify.com"
    ids = failed_captures(app_url, shopify_sandbox, inspect, shop, 3)
    log_in(browser, app_url)
    browser.find_element(By.LINK_TEXT, "Dead letters").click()
    browser.find_element(By.NAME, "shop").send_keys(shop)
    browser.find_element(By.XPATH, "//button[starts-with(text(), 'Bulk replay')]").click()
    count = browser.find_element(By.ID, "dry-run-count").text
    assert count.startswith("Dry run: 3 failed session(s) would be replayed (3 at settled)")
    shot(browser, "06-bulk-dry-run")
    assert [state_of(inspect, i) for i in ids] == ["failed"] * 3
    browser.find_element(By.XPATH, "//button[text()='Replay 3 session(s)']").click()
    result = browser.find_element(By.ID, "bulk-result").text
    assert result.startswith("Replayed 3 session(s); skipped 0")
    shot(browser, "07-bulk-replayed")
    until(lambda: all(state_of(inspect, i) == "reported" for i in ids), "all three reported")


def test_outside_text_stays_text_in_the_browser(
    browser: WebDriver, app_url: str, redis_server: LocalRedis
) -> None:
    hostile = '<img src=x onerror="alert(1)"><script>alert(2)</script>'

    async def store_hostile() -> str:
        client = redis.asyncio.Redis(port=redis_server.port, db=DB)
        try:
            session = await store_failed(SessionStore(client), hostile, shop=f"x{hostile}")
        finally:
            await client.aclose()
        return session.id

    session_id = asyncio.run(store_hostile())
    log_in(browser, app_url)
    browser.get(f"{app_url}/admin/dashboard/session?id={session_id}")
    with pytest.raises(NoAlertPresentException):
        browser.switch_to.alert.text  # noqa: B018 - reading it is the check
    assert hostile in browser.find_element(By.CSS_SELECTOR, ".warn .err").text
    # Serialized from the DOM: an <img> or <script> element would show as one.
    assert "<img" not in browser.page_source
    assert "<script" not in browser.page_source
