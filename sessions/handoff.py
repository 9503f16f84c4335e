"""The handoff port: how a session is put on the workers' queue.

Every path that queues a session (intake, a PSP's verdict, a replay, the sweeper) asks a
`Handoff` for the message and has the store push it in the same atomic step as the state
change that calls for it, so a session is never queued without its state, nor its state
changed without its message. `transport.messages.CeleryHandoff` is the implementation.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from sessions.models import Kind


@dataclass(frozen=True)
class Envelope:
    """A rendered task message and the Redis list it is pushed onto."""

    queue: str
    body: str


class Handoff(Protocol):
    def envelope(self, kind: Kind, session_id: str) -> Envelope: ...


class WebhookHandoff(Protocol):
    """How a Shopify webhook is put on the workers' queue (`shops.webhook_store`)."""

    def webhook_envelope(self, webhook_id: str) -> Envelope: ...


class Handoffs(Handoff, WebhookHandoff, Protocol):
    """Both: what a worker and the web app hold (`transport.messages.CeleryHandoff`)."""
