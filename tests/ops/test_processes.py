"""`payhook serve`, `worker` and `beat` refuse to start with a broker that is not the session
Redis: intake writes every task message into the session Redis in the same Lua call that
stores the session, so workers reading another broker would never see one. Each runs as a
real process; one that started instead of refusing is stopped after a few seconds."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from config.settings import child_environment

ROOT = Path(__file__).resolve().parents[2]
# Long enough for the interpreter and the imports; a process still running has started.
STARTED_AFTER_SECONDS = 20


@pytest.mark.parametrize("command", ["serve", "worker", "beat"])
def test_a_broker_other_than_the_session_redis_stops_the_process_with_the_reason(
    command: str, tmp_path: Path
) -> None:
    env = child_environment(
        {
            # Nothing listens on either: a process that did start can do nothing there.
            "PAYHOOK_REDIS_URL": "redis://127.0.0.1:1/0",
            "PAYHOOK_BROKER_URL": "redis://127.0.0.1:1/1",
            "PAYHOOK_PORT": "0",
            "PAYHOOK_STATE_DIR": str(tmp_path),
        }
    )
    process = subprocess.Popen(
        [sys.executable, "-m", "ops", command],
        cwd=tmp_path,
        env={**env, "PYTHONPATH": str(ROOT)},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        start_new_session=True,
    )
    try:
        _, err = process.communicate(timeout=STARTED_AFTER_SECONDS)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.communicate()
        pytest.fail(f"payhook {command} started with a broker that is not the session Redis")
    assert process.returncode != 0
    message = err.decode()
    assert f"payhook {command}: PAYHOOK_BROKER_URL" in message
    assert "is not the session Redis" in message
