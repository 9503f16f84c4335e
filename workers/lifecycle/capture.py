"""Capture sessions: capture the authorized amount, then resolve or reject the session."""

from __future__ import annotations

from sessions.models import Kind, Outcome, Session
from workers.connectors.base import Connector, Operation, Result, StatusResult
from workers.shopify import mutations
from workers.shopify.mutations import Mutation


class CaptureLifecycle:
    kind = Kind.CAPTURE

    async def settle(self, connector: Connector, session: Session) -> Result:
        return await connector.capture(_operation(session))

    async def status(self, connector: Connector, session: Session) -> StatusResult:
        return await connector.status("capture", _operation(session))

    def report(self, session: Session) -> Mutation:
        if session.outcome is Outcome.APPROVED:
            return mutations.resolve("capture", session.gid)
        return mutations.reject(
            "capture",
            session.gid,
            session.reject_code or "PROCESSING_ERROR",
            session.merchant_message or "The capture was declined by the payment provider.",
        )


def _operation(session: Session) -> Operation:
    return Operation(
        session_id=session.id,
        payment_id=session.payment_id,
        amount=session.amount,
        currency=session.currency,
        test=session.test,
    )
