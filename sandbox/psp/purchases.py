"""One purchase as the Purchase fake keeps it: items, captures and returns.

Captures settle items (each at most once, at its own amount or a restated lower one);
returns give back captured amounts per item. `apply` raises `PurchaseRefused(code)` for
anything the PSP would refuse, and otherwise returns the new capture or return
(`{"id", "amount"}`).
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from sandbox.psp.common import magic

_ids = itertools.count(1)
_CLOSED = {"CLOSED": "PURCHASE_CLOSED", "CANCELLED": "PURCHASE_CANCELLED"}


class PurchaseRefused(Exception):
    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


@dataclass
class Item:
    reference: str
    amount: int
    name: str = "Item"
    quantity: int = 1


@dataclass
class Movement:
    amount: int
    items: dict[str, int]  # reference → amount
    id: str = field(default_factory=lambda: f"mv_{next(_ids):06d}")

    def as_json(self) -> dict[str, Any]:
        items = [{"reference": ref, "amount": amount} for ref, amount in self.items.items()]
        return {"id": self.id, "amount": self.amount, "items": items}


@dataclass
class PurchaseRecord:
    id: str
    currency: str
    items: list[Item]
    status: str = "AUTHORIZED"
    captures: list[Movement] = field(default_factory=list)
    returns: list[Movement] = field(default_factory=list)
    expires_at: datetime = field(default_factory=lambda: datetime.now(UTC) + timedelta(days=28))

    @classmethod
    def from_json(cls, raw: dict[str, Any]) -> PurchaseRecord:
        items = [
            Item(str(i["reference"]), int(i["amount"]), str(i.get("name", "Item")))
            for i in raw.get("items") or [{"reference": "item-1", "amount": 10_000}]
        ]
        return cls(
            str(raw["id"]),
            str(raw.get("currency", "EUR")),
            items,
            str(raw.get("status", "AUTHORIZED")),
        )

    @classmethod
    def open(cls, purchase_id: str) -> PurchaseRecord:
        """Dev mode: an unknown id is a purchase of two items, 10,000.00 EUR in all."""
        items = [Item("item-1", 600_000, "First item"), Item("item-2", 400_000, "Second item")]
        return cls(purchase_id, "EUR", items)

    @property
    def amount(self) -> int:
        return sum(item.amount for item in self.items)

    def as_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "currency": self.currency,
            "amount": self.amount,
            "status": self.status,
            "expiresAt": self.expires_at.isoformat(),
            "items": [vars(item) for item in self.items],
            "captures": [m.as_json() for m in self.captures],
            "returns": [m.as_json() for m in self.returns],
        }

    def _captured(self) -> dict[str, int]:
        return {ref: amount for m in self.captures for ref, amount in m.items.items()}

    def _returnable(self) -> dict[str, int]:
        left = self._captured()
        for movement in self.returns:
            for ref, amount in movement.items.items():
                left[ref] -= amount
        return {ref: amount for ref, amount in left.items() if amount > 0}

    def apply(self, mutation: str, data: dict[str, Any]) -> dict[str, Any]:
        if self.status in _CLOSED:
            raise PurchaseRefused(_CLOSED[self.status], f"The purchase is {self.status.lower()}")
        if self.status == "EXPIRED" and mutation.startswith("newPurchaseCapture"):
            raise PurchaseRefused("PURCHASE_EXPIRED", "The authorization expired")
        wanted = self._wanted(mutation, data)
        total = sum(wanted.values())
        if mutation.startswith("newPurchaseCapture"):
            behaviour = magic(total)
            if behaviour == "decline":
                raise PurchaseRefused("CAPTURE_DECLINED", "The capture was declined")
            if behaviour == "expired":
                raise PurchaseRefused("PURCHASE_EXPIRED", "The authorization expired")
            movement = Movement(total, wanted)
            self.captures.append(movement)
            everything = set(self._captured()) == {item.reference for item in self.items}
            self.status = "CAPTURED" if everything else "PARTIALLY_CAPTURED"
        else:
            movement = Movement(total, wanted)
            self.returns.append(movement)
            if mutation == "newPurchaseReturnAll":
                self.status = "CLOSED"
        return {"id": movement.id, "amount": movement.amount}

    def _wanted(self, mutation: str, data: dict[str, Any]) -> dict[str, int]:
        """reference → amount this mutation settles, or PurchaseRefused."""
        captured = self._captured()
        open_items = {i.reference: i.amount for i in self.items if i.reference not in captured}
        if mutation == "newPurchaseCaptureAll":
            if captured:
                raise PurchaseRefused("INVALID_ITEMS", "Items were captured already")
            return open_items
        if mutation == "newPurchaseCaptureWithItemReferences":
            refs = [str(r) for r in data.get("itemReferences") or []]
            if not refs or any(ref not in open_items for ref in refs) or len(set(refs)) < len(refs):
                raise PurchaseRefused("INVALID_ITEMS", "Unknown or captured item references")
            return {ref: open_items[ref] for ref in refs}
        if mutation == "newPurchaseReturnAll":
            return self._returnable()
        pool = open_items if mutation == "newPurchaseCapture" else self._returnable()
        wanted: dict[str, int] = {}
        for item in data.get("items") or []:
            ref, amount = str(item["reference"]), int(item["amount"])
            if ref not in pool or ref in wanted:
                raise PurchaseRefused("INVALID_ITEMS", f"Item {ref} cannot be settled")
            if not 0 < amount <= pool[ref]:
                raise PurchaseRefused("INVALID_AMOUNT", f"Item {ref}: amount out of range")
            wanted[ref] = amount
        if not wanted:
            raise PurchaseRefused("INVALID_ITEMS", "No items")
        return wanted
