"""Void sessions: release a whole authorization, only while nothing is captured or being
captured, and at most once."""

from __future__ import annotations

from sessions.models import Kind
from workers.lifecycle.ledgered import LedgeredLifecycle

VOID = LedgeredLifecycle(Kind.VOID)
