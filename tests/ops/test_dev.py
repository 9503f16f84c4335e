"""`payhook dev --demo N --exit`, the README's first command, run as a user would."""

from __future__ import annotations

import base64
import contextlib
import json
import re
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import psutil
import pytest

from config.settings import child_environment
from ops.redis_server import free_port
from tests.ops.dev_support import ROOT, start_dev, wait_running


@pytest.mark.integration
def test_dev_mode_runs_all_four_session_kinds_through_to_shopify(tmp_path: Path) -> None:
    metrics_port, operator_port = free_port(), free_port()
    env = child_environment(
        {
            "PAYHOOK_WORKER_METRICS_PORT": str(metrics_port),
            "PAYHOOK_OPERATOR_PORT": str(operator_port),
            "PAYHOOK_STATE_DIR": str(tmp_path / "state"),
            "PAYHOOK_REDIS_URL": f"redis://127.0.0.1:{free_port()}/0",
            "PAYHOOK_PORT": str(free_port()),
        }
    )
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "ops",
            "dev",
            "--demo",
            "20",
            "--exit",
            "--sandbox-port",
            str(free_port()),
            "--flower-port",
            str(free_port()),
        ],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    summary = re.search(
        r"20 orders, (\d+) sessions reported to Shopify in .*: (.*)$", done.stdout, re.MULTILINE
    )
    assert summary is not None, done.stdout[-2000:]
    reported = {name: int(n) for n, name in re.findall(r"(\d+) (\w+)", summary[2])}
    # 20 payments; orders 9 and 19 voided; 6 and 13 over-capture; 1, 5 and 17 refunded.
    assert reported == {
        "paymentSessionResolve": 20,
        "voidSessionResolve": 2,
        "captureSessionResolve": 16,
        "captureSessionReject": 2,
        "refundSessionResolve": 3,
    }
    assert int(summary[1]) == 43
    # Each buyer paid on the PSP's page and was sent back, through payhook, to Shopify.
    assert "20 of 20 buyers back on Shopify's thank-you page after paying" in done.stdout
    # The demo shop was installed through OAuth, not given a token: its sessions were
    # reported with the one the sandbox issued, and it was onboarded before they came.
    assert re.search(
        r"● install +payhook-dev\.myshopify\.com through OAuth \(scopes "
        r"write_payment_gateways,write_payment_sessions\); its offline token is stored encrypted",
        done.stdout,
    ), done.stdout[-3000:]
    assert (
        "● onboarding payhook-dev.myshopify.com: paymentsAppConfigure(externalHandle: "
        "payhook-dev.myshopify.com, ready: true) configured"
    ) in done.stdout
    assert "● web" in done.stdout
    assert f"● operator   http://127.0.0.1:{operator_port} (/metrics" in done.stdout
    assert "● sandbox" in done.stdout
    assert "● dashboard" in done.stdout
    assert "● flower" in done.stdout
    logs = tmp_path / "state" / "logs"
    assert {p.name for p in logs.iterdir()} >= {
        "web.log",
        "worker.log",
        "beat.log",
        "sandbox.log",
        "flower.log",
    }
    assert f"worker metrics on :{metrics_port}/metrics" in done.stdout
    served = [line for line in (logs / "worker.log").read_text().splitlines() if "metrics" in line]
    assert any('"metrics served"' in line and str(metrics_port) in line for line in served), served
    # Shop tokens in dev are encrypted under a key of dev's own, readable by its owner alone.
    assert (tmp_path / "state" / "token-key").stat().st_mode & 0o777 == 0o600


def _get(url: str, headers: dict[str, str]) -> tuple[int, str]:
    request = urllib.request.Request(url, headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=10) as answer:
            return int(answer.status), answer.read().decode()
    except urllib.error.HTTPError as refused:
        return refused.code, ""


@pytest.mark.integration
def test_dev_mode_shows_live_sessions_on_the_dashboard_and_flower_behind_its_login(
    tmp_path: Path,
) -> None:
    app_port, flower_port = free_port(), free_port()
    sandbox_port = free_port()
    dev, output = start_dev(
        tmp_path, demo=3, app_port=app_port, flower_port=flower_port, sandbox_port=sandbox_port
    )
    try:
        deadline = wait_running(dev, output)
        printed = output.read_text()
        dashboard = re.search(r"● dashboard +(\S+) \(admin token for this run: (\S+)\)", printed)
        flower = re.search(r"● flower +(\S+) \(user (\S+), password for this run: (\S+)\)", printed)
        assert dashboard is not None, printed
        assert flower is not None, printed
        assert dashboard[1] == f"http://127.0.0.1:{app_port}/admin"
        bearer = {"Authorization": f"Bearer {dashboard[2]}"}
        status, page = _get(f"{dashboard[1]}/dashboard/sessions?state=reported", bearer)
        assert status == 200
        # The demo's payments and captures, listed as they were reported.
        assert page.count("state-reported") >= 6
        # The demo shop's life: installed through OAuth once, then ready at Shopify.
        _, shops = _get(f"{dashboard[1]}/shops", bearer)
        [shop] = json.loads(shops)["shops"]
        assert (shop["shop"], shop["token"]) == ("payhook-dev.myshopify.com", "encrypted")
        assert (shop["onboarding"]["state"], shop["onboarding"]["accepted_ready"]) == (
            "configured",
            True,
        )
        sandbox = f"http://127.0.0.1:{sandbox_port}"
        exchanges = json.loads(_get(f"{sandbox}/_sandbox/installs", {})[1])["exchanges"]
        assert [(e["shop"], e["status"]) for e in exchanges] == [("payhook-dev.myshopify.com", 200)]
        configured = _get(f"{sandbox}/_sandbox/calls?mutation=paymentsAppConfigure", {})[1]
        assert [c["applied"] for c in json.loads(configured)["calls"]] == [True]
        # Without a login, urllib follows the redirect to the form.
        assert "Admin token" in _get(f"{dashboard[1]}/dashboard/sessions", {})[1]
        assert flower[1] == f"http://127.0.0.1:{flower_port}"
        assert _get(f"{flower[1]}/api/workers", {})[0] == 401
        user = base64.b64encode(f"{flower[2]}:{flower[3]}".encode()).decode()
        basic = {"Authorization": f"Basic {user}"}
        while "payhook@" not in _get(f"{flower[1]}/api/workers?refresh=1", basic)[1]:
            assert time.monotonic() < deadline, "Flower never saw the worker"
            time.sleep(0.5)
        # Credentials made for the run are printed, never stored with the state.
        state = (tmp_path / "state").rglob("*")
        assert not any(dashboard[2].encode() in p.read_bytes() for p in state if p.is_file())
    finally:
        dev.send_signal(signal.SIGINT)
        dev.wait(timeout=60)


@pytest.mark.integration
@pytest.mark.parametrize("stop", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_a_stop_signal_to_payhook_dev_stops_every_process_it_started(
    tmp_path: Path, stop: signal.Signals
) -> None:
    # As a shell's background job starts it: SIGINT ignored on the way in.
    dev, output = start_dev(
        tmp_path, demo=0, preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_IGN)
    )
    started: list[psutil.Process] = []
    try:
        wait_running(dev, output)
        started = psutil.Process(dev.pid).children(recursive=True)
        assert {"redis-server", "sandbox", "serve", "worker", "beat", "flower"} <= {
            word for child in started for word in [*child.cmdline()[-3:], child.name()]
        }
        dev.send_signal(stop)
        assert dev.wait(timeout=40) == 0, output.read_text()[-3000:]
        _, alive = psutil.wait_procs(started, timeout=5)
        assert not alive, [p.cmdline() for p in alive]
    finally:
        if dev.poll() is None:
            dev.kill()
        # Only what payhook dev started: the run's own redis-server and sandbox live on.
        for child in started:
            with contextlib.suppress(psutil.NoSuchProcess):
                child.kill()
