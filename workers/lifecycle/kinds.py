"""Each session kind's lifecycle, by kind: the one table the runtime, the uninstall and
`payhook sessions release` look a session's lifecycle up in."""

from __future__ import annotations

from sessions.models import Kind
from workers.lifecycle.capture import CAPTURE
from workers.lifecycle.ledgered import LedgeredLifecycle
from workers.lifecycle.payment import PAYMENT
from workers.lifecycle.ports import KindLifecycle
from workers.lifecycle.refund import REFUND
from workers.lifecycle.void import VOID

LIFECYCLES: dict[Kind, KindLifecycle] = {
    lifecycle.kind: lifecycle for lifecycle in (PAYMENT, CAPTURE, REFUND, VOID)
}
# The kinds whose operation of ours is on a payment's ledger book at the PSP.
LEDGERED: dict[Kind, LedgeredLifecycle] = {
    lifecycle.kind: lifecycle for lifecycle in (CAPTURE, REFUND, VOID)
}
