"""Everything one sandbox Shopify app remembers, in one object under one typed AppKey."""

from __future__ import annotations

import hmac
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web
from graphql import GraphQLSchema

from sandbox.api_versions import DEFAULT_API_VERSION
from sandbox.calls import CallLog
from sandbox.confirmations import ConfirmationSender
from sandbox.cost import ThrottleBucket
from sandbox.faults import FaultBook
from sandbox.ledger import Ledger
from sandbox.oauth_state import Grants
from sandbox.shopify_schema import build_schema


@dataclass
class SandboxState:
    # The Payments Apps API version served, and its schema.
    api_version: str
    schema: GraphQLSchema
    ledger: Ledger
    faults: FaultBook
    calls: CallLog
    bucket: ThrottleBucket
    tokens: dict[str, str]
    # The OAuth install: the apps it knows (API key → secret), its codes and exchanges.
    grants: Grants
    confirmations: ConfirmationSender
    # Epoch seconds: what a call's time (a pending window, the call log) is read from.
    wall_clock: Callable[[], float] = time.time
    # Each shop's payments app configuration, as `paymentsAppConfigure` last set it.
    configurations: dict[str, dict[str, Any]] = field(default_factory=dict)

    @classmethod
    def create(
        cls,
        *,
        strict_sessions: bool,
        tokens: dict[str, str],
        apps: dict[str, str] | None = None,
        clock: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], float] = time.time,
        confirmation_callback_url: str | None = None,
        api_version: str = DEFAULT_API_VERSION,
    ) -> SandboxState:
        """`UnknownApiVersion` when the sandbox has no schema of `api_version`."""
        return cls(
            api_version=api_version,
            schema=build_schema(api_version),
            ledger=Ledger(
                strict=strict_sessions, confirmation_callback_url=confirmation_callback_url
            ),
            faults=FaultBook(clock),
            calls=CallLog(wall_clock),
            bucket=ThrottleBucket(clock),
            tokens=dict(tokens),
            grants=Grants(dict(apps or {}), wall_clock),
            confirmations=ConfirmationSender(wall_clock=wall_clock),
            wall_clock=wall_clock,
        )

    def token_accepted(self, shop: str, token: str) -> bool:
        """Any non-empty token, unless the shop has a configured one; then only that."""
        expected = self.tokens.get(shop)
        return bool(token) and (expected is None or hmac.compare_digest(token, expected))

    def reset(self) -> None:
        """Forget sessions, calls, confirmation requests, faults, codes and configurations;
        what was set up (tokens, tokens issued by installs, apps, strictness, the default
        confirmation_callback_url) stays."""
        self.ledger.clear()
        self.grants.clear()
        self.configurations.clear()
        self.faults.clear()
        self.calls.clear()
        self.confirmations.clear()
        self.bucket.reset()


SANDBOX_STATE: web.AppKey[SandboxState] = web.AppKey("sandbox_state", SandboxState)
