"""Helpers of the fleet tests: a replicated Redis watched by three sentinels, payhook's web,
worker and beat processes pointed at the sentinels, and a PSP fake in a process of its own."""

from __future__ import annotations

import contextlib
import os
import signal
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from redis import Redis as SyncRedis

from config.settings import child_environment
from ops.redis_server import LocalRedis, LocalSentinel, free_port
from sandbox.shopify import RunningShopifySandbox
from tests.integration.conftest import ADMIN_TOKEN, TOKEN, WorkerProcess
from tests.integration.faults_support import FAST, kill_group

MASTER = "payhook"


@dataclass
class ReplicatedRedis:
    """A primary, one replica and three sentinels (quorum 2) on 127.0.0.1."""

    directory: Path
    primary: LocalRedis = field(init=False)
    replica: LocalRedis = field(init=False)
    sentinels: list[LocalSentinel] = field(default_factory=list)

    def start(self) -> ReplicatedRedis:
        self.primary = LocalRedis(self.directory / "a", appendfsync="always").start()
        self.replica = LocalRedis(
            self.directory / "b", appendfsync="always", replica_of=self.primary.port
        ).start()
        for index in range(3):
            sentinel = LocalSentinel(self.directory / f"sentinel-{index}", self.primary.port)
            self.sentinels.append(sentinel.start())
        self.wait_for_topology(self.primary.port, replicas=1)
        return self

    @property
    def sentinel_list(self) -> str:
        return ",".join(sentinel.address for sentinel in self.sentinels)

    def ask(self, sentinel: LocalSentinel) -> dict[str, Any]:
        client = SyncRedis(host="127.0.0.1", port=sentinel.port, socket_timeout=1)
        try:
            answer: dict[str, Any] = client.sentinel_master(MASTER)
            return answer
        finally:
            client.close()

    def primary_port(self) -> int | None:
        """The primary's port as a majority of the sentinels name it."""
        named = []
        for sentinel in self.sentinels:
            try:
                named.append(int(self.ask(sentinel)["port"]))
            except Exception:  # a sentinel that does not answer names nobody
                continue
        best = max(set(named), key=named.count) if named else None
        return best if best is not None and named.count(best) >= 2 else None

    def wait_for_topology(self, primary_port: int, *, replicas: int, timeout: float = 30) -> None:
        """Until every sentinel names `primary_port`, sees `replicas` replicas and the two
        other sentinels: a failover needs all of that known beforehand."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                answers = [self.ask(sentinel) for sentinel in self.sentinels]
            except Exception:  # not up yet
                answers = []
            if answers and all(
                int(a["port"]) == primary_port
                and int(a["num-slaves"]) >= replicas
                and int(a["num-other-sentinels"]) == 2
                for a in answers
            ):
                return
            time.sleep(0.2)
        raise AssertionError(f"the sentinels never agreed on 127.0.0.1:{primary_port}")

    @contextlib.contextmanager
    def replica_behind(self) -> Iterator[None]:
        """The replica stops and its link to the primary is cut: what the primary writes
        meanwhile never reaches it. The tail a primary that dies with a lagging replica
        takes with it; the replica resumes on leaving."""
        assert self.replica.process is not None
        pid = self.replica.process.pid
        os.kill(pid, signal.SIGSTOP)
        try:
            client = SyncRedis(host="127.0.0.1", port=self.primary.port, socket_timeout=1)
            try:
                client.client_kill_filter(_type="replica")
            finally:
                client.close()
            yield
        finally:
            os.kill(pid, signal.SIGCONT)

    def stop(self) -> None:
        for sentinel in self.sentinels:
            sentinel.stop()
        for server in (self.primary, self.replica):
            server.stop(kill=True)


def fleet_environment(
    redis: ReplicatedRedis,
    sandbox: RunningShopifySandbox,
    state_dir: Path,
    **overrides: str,
) -> dict[str, str]:
    """What each host of the fleet is given: the sentinels, never a Redis address."""
    return child_environment(
        {
            **FAST,
            "PAYHOOK_REDIS_SENTINELS": redis.sentinel_list,
            "PAYHOOK_REDIS_SENTINEL_MASTER": MASTER,
            "PAYHOOK_REDIS_MIN_REPLICAS": "1",
            "PAYHOOK_REDIS_REPLICA_TIMEOUT_SECONDS": "0.5",
            "PAYHOOK_SHOPIFY_GRAPHQL_URL": sandbox.graphql_url_template,
            "PAYHOOK_SHOPIFY_ACCESS_TOKEN": TOKEN,
            # The web processes' readiness detail is the admin token's to read.
            "PAYHOOK_ADMIN_TOKEN": ADMIN_TOKEN,
            "PAYHOOK_STATE_DIR": str(state_dir),
            "PAYHOOK_LOG_LEVEL": "INFO",
            **overrides,
        }
    )


@dataclass
class Processes:
    """payhook's processes of one test; each leads its own process group, killed at the end."""

    directory: Path
    started: list[WorkerProcess] = field(default_factory=list)

    def start(self, command: list[str], env: dict[str, str], name: str) -> WorkerProcess:
        log = self.directory / f"{name}.log"
        process = WorkerProcess.start(command, env, log, ready_marker=None)
        self.started.append(process)
        return process

    def worker(self, env: dict[str, str], name: str) -> WorkerProcess:
        process = self.start(["worker"], env, name)
        process.wait_for("ready", timeout=45)
        return process

    def beat(self, env: dict[str, str], name: str = "beat") -> WorkerProcess:
        process = self.start(["beat"], env, name)
        process.wait_for("beat: Starting", timeout=45)
        return process

    def web(self, env: dict[str, str], name: str) -> str:
        """`payhook serve` on a free port; returns its URL once `/healthz` answers."""
        port = free_port()
        process = self.start(["serve"], {**env, "PAYHOOK_PORT": str(port)}, name)
        url = f"http://127.0.0.1:{port}"
        _wait_until_answered(process, f"{url}/healthz", name)
        return url

    def psp(
        self, name: str, port: int, env: dict[str, str], *, latency: float, read_latency: float
    ) -> None:
        """Connector `name`'s sandbox fake (`payhook psp-sandbox`) on `port`, in a process of
        its own: its books are in its memory, out of reach of anything done to Redis."""
        command = ["psp-sandbox", name, "--port", str(port), "--latency", str(latency)]
        command += ["--read-latency", str(read_latency)]
        process = self.start(command, env, f"psp-{name}")
        _wait_until_answered(process, f"http://127.0.0.1:{port}/_sandbox/charges", name)

    def stop_all(self) -> None:
        for process in self.started:
            kill_group(process)

    def logs(self) -> Iterator[tuple[str, str]]:
        for process in self.started:
            yield process.log.name, process.log.read_text(errors="replace")


def _wait_until_answered(process: WorkerProcess, url: str, name: str) -> None:
    deadline = time.monotonic() + 45
    while time.monotonic() < deadline:
        if process.process.poll() is not None:
            raise RuntimeError(process.log.read_text()[-3000:])
        try:
            with urllib.request.urlopen(url, timeout=1):
                return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError(f"{name} never answered {url}")
