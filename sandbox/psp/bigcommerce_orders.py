"""One BigCommerce order as the fake keeps it: payment status, transactions, refunds.

Capture and void are asynchronous, as documented: accepting one sets `payment_status` to
`capture pending` / `void pending`; the payment request "runs" after the order has been
read `settle_after_reads` more times, then the status becomes final (`captured`, `void`,
or `declined` for a capture of a magic amount).
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from sandbox.psp.common import magic

GATEWAY = "braintree"
_ids = itertools.count(1)


def _number(amount: Decimal) -> float:
    return float(amount)  # BigCommerce's JSON carries decimal numbers


def _error(status: int, title: str) -> tuple[int, Any, bool]:
    return status, {"status": status, "title": title, "type": "about:blank", "errors": {}}, False


@dataclass
class BcOrder:
    id: int
    total: Decimal
    currency: str = "EUR"
    payment_status: str = "authorized"
    transactions: list[dict[str, Any]] = field(default_factory=list)
    refunds: list[dict[str, Any]] = field(default_factory=list)
    pending: tuple[str, int] | None = None  # (action, reads left)
    settle_after_reads: int = 1

    def __post_init__(self) -> None:
        self._transaction("authorization", self.total)

    def _transaction(self, event: str, amount: Decimal, status: str = "ok") -> None:
        self.transactions.append(
            {
                "id": next(_ids),
                "order_id": self.id,
                "event": event,
                "method": "credit_card",
                "amount": _number(amount),
                "currency": self.currency,
                "gateway": GATEWAY,
                "status": status,
                "test": True,
                "date_created": datetime.now(UTC).isoformat(),
            }
        )

    def v2_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "status": "Awaiting Fulfillment",
            "payment_status": self.payment_status,
            "payment_provider_id": GATEWAY,
            "total_inc_tax": f"{self.total:.2f}",
            "currency_code": self.currency,
        }

    def read(self) -> dict[str, Any]:
        """The order as GET /v2/orders shows it; each read brings a pending action closer."""
        shown = self.v2_json()
        if self.pending is not None:
            action, left = self.pending
            self.pending = (action, left - 1) if left > 1 else None
            if self.pending is None:
                self._settle(action)
        return shown

    def _settle(self, action: str) -> None:
        if action == "capture":
            declined = magic(int(self.total * 100)) is not None
            self.payment_status = "declined" if declined else "captured"
            self._transaction("capture", self.total, "error" if declined else "ok")
        else:
            self.payment_status = "void"
            self._transaction("void", self.total)

    def act(self, action: str) -> tuple[int, Any, bool]:
        if self.payment_status != "authorized":
            return _error(422, f"The {action} action is not available for this order.")
        self.payment_status = f"{action} pending"
        self.pending = (action, self.settle_after_reads)
        if self.settle_after_reads == 0:
            self.pending = None
            self._settle(action)
        return 201, {}, True

    @property
    def refundable(self) -> Decimal:
        captured = self.total if self.payment_status in _CAPTURED else Decimal(0)
        refunded = sum(
            (Decimal(str(r["total_amount"])) for r in self.refunds if not _declined(r)),
            Decimal(0),
        )
        return captured - refunded

    def quote(self, items: list[dict[str, Any]]) -> tuple[int, Any, bool]:
        total = sum((Decimal(str(i.get("amount", 0))) for i in items), Decimal(0))
        if total <= 0 or total > self.refundable:
            return _error(422, "The refund amount exceeds the refundable amount.")
        online = {"provider_id": GATEWAY, "provider_description": "Braintree", "offline": False}
        credit = {"provider_id": "storecredit", "provider_description": "Store credit"}
        methods = [
            [{**online, "amount": _number(total), "offline_provider": False, "offline_reason": ""}],
            [{**credit, "amount": _number(total), "offline": True, "offline_provider": True}],
        ]
        data = {
            "order_id": self.id,
            "total_refund_amount": _number(total),
            "total_refund_tax_amount": 0,
            "rounding": 0,
            "adjustment": 0,
            "tax_inclusive": True,
            "refund_methods": methods,
        }
        return 201, {"data": data, "meta": {}}, False

    def refund(
        self, items: list[dict[str, Any]], payments: list[dict[str, Any]]
    ) -> tuple[int, Any, bool]:
        total = sum((Decimal(str(i.get("amount", 0))) for i in items), Decimal(0))
        paid = sum((Decimal(str(p.get("amount", 0))) for p in payments), Decimal(0))
        if total <= 0 or paid != total or total > self.refundable:
            return _error(422, "The refund does not match the refundable amount.")
        declined = magic(int(total * 100)) is not None
        refund = {
            "id": next(_ids),
            "order_id": self.id,
            "user_id": 0,
            "created": datetime.now(UTC).isoformat(),
            "reason": str(items[0].get("reason", "")),
            "total_amount": _number(total),
            "total_tax": 0,
            "uses_merchant_override_values": False,
            "items": [
                {
                    "item_type": i.get("item_type"),
                    "item_id": i.get("item_id"),
                    "quantity": i.get("quantity", 0),
                    "requested_amount": i.get("amount"),
                    "reason": i.get("reason", ""),
                }
                for i in items
            ],
            "payments": [
                {
                    "id": next(_ids),
                    "provider_id": p.get("provider_id"),
                    "amount": p.get("amount"),
                    "offline": bool(p.get("offline")),
                    "is_declined": declined,
                    "declined_message": "The card issuer declined the refund." if declined else "",
                }
                for p in payments
            ],
        }
        self.refunds.append(refund)
        if not declined:
            self._transaction("refund", total)
            self.payment_status = "refunded" if self.refundable == 0 else "partially refunded"
        return 201, {"data": refund, "meta": {}}, not declined


_CAPTURED = ("captured", "partially refunded", "refunded")


def _declined(refund: dict[str, Any]) -> bool:
    return any(p.get("is_declined") for p in refund.get("payments", []))
