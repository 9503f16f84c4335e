"""payhook's exception tree. Adapters translate library errors (gql, aiohttp, redis) into
these, so lifecycle code never imports a client library.

```
PayhookError
├── RetryableError           try again later; nothing is known to be final
│   └── ShopifyUnavailable   transport error, timeout, 5xx, 429, GraphQL Throttled
└── PermanentError           retrying cannot help; the session becomes a dead letter
    ├── ShopifyUserError     the mutation was refused with a userError
    ├── TokenRejected        Shopify refused the shop's access token (HTTP 401/403)
    └── MissingCredentials   no access token for the shop, or none the keys decrypt
        └── ShopGone         the shop uninstalled the app (`app/uninstalled`)
```
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any


class PayhookError(Exception):
    """Root of every error payhook raises on purpose."""


class RetryableError(PayhookError):
    def __init__(self, message: str, *, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class PermanentError(PayhookError):
    pass


class ShopifyUnavailable(RetryableError):
    """`cause` classes the failure for metrics and alerts: `http_5xx`, `http_429`,
    `throttled`, `malformed`, `transport` (timeouts, refused or reset connections) or
    `pending_out_of_range` (a userError that a later attempt can get past)."""

    def __init__(
        self, message: str, *, retry_after: float | None = None, cause: str = "transport"
    ) -> None:
        super().__init__(message, retry_after=retry_after)
        self.cause = cause


class ShopifyUserError(PermanentError):
    """`user_errors`: every userError of the payload as Shopify sent it, when it sent some."""

    def __init__(
        self,
        mutation: str,
        code: str | None,
        message: str,
        user_errors: Sequence[Mapping[str, Any]] = (),
    ) -> None:
        super().__init__(f"{mutation}: {code or 'USER_ERROR'}: {message}")
        self.mutation = mutation
        self.code = code
        self.user_errors = tuple(user_errors)

    @property
    def invalid_state(self) -> bool:
        # `paymentSessionConfirm` says it with INVALID_STATE_TRANSITION.
        code = self.code or ""
        return code.endswith("_INVALID_STATE") or code == "INVALID_STATE_TRANSITION"


class TokenRejected(PermanentError):
    """Retrying with the same token cannot help; replaying after `payhook shops add` can."""

    def __init__(self, mutation: str, shop: str, status: int, detail: str) -> None:
        super().__init__(
            f"{mutation}: Shopify rejected the access token for {shop} (HTTP {status}: "
            f"{detail[:200]}); store a valid one with `payhook shops add {shop}`, then replay"
        )


class MissingCredentials(PermanentError):
    pass


class ShopGone(MissingCredentials):
    """The shop uninstalled the app: no report can ever be sent for it, waiting cannot help."""
