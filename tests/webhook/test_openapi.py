"""docs/openapi.yaml against the running app: schemathesis sends what the document allows
(and what it does not) to the real app on a TCP port with a real redis-server, and every
answer must be documented, of the documented type and shape, and never a 5xx.

`pytest tests/webhook/test_openapi.py --fuzz-examples N` runs it longer (docs/operations.md).
"""

from __future__ import annotations

import asyncio
import re
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import redis
import yaml
from cryptography.fernet import Fernet

from config import Settings
from config.settings import child_environment
from ops.redis_server import LocalRedis
from sessions.money import CURRENCIES
from tests.factories import CALLBACK_SECRET
from tests.webhook.openapi_hooks import WEBHOOK_SECRET
from webhook.app import create_app

DB = 9
ROOT = Path(__file__).resolve().parents[2]
OPENAPI = ROOT / "docs" / "openapi.yaml"
ADMIN_TOKEN = "fuzz-admin-token-0123456789"
CHECKS = (
    "not_a_server_error,status_code_conformance,content_type_conformance,"
    "response_schema_conformance"
)


@pytest.fixture
def settings(redis_server: LocalRedis) -> Settings:
    return Settings(
        redis_url=f"redis://127.0.0.1:{redis_server.port}/{DB}",
        shopify_access_token="shpat_fuzz",
        admin_token=ADMIN_TOKEN,
        simulator_webhook_secret=CALLBACK_SECRET,
        # Signs the fuzzer's webhooks, and turns the install on.
        shopify_api_secret=WEBHOOK_SECRET,
        # On, so its code runs; wide enough that the fuzzer's shops rarely meet it.
        shop_rate_limit=200,
        # The install on, so its checks are fuzzed; the fuzzer is not sent to a real shop.
        shopify_api_key="fuzz-app",
        token_keys=Fernet.generate_key().decode(),
    )


def document() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load(OPENAPI.read_text())
    return loaded


def test_every_route_is_documented_and_every_documented_route_exists(
    settings: Settings,
) -> None:
    app = create_app(settings)
    served = {
        (route.method.lower(), route.resource.canonical)
        for route in app.router.routes()
        if route.resource is not None and route.method != "HEAD"
    }
    documented = {(method, path) for path, item in document()["paths"].items() for method in item}
    assert served == documented


def test_the_documented_currencies_are_the_ones_intake_accepts() -> None:
    assert set(document()["components"]["schemas"]["Currency"]["enum"]) == CURRENCIES


async def test_schemathesis_finds_no_server_error_and_no_undocumented_answer(
    aiohttp_server: Any,
    settings: Settings,
    inspect: redis.Redis,
    tmp_path: Path,
    request: pytest.FixtureRequest,
) -> None:
    examples = int(request.config.getoption("--fuzz-examples"))
    server = await aiohttp_server(create_app(settings))
    started = time.monotonic()
    process = await asyncio.create_subprocess_exec(
        str(Path(sys.executable).parent / "schemathesis"),
        "run",
        str(OPENAPI),
        "--url",
        str(server.make_url("")).rstrip("/"),
        "--checks",
        CHECKS,
        "--max-examples",
        str(examples),
        "--workers",
        "1",
        "--request-timeout",
        "10",
        # A redirect is the answer under test; the install's leads to a real shop's page.
        "--max-redirects",
        "0",
        "--header",
        f"Authorization: Bearer {ADMIN_TOKEN}",
        "--no-color",
        "--report-dir",
        str(tmp_path / "report"),
        cwd=tmp_path,
        env=child_environment(
            {"SCHEMATHESIS_HOOKS": "tests.webhook.openapi_hooks", "PYTHONPATH": str(ROOT)}
        ),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    output, _ = await asyncio.wait_for(process.communicate(), timeout=180 + examples * 6)
    text = output.decode(errors="replace")
    counted = re.search(r"(\d+) generated, (.*)$", text, re.MULTILINE)
    assert process.returncode == 0, text[-6000:]
    assert counted is not None, text[-6000:]
    cases = int(counted[1])
    print(f"schemathesis: {cases} cases, {counted[2]}, {time.monotonic() - started:.1f} s")
    # The small operations (health, metrics) run out of distinct inputs early, so the count
    # grows slower than the examples; the floor says the run did reach every operation.
    assert cases >= 50 * min(examples, 10)
