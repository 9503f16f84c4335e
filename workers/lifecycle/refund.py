"""Refund sessions: refund (part of) what was captured, then resolve or reject.

The refund's `payment_id` is the authorization's id, so refunds land on the same book as the
captures they give back; a refund larger than what is captured and not yet refunded is
refused without asking the PSP.
"""

from __future__ import annotations

from sessions.models import Kind
from workers.lifecycle.ledgered import LedgeredLifecycle

REFUND = LedgeredLifecycle(Kind.REFUND)
