"""What capture, refund and void share: reserve on the payment's ledger, ask the PSP, then
commit or release, so no combination of sessions ever moves more money than the payment
allows.

A payment payhook has never seen is looked up at the PSP first (the PSP is the source of
truth) and its book opened from what the PSP says.
"""

from __future__ import annotations

from sessions.ledger import Book, Op, Refusal, Refused, merchant_message
from sessions.models import Kind, Outcome, Session
from sessions.money import to_minor
from workers.connectors.base import (
    Approved,
    Authorization,
    DeclineCode,
    Declined,
    NotFound,
    Operation,
    Result,
    StatusResult,
    TryAgain,
)
from workers.lifecycle.runner import Services
from workers.shopify import mutations
from workers.shopify.mutations import Mutation


def _book_from(authorization: Authorization) -> Book:
    currency = authorization.currency
    return Book(
        currency=currency,
        authorized=to_minor(authorization.authorized, currency),
        captured=to_minor(authorization.captured, currency),
        refunded=to_minor(authorization.refunded, currency),
        voided=authorization.voided,
        expires_at=authorization.expires_at.timestamp() if authorization.expires_at else None,
    )


class LedgeredLifecycle:
    def __init__(self, kind: Kind, op: Op) -> None:
        self.kind = kind
        self.op = op

    async def operation(self, services: Services, session: Session) -> Operation:
        provider_id = await services.ledger.provider_payment_id(session.payment_id)
        return Operation(
            session_id=session.id,
            payment_id=session.payment_id,
            amount=session.amount,
            currency=session.currency or "",
            test=session.test,
            provider_payment_id=provider_id or "",
        )

    async def settle(self, services: Services, session: Session) -> Result:
        ledger = services.ledger
        operation = await self.operation(services, session)
        if await ledger.get(session.payment_id) is None:
            known = await services.connector.authorization(operation)
            if isinstance(known, TryAgain):
                return known
            if isinstance(known, NotFound):
                return self._refuse(session, Refused(Refusal.UNKNOWN_PAYMENT), None)
            await ledger.open(session.payment_id, _book_from(known), known.provider_payment_id)
            operation = await self.operation(services, session)
        book = await ledger.get(session.payment_id)
        assert book is not None
        amount = 0
        if session.amount is not None and session.currency is not None:
            amount = to_minor(session.amount, session.currency)
        refused = await ledger.reserve(
            session.payment_id, session.id, self.op, amount, session.currency, services.clock()
        )
        if refused is not None:
            return self._refuse(session, refused, book.currency)
        result = await self._call(services, operation)
        await self._settle_ledger(services, session, result)
        return result

    async def status(self, services: Services, session: Session) -> StatusResult:
        operation = await self.operation(services, session)
        known = await services.connector.status(self.op.value, operation)
        if isinstance(known, Approved | Declined):
            await self._settle_ledger(services, session, known)
        return known

    async def before_report(self, services: Services, session: Session) -> None:
        return None

    def report(self, session: Session) -> Mutation:
        kind = self.kind.value
        if session.outcome is Outcome.APPROVED:
            return mutations.resolve(kind, session.gid)
        code = session.reject_code or DeclineCode.PROCESSING_ERROR.value
        if self.kind is not Kind.CAPTURE:
            # Refund and void rejections only know PROCESSING_ERROR.
            code = DeclineCode.PROCESSING_ERROR.value
        message = session.merchant_message or f"The {kind} was declined by the payment provider."
        return mutations.reject(kind, session.gid, code, message)

    async def _call(self, services: Services, operation: Operation) -> Result:
        connector = services.connector
        if self.op is Op.CAPTURE:
            return await connector.capture(operation)
        if self.op is Op.REFUND:
            return await connector.refund(operation)
        return await connector.void(operation)

    async def _settle_ledger(self, services: Services, session: Session, result: object) -> None:
        if isinstance(result, Approved):
            await services.ledger.commit(session.payment_id, session.id)
        elif isinstance(result, Declined):
            await services.ledger.release(session.payment_id, session.id)
        # Pending, ambiguous or unavailable: the reservation stays, because the money may
        # still move.

    def _refuse(self, session: Session, refused: Refused, book_currency: str | None) -> Declined:
        code = DeclineCode.PROCESSING_ERROR
        if refused.reason is Refusal.EXPIRED:
            code = DeclineCode.AUTHORIZATION_EXPIRED
        message = merchant_message(
            refused, self.op, session.amount, session.currency or "", book_currency
        )
        return Declined(code, message)
