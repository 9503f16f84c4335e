"""The alert rules (docs/alerts.yml): valid for Prometheus, right on their unit-test series
(docs/alerts_test.yml), and written against metrics payhook really exports."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml
from prometheus_client.metrics_core import Metric

from webhook.metrics import WebMetrics
from workers.metrics import WorkerMetrics

DOCS = Path(__file__).resolve().parents[1] / "docs"
PROMTOOL = shutil.which("promtool")
needs_promtool = pytest.mark.skipif(
    PROMTOOL is None,
    reason="promtool not installed: `make setup` installs Debian's prometheus package as root",
)


def promtool(*args: str) -> subprocess.CompletedProcess[str]:
    assert PROMTOOL is not None
    return subprocess.run(
        [PROMTOOL, *args], cwd=DOCS, capture_output=True, text=True, timeout=120, check=False
    )


@needs_promtool
def test_the_rules_are_valid_prometheus_rules() -> None:
    checked = promtool("check", "rules", "alerts.yml")
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert "SUCCESS: 10 rules found" in checked.stdout


@needs_promtool
def test_the_rules_fire_on_their_unit_test_series_and_only_then() -> None:
    tested = promtool("test", "rules", "alerts_test.yml")
    assert tested.returncode == 0, tested.stdout + tested.stderr


def _exported(family: Metric) -> set[str]:
    suffixes = {"counter": ["_total"], "histogram": ["_count", "_sum", "_bucket"]}
    return {family.name, *(family.name + s for s in suffixes.get(family.type, []))}


def test_every_metric_an_alert_reads_is_exported() -> None:
    names: set[str] = set()
    for registry in (WebMetrics().registry, WorkerMetrics("simulator").registry):
        for family in registry.collect():
            names |= _exported(family)
    rules = yaml.safe_load((DOCS / "alerts.yml").read_text())["groups"][0]["rules"]
    used = {name for rule in rules for name in re.findall(r"payhook_[a-z_]+", rule["expr"])}
    assert used, "no payhook metric in the rules"
    assert used <= names, sorted(used - names)
