"""Order lines and minor units: turning Shopify's single amount into a provider's lines.

Shopify asks for an amount; Ledyer and Purchase settle whole order lines (items). These
pure functions choose lines for an amount. Amounts here are integer minor units, the
provider's own unit; `from_minor` turns them back into `Decimal` for the port.
"""

from __future__ import annotations

from collections.abc import Sequence
from decimal import Decimal

from sessions.money import minor_units

# Subsets of more lines than this are not searched (2**16 sums at most).
MAX_SEARCHED_LINES = 16


def from_minor(minor: int, currency: str) -> Decimal:
    return Decimal(minor).scaleb(-minor_units(currency))


def exact_lines(amounts: Sequence[int], target: int) -> list[int] | None:
    """Indexes of lines whose amounts add up to exactly `target`, or None.

    All lines if they fit; otherwise the subset found first in line order (earlier lines
    preferred, as a shipment usually follows the order). Orders with more than
    `MAX_SEARCHED_LINES` open lines are only matched as a whole.
    """
    if target <= 0:
        return None
    if sum(amounts) == target:
        return list(range(len(amounts)))
    if len(amounts) > MAX_SEARCHED_LINES:
        return None
    # reachable sum -> the indexes that reach it first
    reachable: dict[int, tuple[int, ...]] = {0: ()}
    for index, amount in enumerate(amounts):
        if amount <= 0:
            continue
        for total, picked in list(reachable.items()):
            grown = total + amount
            if grown <= target and grown not in reachable:
                reachable[grown] = (*picked, index)
        if target in reachable:
            return list(reachable[target])
    return None


def allocate(amounts: Sequence[int], target: int) -> list[tuple[int, int]] | None:
    """`(index, charged)` pairs covering `target` in line order, the last one possibly in part.

    For providers that accept restated item prices; None if the lines cannot cover it.
    """
    if target <= 0 or sum(max(a, 0) for a in amounts) < target:
        return None
    left = target
    chosen: list[tuple[int, int]] = []
    for index, amount in enumerate(amounts):
        if left == 0:
            break
        if amount <= 0:
            continue
        charged = min(amount, left)
        chosen.append((index, charged))
        left -= charged
    return chosen
