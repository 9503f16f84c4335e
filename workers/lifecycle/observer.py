"""What a run tells whoever watches it (the worker's metrics): a port, so the runner stays
free of any metrics library and its tests can run without one."""

from __future__ import annotations

from typing import Literal, Protocol

from sessions.models import Kind
from workers.lifecycle.moves import Decision

Peer = Literal["psp", "shopify"]
LeaseEvent = Literal["kept", "failed", "lost"]


class RunObserver(Protocol):
    def run_started(self) -> None: ...

    def run_ended(self) -> None: ...

    def called(self, peer: Peer, kind: Kind, result: str, seconds: float) -> None:
        """One PSP step (`result`: what it answered) or Shopify mutation, and how long it took."""
        ...

    def decided(self, decision: Decision, cause: str | None) -> None:
        """A decision was stored; `cause` classes the answer that led to it, if any."""
        ...

    def lease(self, event: LeaseEvent) -> None: ...


class NoObserver:
    def run_started(self) -> None:
        return None

    def run_ended(self) -> None:
        return None

    def called(self, peer: Peer, kind: Kind, result: str, seconds: float) -> None:
        return None

    def decided(self, decision: Decision, cause: str | None) -> None:
        return None

    def lease(self, event: LeaseEvent) -> None:
        return None
