"""`payhook dev`: the whole system on one machine with its embedded defaults.

Starts a project-managed `redis-server` (AOF on, data under the state dir), the Shopify
sandbox peer, the web server (with the dashboard under `/admin`, and its metrics on the
operator listener), a worker, beat and Flower,
each as its own process with its log under `<state dir>/logs/`, installs the demo shop
through OAuth against the sandbox (following the redirects over real HTTP, as a merchant's
browser would) and waits for its onboarding, then optionally runs the demo. No access token
is preset: the demo's sessions are reported with the token the install stored.
The dashboard and Flower get a fresh admin token and Flower password each run, printed once,
unless PAYHOOK_ADMIN_TOKEN or PAYHOOK_FLOWER_BASIC_AUTH say otherwise. With `--connector NAME`
the worker settles with that PSP connector against its sandbox fake (`sandbox.psp`), started
first.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import secrets
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import Any
from urllib.parse import quote, urlparse

from config import Settings
from config.settings import child_environment
from ops.demo import SHOP
from ops.redis_server import LocalRedis, _answers_ping

BUYER_PATH = (
    "/pay/{session_id}?amount={amount}&currency={currency}&callback={callback}"
    "&return_url={return_url}"
)
# How long dev waits for a worker's sweep to send the demo shop's onboarding.
ONBOARDING_PATIENCE_SECONDS = 60.0
DEV_PSP_TOKEN = "payhook-dev-psp-token"  # noqa: S105 - the PSP fakes accept any token
# Worker metrics in development: the worker process serves them here (9100 is node_exporter's).
DEV_METRICS_PORT = 9191
# The web's operator listener in development (/metrics, /readyz, /healthz).
DEV_OPERATOR_PORT = 9180
DEV_FLOWER_USER = "payhook"
# How long a stop waits for all the children to finish (the worker's warm shutdown among them).
STOP_PATIENCE_SECONDS = 20.0


@dataclass
class Child:
    name: str
    process: subprocess.Popen[bytes]
    log: Path


def _start(name: str, args: list[str], env: dict[str, str], logs: Path) -> Child:
    logs.mkdir(parents=True, exist_ok=True)
    log = logs / f"{name}.log"
    with log.open("ab") as sink:
        process = subprocess.Popen(
            [sys.executable, "-m", "ops", *args],
            env=env,
            stdout=sink,
            stderr=sink,
            start_new_session=True,
        )
    return Child(name, process, log)


def _wait_http(url: str, child: Child, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if child.process.poll() is not None:
            raise RuntimeError(f"{child.name} exited; see {child.log}")
        with (
            contextlib.suppress(OSError),
            urllib.request.urlopen(url, timeout=1) as answer,  # noqa: S310 - loopback only
        ):
            if answer.status == 200:
                return
        time.sleep(0.1)
    raise RuntimeError(f"{child.name} did not come up at {url}; see {child.log}")


def _stop(children: list[Child], patience: float = STOP_PATIENCE_SECONDS) -> None:
    """SIGTERM to every child, then SIGKILL to any still running once `patience` is spent:
    one bound for them all, so a stop never takes longer than it."""
    for child in reversed(children):
        if child.process.poll() is None:
            child.process.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + patience
    for child in reversed(children):
        try:
            child.process.wait(timeout=max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            child.process.kill()
            child.process.wait()


@contextlib.contextmanager
def _stopped_by_signals() -> Iterator[None]:
    """SIGINT (Ctrl-C) and SIGTERM (`kill`, a process manager) both end the run through its
    `finally`, which stops every child. Set here because SIGTERM's default would leave the
    children running, and a shell that starts a background job hands it SIGINT ignored.
    Only the first signal interrupts: a second Ctrl-C must not cut the stop itself short."""
    stopping: list[int] = []

    def stop(signum: int, _: FrameType | None) -> None:
        if not stopping:
            stopping.append(signum)
            raise KeyboardInterrupt

    previous = {s: signal.signal(s, stop) for s in (signal.SIGTERM, signal.SIGINT)}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def run_dev(
    settings: Settings,
    *,
    demo: int,
    exit_after_demo: bool,
    sandbox_port: int,
    connector: str | None = None,
    psp_port: int = 8095,
    flower_port: int = 5555,
) -> int:
    from sandbox.api_versions import UnknownApiVersion, schema_file
    from sandbox.oauth import AUTHORIZE_PATH, TOKEN_PATH
    from sandbox.shopify import GRAPHQL_PATH

    try:
        # The sandbox speaks one API version's schema, and payhook must call that one.
        schema_file(settings.shopify_api_version)
    except UnknownApiVersion as exc:
        print(f"payhook dev: {exc}", file=sys.stderr)
        return 2
    state = settings.state_dir.resolve()
    logs = state / "logs"
    redis_port = urlparse(settings.redis_url).port or 6379
    redis: LocalRedis | None = None
    if _answers_ping(redis_port):
        print(f"● redis      already running on 127.0.0.1:{redis_port}, using it")
    else:
        redis = LocalRedis(state / "redis", port=redis_port).start()
        print(f"● redis      127.0.0.1:{redis_port} (AOF in {state / 'redis'})")
    sandbox_base = f"http://127.0.0.1:{sandbox_port}"
    app_url = f"http://{settings.host}:{settings.port}"
    token_keys = settings.token_keys
    # The sandbox's buyer page and the web server share it; a fresh one each run, so no
    # secret that can sign a callback is ever written down.
    secret = settings.simulator_webhook_secret
    env = child_environment(
        {
            "PAYHOOK_TOKEN_KEYS": token_keys.get_secret_value()
            if token_keys
            else _dev_token_key(state),
            "PAYHOOK_REDIS_URL": f"redis://127.0.0.1:{redis_port}/0",
            "PAYHOOK_SHOPIFY_GRAPHQL_URL": sandbox_base + GRAPHQL_PATH,
            "PAYHOOK_SHOPIFY_API_VERSION": settings.shopify_api_version,
            # The app's credentials, which the sandbox signs its install callbacks and
            # Shopify's webhooks with, and the web server checks them with.
            "PAYHOOK_SHOPIFY_API_KEY": settings.shopify_api_key or f"dev-{secrets.token_hex(8)}",
            "PAYHOOK_SHOPIFY_API_SECRET": (
                settings.shopify_api_secret.get_secret_value()
                if settings.shopify_api_secret
                else secrets.token_urlsafe(32)
            ),
            "PAYHOOK_SHOPIFY_AUTHORIZE_URL": sandbox_base + AUTHORIZE_PATH,
            "PAYHOOK_SHOPIFY_TOKEN_URL": sandbox_base + TOKEN_PATH,
            "PAYHOOK_STATE_DIR": str(state),
            # The simulator's buyer page lives in the sandbox and calls the web server back.
            "PAYHOOK_BUYER_PAGE_URL": sandbox_base + BUYER_PATH,
            "PAYHOOK_PUBLIC_URL": app_url,
            "PAYHOOK_SIMULATOR_WEBHOOK_SECRET": (
                secret.get_secret_value() if secret else secrets.token_urlsafe(32)
            ),
            "PAYHOOK_WORKER_METRICS_PORT": str(settings.worker_metrics_port or DEV_METRICS_PORT),
            "PAYHOOK_OPERATOR_PORT": str(settings.operator_port or DEV_OPERATOR_PORT),
        }
    )
    logins = _dev_logins(settings, env)
    children: list[Child] = []
    with _stopped_by_signals():
        try:
            if connector == "simulator":
                env["PAYHOOK_CONNECTOR"] = connector
            elif connector is not None:
                children.append(_start_psp(connector, psp_port, env, logs))
            children.append(_start("sandbox", ["sandbox", "--port", str(sandbox_port)], env, logs))
            _wait_http(f"{sandbox_base}/_sandbox/calls", children[-1])
            print(f"● sandbox    {sandbox_base} (Shopify Payments Apps GraphQL peer)")
            children.append(_start("web", ["serve"], env, logs))
            _wait_http(f"{app_url}/healthz", children[-1])
            operator_url = f"http://{settings.operator_host}:{env['PAYHOOK_OPERATOR_PORT']}"
            _wait_http(f"{operator_url}/healthz", children[-1])
            print(f"● web        {app_url}")
            print(f"● operator   {operator_url} (/metrics, /readyz, /healthz)")
            installed = _install(app_url, SHOP)
            print(
                f"● install    {installed['shop']} through OAuth (scopes "
                f"{','.join(installed['scopes'])}); its offline token is stored encrypted"
            )
            children.append(_start("worker", ["worker"], env, logs))
            children.append(_start("beat", ["beat"], env, logs))
            metrics_port = env["PAYHOOK_WORKER_METRICS_PORT"]
            print(
                f"● worker     + beat (logs in {logs}); worker metrics on :{metrics_port}/metrics"
            )
            children.append(_start("flower", ["flower", "--port", str(flower_port)], env, logs))
            flower_url = f"http://{settings.flower_address}:{flower_port}"
            _wait_http(f"{flower_url}/healthcheck", children[-1])
            print(f"● onboarding {_onboarded(app_url, SHOP, env['PAYHOOK_ADMIN_TOKEN'])}")
            print(f"● dashboard  {app_url}/admin ({logins.admin})")
            print(f"● flower     {flower_url} ({logins.flower})")
            print(_how_to_send(app_url, sandbox_base))
            if demo:
                from ops.demo import run_demo

                result = asyncio.run(run_demo(app_url, sandbox_base, demo))
                if exit_after_demo:
                    return 0 if result.complete else 1
            print("payhook is running; Ctrl-C stops everything.")
            while all(child.process.poll() is None for child in children):
                time.sleep(0.5)
            dead = [c.name for c in children if c.process.poll() is not None]
            print(f"stopped: {', '.join(dead)} exited (see {logs})", file=sys.stderr)
            return 1
        except KeyboardInterrupt:
            return 0
        finally:
            _stop(children)
            if redis is not None:
                redis.stop()


def _install(app_url: str, shop: str) -> dict[str, Any]:
    """Install the app on `shop` as a merchant's browser would: the install route, the
    sandbox's authorize page and back to the callback, redirects followed over HTTP."""
    url = f"{app_url}/shopify/install?shop={quote(shop)}"
    try:
        with urllib.request.urlopen(url, timeout=30) as answer:  # noqa: S310 - loopback only
            installed: dict[str, Any] = json.loads(answer.read())
    except urllib.error.HTTPError as refused:
        raise RuntimeError(f"installing {shop} failed: {refused.read().decode()[:500]}") from None
    return installed


def _onboarded(app_url: str, shop: str, admin_token: str) -> str:
    """The shop's onboarding once a worker's sweep has sent it (the admin API's word)."""
    request = urllib.request.Request(  # noqa: S310 - loopback only
        f"{app_url}/admin/shops", headers={"Authorization": f"Bearer {admin_token}"}
    )
    deadline = time.monotonic() + ONBOARDING_PATIENCE_SECONDS
    while True:
        with urllib.request.urlopen(request, timeout=10) as answer:  # noqa: S310 - loopback
            shops = {s["shop"]: s for s in json.loads(answer.read())["shops"]}
        record = (shops.get(shop) or {}).get("onboarding") or {}
        state = record.get("state", "queued")
        if state != "queued" or time.monotonic() > deadline:
            ready = "true" if record.get("ready") else "false"
            asked = f"externalHandle: {record.get('handle')}, ready: {ready}"
            errors = "; ".join(e["message"] for e in record.get("user_errors", []))
            detail = errors or record.get("last_error") or ""
            return f"{shop}: paymentsAppConfigure({asked}) {state}" + (
                f" ({detail})" if detail and state != "configured" else ""
            )
        time.sleep(0.5)


@dataclass(frozen=True)
class DevLogins:
    """How to log in to the dashboard and Flower, as printed at start."""

    admin: str
    flower: str


def _dev_logins(settings: Settings, env: dict[str, str]) -> DevLogins:
    """Give the dashboard and Flower credentials: the operator's own, or fresh ones.

    Fresh ones are made per run and only printed: nothing that opens the dashboard is written
    down. Flower gets basic auth even on localhost, since it can revoke tasks and resize pools.
    """
    if settings.admin_token is not None:
        admin = "admin token: your PAYHOOK_ADMIN_TOKEN"
    else:
        env["PAYHOOK_ADMIN_TOKEN"] = secrets.token_urlsafe(24)
        admin = f"admin token for this run: {env['PAYHOOK_ADMIN_TOKEN']}"
    if settings.flower_basic_auth is not None:
        flower = "users of your PAYHOOK_FLOWER_BASIC_AUTH"
    else:
        password = secrets.token_urlsafe(18)
        env["PAYHOOK_FLOWER_BASIC_AUTH"] = f"{DEV_FLOWER_USER}:{password}"
        flower = f"user {DEV_FLOWER_USER}, password for this run: {password}"
    return DevLogins(admin, flower)


def _dev_token_key(state: Path) -> str:
    """A key for the shop tokens of this state dir, made on first use; only dev reads it.

    The file sits beside the Redis data it protects, which is good enough for a development
    machine only: production sets PAYHOOK_TOKEN_KEYS from its own secret store.
    """
    path = state / "token-key"
    if not path.exists():
        from cryptography.fernet import Fernet

        state.mkdir(parents=True, exist_ok=True)
        descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(descriptor, "w") as sink:
            sink.write(Fernet.generate_key().decode())
    return path.read_text().strip()


def _start_psp(name: str, port: int, env: dict[str, str], logs: Path) -> Child:
    """Start connector `name`'s fake and point the web server and worker (`env`) at it."""
    from sandbox.psp import connector_environment

    base = f"http://127.0.0.1:{port}"
    child = _start("psp", ["psp-sandbox", name, "--port", str(port)], env, logs)
    _wait_http(f"{base}/_sandbox/calls", child)
    env.update(connector_environment(name, base, DEV_PSP_TOKEN))
    print(f"● psp        {base} ({name} sandbox; orders it has not seen are opened on demand)")
    return child


def _how_to_send(app_url: str, sandbox_base: str) -> str:
    return f"""
Send a capture session (the sandbox must know its gid, as Shopify would):

  curl -s -XPOST {sandbox_base}/_sandbox/sessions -H 'Content-Type: application/json' \\
       -d '{{"gids": ["gid://shopify/CaptureSession/demo-1"]}}'
  curl -si -XPOST {app_url}/capture_sessions -H 'Content-Type: application/json' \\
       -H 'Shopify-Shop-Domain: payhook-dev.myshopify.com' -H 'Shopify-Request-Id: r-1' \\
       -H 'Shopify-Api-Version: 2025-10' \\
       -d '{{"id": "demo-1", "gid": "gid://shopify/CaptureSession/demo-1",
            "payment_id": "pay-1", "amount": "10.00", "currency": "EUR",
            "merchant_locale": "en", "proposed_at": "2026-01-01T00:00:00Z"}}'
  payhook sessions show demo-1
  curl -s {sandbox_base}/_sandbox/calls

A payment session answers a redirect_url: open it in a browser, pay, and the simulator's page
sends you back through {app_url}/payments/<id>/return to the sandbox Shopify's thank-you page.

Have Shopify send a webhook (signed; also shop/redact, customers/redact, customers/data_request):

  curl -s -XPOST {sandbox_base}/_sandbox/webhooks -H 'Content-Type: application/json' \
       -d '{{"topic": "app/uninstalled", "shop": "payhook-dev.myshopify.com", "wait": true}}'
  payhook webhooks list
  payhook shops add payhook-dev.myshopify.com   # installs it again

Amounts ending in .51 are declined, .52 expired, .53 fail three times then settle;
a payment of .57 left pending waits for the merchant (MERCHANT_ACTION_REQUIRED).
"""


async def serve_sandbox(
    port: int,
    callback_secret: str | None,
    apps: dict[str, str] | None = None,
    *,
    confirmation_callback_url: str | None = None,
    webhook_secret: str | None = None,
    app_url: str | None = None,
    api_version: str,
) -> None:
    """Run the Shopify sandbox peer until the process is stopped; its buyer page signs
    callbacks with `callback_secret`, `apps` (API key → secret) may be installed, its
    confirmation requests go to `confirmation_callback_url`, Shopify's webhooks to
    `app_url` are signed with `webhook_secret`, and it serves the schema of `api_version`
    (`UnknownApiVersion` when it has none)."""
    from sandbox.shopify import start_shopify_sandbox

    running = await start_shopify_sandbox(
        "127.0.0.1",
        port,
        callback_secret=callback_secret,
        apps=apps,
        confirmation_callback_url=confirmation_callback_url,
        webhook_secret=webhook_secret,
        app_url=app_url,
        api_version=api_version,
    )
    try:
        await asyncio.Event().wait()
    finally:
        await running.close()


async def serve_psp_sandbox(
    name: str, port: int, *, latency: float = 0.0, read_latency: float = 0.0
) -> None:
    """Run PSP fake `name` until the process is stopped; money calls answer `latency` s late,
    reads `read_latency` s late."""
    from sandbox.psp import start_psp_fake

    running = await start_psp_fake(
        name, "127.0.0.1", port, open_orders=True, latency=latency, read_latency=read_latency
    )
    try:
        await asyncio.Event().wait()
    finally:
        await running.close()
