"""A Ledyer order as the fake keeps it: uncaptured lines, captures, refunds and events.

Each operation returns `(HTTP status, body, applied)`; a refusal is a 400 with
`{"message": ...}` and changes nothing. The JSON follows the order shape of Ledyer's
documentation (amount objects with `minorUnits`, sub-order chunks with `ledgerId`,
`availableActions` and `orderLines`).
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from sandbox.psp.common import magic

_ids = itertools.count(1)


def _id(prefix: str) -> str:
    return f"{prefix}_{next(_ids):08d}"


def _now() -> str:
    return datetime.now(UTC).isoformat().replace("+00:00", "Z")


@dataclass
class Line:
    total_amount: int
    reference: str = "item"
    description: str = "Item"
    quantity: int = 1
    vat: int = 2500
    type: str = "physical"
    id: str = field(default_factory=lambda: _id("ol"))

    @classmethod
    def from_json(cls, raw: dict[str, Any], *, keep_id: bool) -> Line:
        line = cls(
            total_amount=int(raw["totalAmount"]),
            reference=str(raw.get("reference", "")),
            description=str(raw.get("description", "")),
            quantity=int(raw.get("quantity", 1)),
            vat=int(raw.get("vat", 0)),
            type=str(raw.get("type", "physical")),
        )
        if keep_id and raw.get("id"):
            line.id = str(raw["id"])
        return line

    def as_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "description": self.description,
            "quantity": self.quantity,
            "reference": self.reference,
            "totalAmount": self.total_amount,
            "totalVatAmount": round(self.total_amount * self.vat / (10_000 + self.vat)),
            "type": self.type,
            "unitDiscountAmount": 0,
            "unitPrice": self.total_amount // max(self.quantity, 1),
            "vat": self.vat,
        }


@dataclass
class Chunk:
    ledger_id: str
    lines: list[Line]
    note: str = ""
    refunded: int = 0
    created_at: str = field(default_factory=_now)

    @property
    def total(self) -> int:
        return sum(line.total_amount for line in self.lines)


@dataclass
class LedyerOrder:
    id: str
    currency: str
    uncaptured: list[Line]
    captured: list[Chunk] = field(default_factory=list)
    refunded: list[Chunk] = field(default_factory=list)
    events: list[dict[str, Any]] = field(default_factory=list)
    cancelled: bool = False
    expired: bool = False
    expires_at: datetime = field(default_factory=lambda: datetime.now(UTC) + timedelta(days=14))
    uncaptured_ledger_id: str = field(default_factory=lambda: _id("in"))
    amount: int = field(init=False, default=0)

    def __post_init__(self) -> None:
        self.amount = sum(line.total_amount for line in self.uncaptured)
        self._event("create", self.amount, self.uncaptured_ledger_id)
        self._event("readyForCapture", 0, self.uncaptured_ledger_id)

    @classmethod
    def open(cls, order_id: str, currency: str = "EUR") -> LedyerOrder:
        """Dev mode: 16 lines of 0.01·2^k, so any amount up to 655.35 is a set of lines."""
        lines = [
            Line(total_amount=2**k, reference=f"unit-{2**k}", description=f"{2**k} cents")
            for k in range(16)
        ]
        return cls(id=order_id, currency=currency, uncaptured=lines)

    # -- reading ----------------------------------------------------------------------

    def _money(self, minor: int) -> dict[str, Any]:
        text = f"{minor / 100:.2f}"
        return {
            "amount": text,
            "currency": self.currency,
            "formatted": text,
            "formattedWithCurrency": f"{self.currency} {text}",
            "minorUnits": minor,
        }

    def _chunk(self, chunk: Chunk, actions: list[str]) -> dict[str, Any]:
        return {
            "availableActions": [{"type": action} for action in actions],
            "createdAt": chunk.created_at,
            "ledgerId": chunk.ledger_id,
            "note": chunk.note,
            "orderLines": [line.as_json() for line in chunk.lines],
            "status": [],
            "totalOrderAmount": self._money(chunk.total),
        }

    @property
    def open_for_changes(self) -> bool:
        return not (self.cancelled or self.expired)

    def status(self) -> list[str]:
        if self.cancelled:
            return ["cancelled"]
        states = ["expired"] if self.expired else []
        captured = sum(c.total for c in self.captured)
        left = sum(line.total_amount for line in self.uncaptured)
        if not captured:
            states.append("uncaptured")
        else:
            states.append("partiallyCaptured" if left else "fullyCaptured")
        refunded = sum(c.total for c in self.refunded)
        if refunded:
            states.append("fullyRefunded" if refunded >= captured else "partiallyRefunded")
        return states

    def as_json(self) -> dict[str, Any]:
        left = sum(line.total_amount for line in self.uncaptured)
        uncaptured = None
        if self.uncaptured:
            actions = ["capture", "partialCapture", "cancel"] if self.open_for_changes else []
            chunk = Chunk(self.uncaptured_ledger_id, self.uncaptured)
            uncaptured = self._chunk(chunk, actions)
        captured = []
        for chunk in self.captured:
            actions = []
            if chunk.total > chunk.refunded and not self.cancelled:
                actions = (["refund"] if chunk.refunded == 0 else []) + ["partialRefund"]
            captured.append(self._chunk(chunk, actions))
        return {
            "id": self.id,
            "authorizeStatus": "authorized",
            "status": self.status(),
            "orderAmount": self._money(self.amount),
            "uncaptured": uncaptured,
            "uncapturedAmount": self._money(left),
            "captured": captured,
            "capturedAmount": self._money(sum(c.total for c in self.captured)),
            "refunded": [self._chunk(chunk, []) for chunk in self.refunded],
            "refundedAmount": self._money(sum(c.total for c in self.refunded)),
            "events": list(reversed(self.events)),
            "expiresAt": self.expires_at.isoformat().replace("+00:00", "Z"),
            "paymentMethod": {"provider": "ledyer", "type": "advanceInvoice"},
        }

    def _event(self, kind: str, minor: int, ledger_id: str) -> None:
        self.events.append(
            {
                "amount": self._money(minor),
                "createdAt": _now(),
                "id": _id("oe"),
                "ledgerId": ledger_id,
                "orderId": self.id,
                "type": kind,
            }
        )

    # -- order management ---------------------------------------------------------------

    def capture(self, body: dict[str, Any], *, partial: bool) -> tuple[int, Any, bool]:
        if not self.open_for_changes or not self.uncaptured:
            return _refused("The capture action is not available on this order.")
        try:
            lines = [Line.from_json(raw, keep_id=partial) for raw in body["orderLines"]]
            total = int(body["totalCaptureAmount"])
        except (KeyError, TypeError, ValueError):
            return _refused("orderLines and totalCaptureAmount are required.")
        if total != sum(line.total_amount for line in lines) or total <= 0:
            return _refused("totalCaptureAmount must be the sum of the order lines totalAmount.")
        if magic(total) is not None:
            return _refused("Ledyer declined the capture.")
        open_ids = {line.id: line for line in self.uncaptured}
        if partial:
            taken = [line.id for line in lines if line.id in open_ids]
            if total > sum(line.total_amount for line in self.uncaptured):
                return _refused("totalCaptureAmount exceeds the uncaptured amount.")
            self.uncaptured = [line for line in self.uncaptured if line.id not in taken]
        else:
            want = sorted((line.reference, line.total_amount) for line in lines)
            have = sorted((line.reference, line.total_amount) for line in self.uncaptured)
            if want != have:
                return _refused("The order lines must match the uncaptured order lines.")
            lines, self.uncaptured = self.uncaptured, []
        chunk = Chunk(_id("in"), lines)
        self.captured.append(chunk)
        kind = "partialCapture" if self.uncaptured else "fullCapture"
        self._event(kind, total, chunk.ledger_id)
        return 200, self.as_json(), True

    def refund(
        self, ledger_id: str, body: dict[str, Any] | None, *, partial: bool
    ) -> tuple[int, Any, bool]:
        chunk = next((c for c in self.captured if c.ledger_id == ledger_id), None)
        if chunk is None or self.cancelled:
            return _refused("No captured sub-order with this ledgerId.")
        note = str((body or {}).get("note", ""))
        if not partial:
            if chunk.refunded:
                return _refused("The refund action is not available on this sub-order.")
            lines = [Line(**{**vars(line), "id": _id("ol")}) for line in chunk.lines]
        else:
            raw_lines = (body or {}).get("orderLines") or []
            if any("id" in raw for raw in raw_lines if isinstance(raw, dict)):
                return _refused("Order line id property must be excluded in a refund.")
            try:
                lines = [Line.from_json(raw, keep_id=False) for raw in raw_lines]
                total = int((body or {})["totalRefundAmount"])
            except (KeyError, TypeError, ValueError):
                return _refused("orderLines and totalRefundAmount are required.")
            if total != sum(line.total_amount for line in lines) or total <= 0:
                return _refused("totalRefundAmount must be the sum of the order lines.")
            if total > chunk.total - chunk.refunded or magic(total) is not None:
                return _refused("The refund exceeds what is left to refund on this sub-order.")
        refund = Chunk(_id("in"), lines, note=note)
        chunk.refunded += refund.total
        self.refunded.append(refund)
        self._event("partialRefund" if partial else "fullRefund", refund.total, refund.ledger_id)
        return 200, self.as_json(), True

    def cancel(self, ledger_id: str) -> tuple[int, Any, bool]:
        if ledger_id != self.uncaptured_ledger_id or not self.uncaptured or self.cancelled:
            return 404, {"message": "No cancellable sub-order with this ledgerId."}, False
        left = sum(line.total_amount for line in self.uncaptured)
        self.uncaptured = []
        self.cancelled = not self.captured
        self._event("cancel", left, ledger_id)
        return 200, self.as_json(), True


def _refused(message: str) -> tuple[int, Any, bool]:
    return 400, {"message": message}, False
