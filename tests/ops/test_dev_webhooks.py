"""`payhook dev` plays Shopify's webhooks too: its sandbox signs them with the app secret the
run made for the web server, and the worker processes them."""

from __future__ import annotations

import json
import re
import signal
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from ops.redis_server import free_port
from tests.factories import capture_body, shopify_headers
from tests.ops.dev_support import start_dev, wait_running

SHOP = "payhook-dev.myshopify.com"


def _call(url: str, body: Any = None, headers: dict[str, str] | None = None) -> tuple[int, Any]:
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(
        url, data=data, headers={"Content-Type": "application/json", **(headers or {})}
    )
    try:
        with urllib.request.urlopen(request, timeout=30) as answer:
            return int(answer.status), json.loads(answer.read() or b"null")
    except urllib.error.HTTPError as refused:
        return refused.code, json.loads(refused.read() or b"null")


@pytest.mark.integration
def test_the_sandbox_of_payhook_dev_uninstalls_a_shop_the_worker_then_refuses(
    tmp_path: Path,
) -> None:
    app_port, sandbox_port = free_port(), free_port()
    dev, output = start_dev(tmp_path, app_port=app_port, sandbox_port=sandbox_port)
    try:
        deadline = wait_running(dev, output)
        printed = output.read_text()
        assert "/_sandbox/webhooks" in printed  # dev says how
        token = re.search(r"admin token for this run: (\S+)\)", printed)
        assert token is not None, printed
        bearer = {"Authorization": f"Bearer {token[1]}"}
        status, sent = _call(
            f"http://127.0.0.1:{sandbox_port}/_sandbox/webhooks",
            {"topic": "app/uninstalled", "shop": SHOP, "wait": True},
        )
        assert status == 200, sent
        delivery = sent["delivery"]
        assert delivery["state"] == "delivered", delivery
        assert [a["status"] for a in delivery["attempts"]] == [200]
        webhook = f"http://127.0.0.1:{app_port}/admin/webhooks/{delivery['webhook_id']}"
        while (state := _call(webhook, headers=bearer)[1]["webhook"]["state"]) != "done":
            assert state in ("received", "retrying"), state
            assert time.monotonic() < deadline, state
            time.sleep(0.2)
        status, refused = _call(
            f"http://127.0.0.1:{app_port}/capture_sessions",
            capture_body(),
            shopify_headers(**{"Shopify-Shop-Domain": SHOP}),
        )
        assert (status, refused["error"]["code"]) == (403, "shop_uninstalled")
    finally:
        dev.send_signal(signal.SIGINT)
        dev.wait(timeout=60)
