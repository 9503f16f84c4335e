"""Capture sessions: capture (part of) an authorization, then resolve or reject.

A capture is refused without asking the PSP when it would exceed what is still authorized,
when the authorization expired (`AUTHORIZATION_EXPIRED`), was voided, or was a sale.
"""

from __future__ import annotations

from sessions.models import Kind
from workers.lifecycle.ledgered import LedgeredLifecycle

CAPTURE = LedgeredLifecycle(Kind.CAPTURE)
