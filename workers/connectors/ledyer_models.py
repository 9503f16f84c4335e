"""Ledyer's order, as `GET /v1/orders/{orderId}` and every order-management call return it.

Only the fields payhook reads are modelled; the rest is ignored. Amounts are integer minor
units (`minorUnits`, `totalAmount`), as Ledyer sends them.
"""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, ConfigDict, Field
from pydantic.alias_generators import to_camel


class _Model(BaseModel):
    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="ignore")


class Amount(_Model):
    currency: str
    minor_units: int


class OrderLine(_Model):
    id: str | None = None
    description: str = ""
    quantity: int = 1
    reference: str = ""
    total_amount: int
    total_vat_amount: int = 0
    type: str = "physical"
    unit_discount_amount: int = 0
    unit_price: int
    vat: int = 0

    def request_line(self, *, keep_id: bool) -> dict[str, object]:
        """The line as a capture (with its id) or refund (without) request carries it."""
        line = self.model_dump(by_alias=True, exclude={"id"})
        if keep_id and self.id is not None:
            line["id"] = self.id
        return line


class Action(_Model):
    type: str


class Chunk(_Model):
    """A sub-order: the uncaptured part, one capture, or one refund (credit invoice)."""

    ledger_id: str = ""
    # Free text kept with the sub-order; a refund's names its Shopify session.
    note: str = ""
    available_actions: list[Action] = Field(default_factory=list)
    order_lines: list[OrderLine] = Field(default_factory=list)
    total_order_amount: Amount | None = None

    @property
    def actions(self) -> set[str]:
        return {action.type for action in self.available_actions}

    @property
    def total(self) -> int:
        if self.total_order_amount is not None:
            return self.total_order_amount.minor_units
        return sum(line.total_amount for line in self.order_lines)


class Event(_Model):
    type: str
    ledger_id: str = ""


class Order(_Model):
    id: str
    status: list[str] = Field(default_factory=list)
    order_amount: Amount
    uncaptured: Chunk | None = None
    uncaptured_amount: Amount | None = None
    captured: list[Chunk] = Field(default_factory=list)
    captured_amount: Amount | None = None
    refunded: list[Chunk] = Field(default_factory=list)
    refunded_amount: Amount | None = None
    expires_at: datetime | None = None
    events: list[Event] = Field(default_factory=list)

    @property
    def currency(self) -> str:
        return self.order_amount.currency

    @property
    def uncaptured_minor(self) -> int:
        if self.uncaptured_amount is not None:
            return self.uncaptured_amount.minor_units
        return self.uncaptured.total if self.uncaptured is not None else 0

    def chunks(self, kind: str) -> list[Chunk]:
        """The chunks a `kind` of operation creates: captures, refunds; a void creates none."""
        return {"capture": self.captured, "refund": self.refunded}.get(kind, [])
