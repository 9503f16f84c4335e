"""Which OTEL_* variables turn traces on, and what tracing off costs: nothing imported."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from config import Settings
from config.tracing import NO_TRACER, build_tracer

OTEL = (
    "OTEL_TRACES_EXPORTER",
    "OTEL_EXPORTER_OTLP_ENDPOINT",
    "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
    "OTEL_SERVICE_NAME",
    "OTEL_SDK_DISABLED",
)


@pytest.fixture(autouse=True)
def no_otel_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in OTEL:
        monkeypatch.delenv(name, raising=False)


@pytest.mark.parametrize(
    ("environment", "exporter", "endpoint"),
    [
        ({}, None, "http://localhost:4318/v1/traces"),
        ({"OTEL_TRACES_EXPORTER": "none"}, None, "http://localhost:4318/v1/traces"),
        ({"OTEL_TRACES_EXPORTER": "console"}, "console", "http://localhost:4318/v1/traces"),
        ({"OTEL_TRACES_EXPORTER": "otlp"}, "otlp", "http://localhost:4318/v1/traces"),
        (
            {"OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4318/"},
            "otlp",
            "http://collector:4318/v1/traces",
        ),
        (
            {"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://collector:4318/traces"},
            "otlp",
            "http://collector:4318/traces",
        ),
        (
            {"OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4318", "OTEL_SDK_DISABLED": "true"},
            None,
            "http://collector:4318/v1/traces",
        ),
        (
            {"OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4318", "OTEL_TRACES_EXPORTER": "none"},
            None,
            "http://c:4318/v1/traces",
        ),
    ],
)
def test_the_standard_variables_decide_whether_and_where_spans_go(
    monkeypatch: pytest.MonkeyPatch,
    environment: dict[str, str],
    exporter: str | None,
    endpoint: str,
) -> None:
    for name, value in environment.items():
        monkeypatch.setenv(name, value)
    settings = Settings()
    assert (settings.traces_exporter, settings.otlp_traces_endpoint) == (exporter, endpoint)


def test_an_exporter_payhook_cannot_use_is_refused_at_start(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("OTEL_TRACES_EXPORTER", "zipkin")
    with pytest.raises(ValueError, match="otlp"):
        Settings()


def test_tracing_off_is_the_no_op_tracer() -> None:
    assert build_tracer(Settings(), "payhook-web") is NO_TRACER


# redis-py 8 imports OpenTelemetry's API (metrics) whenever it is installed, for its own
# opt-in metrics; what payhook must not load when traces are off is everything past that.
PAYHOOK_TRACING = (
    "config.otel",
    "opentelemetry.sdk.trace",
    "opentelemetry.instrumentation",
    "opentelemetry.exporter",
)


def test_tracing_off_loads_no_tracing_module() -> None:
    """Off, a web or worker process never loads the tracing SDK, an exporter or an
    instrumentation, so no span processor thread runs and nothing wraps the HTTP clients."""
    program = (
        "import sys\n"
        "from config import Settings\n"
        "from config.tracing import build_tracer\n"
        "import ops.processes, webhook.app, workers.tasks, workers.runtime\n"
        "from transport.celery_app import create_celery\n"
        "from transport.messages import CeleryHandoff\n"
        "from sessions.models import Kind\n"
        "settings = Settings()\n"
        "tracer = build_tracer(settings, 'payhook-worker')\n"
        "webhook.app.create_app(settings, tracer=tracer)\n"
        "CeleryHandoff(create_celery(settings), tracer).envelope(Kind.CAPTURE, 'one')\n"
        f"loaded = sorted(m for m in sys.modules if m.startswith({PAYHOOK_TRACING!r}))\n"
        "print(','.join(loaded))\n"
    )
    environment = {k: v for k, v in os.environ.items() if not k.startswith("OTEL_")}
    done = subprocess.run(
        [sys.executable, "-c", program],
        env=environment,
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    assert done.stdout.strip() == ""
