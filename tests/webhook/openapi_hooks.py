"""schemathesis hooks for tests/webhook/test_openapi.py (loaded through SCHEMATHESIS_HOOKS).

The fuzzer cannot sign a PSP callback, so every callback it sends would stop at 401. This
signs each one it generates and gives it the payment's own reference, as the simulator PSP
would, so the body checks and the store behind them are fuzzed too; the signature and the
reference check are tested in tests/webhook/test_psp_callbacks.py. Shopify's webhooks are
signed the same way, with the app's secret (their signature check: test_shopify_webhooks.py).
"""

from __future__ import annotations

import json
import time
from typing import Any

import schemathesis

from shops.webhooks import shape_of
from tests.factories import CALLBACK_SECRET
from webhook.shopify_hmac import signature
from webhook.signing import sign, simulator_reference

CALLBACK = "/psp/simulator/payments/{session_id}"
WEBHOOKS = "/shopify/webhooks"
# The app secret test_openapi.py configures: Shopify's webhooks are signed with it.
WEBHOOK_SECRET = "shpss_fuzz_app_secret_0123456789abcdef"


@schemathesis.hook
def before_call(context: schemathesis.HookContext, case: schemathesis.Case, kwargs: Any) -> None:
    if case.operation.path == WEBHOOKS:
        _sign_webhook(case)
        return
    if case.operation.path != CALLBACK or not isinstance(case.body, dict):
        return
    session_id = case.path_parameters.get("session_id") if case.path_parameters else None
    if not isinstance(session_id, str):
        return
    if "reference" in case.body:
        # The payment's own reference, or nearly every callback would stop at that check.
        case.body = {**case.body, "reference": simulator_reference(session_id)}
    # The bytes requests sends for `json=`: json.dumps with its default separators.
    raw = json.dumps(case.body).encode()
    signature = sign(CALLBACK_SECRET, session_id, int(time.time()), raw)
    case.headers = {**(case.headers or {}), "X-Payhook-Signature": signature}


def _sign_webhook(case: schemathesis.Case) -> None:
    """Sign the body as Shopify would; and, as its bodies always do, have it name the
    header's shop and send it under the topic of its shape, or nearly every case would stop
    at those checks (they are tested in test_shopify_webhooks.py)."""
    if case.body is None or not isinstance(case.body, dict | list | str | int | float | bool):
        return
    headers = dict(case.headers or {})
    shop = headers.get("X-Shopify-Shop-Domain")
    if isinstance(case.body, dict) and isinstance(shop, str):
        body = dict(case.body)
        for field in ("myshopify_domain", "shop_domain"):
            if field in body:
                body[field] = shop
        case.body = body
        topic = shape_of(body)
        if topic is not None:
            headers["X-Shopify-Topic"] = topic.value
        case.headers = headers
    raw = json.dumps(case.body).encode()
    value = signature(WEBHOOK_SECRET, raw).decode()
    case.headers = {**(case.headers or {}), "X-Shopify-Hmac-Sha256": value}
