"""`payhook sessions stats`: the same counts the metrics show, for scripts and alerts."""

from __future__ import annotations

import json
import sys
import time

from config import Settings
from readouts.stats import DUE_SCAN, Stats, collect, held_text
from redisio.connect import tool_client
from sessions.models import Kind
from sessions.states import State


def as_document(stats: Stats) -> dict[str, object]:
    by_state: dict[str, dict[str, int]] = {}
    for (state, kind), count in sorted(stats.by_state.items()):
        by_state.setdefault(state, {})[kind] = count
    due = stats.due
    return {
        "sessions": by_state,
        "scanned": stats.scanned,
        "complete": stats.complete,
        "failed": stats.failed,
        "due": due.depth,
        "overdue": due.overdue,
        "oldest_unfinished_seconds": round(due.oldest_unfinished_seconds, 3),
        "pending_payments": due.pending_payments,
        "pending_closes_in_seconds": (
            None if due.pending_closes_in is None else round(due.pending_closes_in, 3)
        ),
        # False while the store is being indexed: the three figures above are then over the
        # most due sessions only (`readouts.stats`).
        "due_indexed": due.indexed,
        # Amounts as strings: exact, in the currency's minor units.
        "money_held": {currency: str(amount) for currency, amount in stats.held.items()},
        "sessions_holding_money": stats.held_sessions,
        "voids_held": stats.voids_held,
    }


def _table(stats: Stats) -> None:
    kinds = [kind.value for kind in Kind]
    print(f"{'STATE':<10}" + "".join(f"{kind:>10}" for kind in kinds) + f"{'total':>10}")
    for state in State:
        row = [stats.by_state.get((state.value, kind), 0) for kind in kinds]
        print(f"{state.value:<10}" + "".join(f"{n:>10}" for n in row) + f"{sum(row):>10}")
    if not stats.complete:
        print(f"(states counted over the newest {stats.scanned} sessions)")
    due = stats.due
    failed = ", ".join(f"{kind} {n}" for kind, n in stats.failed.items())
    closes = "-" if due.pending_closes_in is None else f"{due.pending_closes_in:.0f}s"
    held = ", ".join(held_text(amount, currency) for currency, amount in stats.held.items())
    print()
    print(f"{'failed':>26}: {sum(stats.failed.values())} ({failed})")
    print(f"{'due (unfinished)':>26}: {due.depth}, overdue {due.overdue}")
    print(f"{'oldest unfinished':>26}: {due.oldest_unfinished_seconds:.0f}s")
    print(f"{'pending payments':>26}: {due.pending_payments}, first window closes in {closes}")
    if not due.indexed:
        print(f"{'':>26}  (of the {DUE_SCAN:,} most due: the due set is being indexed)")
    print(
        f"{'money held by failed':>26}: {held or 'none'}"
        f" ({stats.held_sessions} sessions, {stats.voids_held} voids)"
    )


async def show_stats(settings: Settings, *, as_json: bool) -> int:
    redis = tool_client(settings)
    try:
        stats = await collect(redis, time.time())
    finally:
        await redis.aclose()
    if as_json:
        json.dump(as_document(stats), sys.stdout, indent=2)
        print()
    else:
        _table(stats)
    return 0
