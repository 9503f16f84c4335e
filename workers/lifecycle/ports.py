"""The ports of a session run: what the executor (`workers.lifecycle.runner`) is given, and
what each session kind provides. Below the runner and the per-kind modules alike, so neither
imports the other for them; the types they name are only annotations here.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol

from config.tracing import NO_TRACER, Tracer
from workers.lifecycle.observer import NoObserver, RunObserver

if TYPE_CHECKING:
    from sessions.change import LedgerOperation
    from sessions.claims import Claims
    from sessions.ledger_store import LedgerStore
    from sessions.models import Kind, Session
    from workers.connectors.base import Connector, Operation, Result, StatusResult
    from workers.lifecycle.moves import Policy
    from workers.shopify.gateway import ShopifyGateway
    from workers.shopify.mutations import Mutation


class KindLifecycle(Protocol):
    """What differs between session kinds: the PSP call and the mutation that reports it."""

    kind: Kind

    def ledger_operation(self, session: Session) -> LedgerOperation | None:
        """What the session does to its payment's ledger book, if anything."""
        ...

    async def prepare(self, services: Services, session: Session) -> Operation | Result:
        """Everything that must be stored before the PSP is asked (the ledger reservation),
        and the operation to ask for; or the session's result without asking."""
        ...

    async def send(self, services: Services, operation: Operation) -> Result: ...

    async def status(self, services: Services, session: Session) -> StatusResult: ...

    async def before_report(self, services: Services, session: Session) -> None:
        """Bookkeeping that must be in place before Shopify hears the outcome."""
        ...

    def report(self, services: Services, session: Session) -> Mutation: ...


@dataclass(frozen=True)
class Services:
    claims: Claims
    connector: Connector
    gateway: ShopifyGateway
    ledger: LedgerStore
    policy: Policy
    clock: Callable[[], float]
    # The longest one run may take (every PSP call of a step plus the Shopify call); past it
    # the run is abandoned and the session comes back through the due set.
    step_timeout: float = 120.0
    # Payment sessions: how long the buyer has on the PSP's page before the session is
    # declined; whether an approved one is `paymentSessionConfirm`ed before it is resolved.
    buyer_window_seconds: float = 3600.0
    payment_confirmation: bool = False
    observer: RunObserver = field(default_factory=NoObserver)
    tracer: Tracer = NO_TRACER
