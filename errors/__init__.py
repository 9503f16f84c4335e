"""payhook's exception tree: every error payhook raises on purpose is defined in this
package, below every package that raises or catches one. Adapters translate library errors
(gql, aiohttp, redis) into these, so lifecycle code never imports a client library, and
importing the tree loads none either: `NotReplicated`, the one that must also be a
`RedisError`, is defined apart in `errors.replication`.

The tree splits by what another attempt would do: a retry may help (`RetryableError`), it
cannot help until something else changes (`PermanentError`), or the work is someone else's
now (`Conflict`). `ApiError` is the answer an inbound request gets; its status says which.
A class in brackets is also that library or builtin error, for the handlers that catch it as
one (pydantic turns a `ValueError` of a validator into a validation error).

```
PayhookError                     root of every error payhook raises on purpose
├── RetryableError               a later attempt may succeed (`retry_after`: seconds, if known)
│   ├── ShopifyUnavailable       transport error, timeout, 5xx, 429, GraphQL Throttled: retry
│   ├── ExchangeFailed           Shopify gave no token for an install code (5xx, timeout,
│   │                            odd answer): the merchant installs again
│   ├── TooManyAttempts          wrong admin tokens spent their budget: retry after `retry_after`
│   ├── NotReplicated            [RedisError] a write stands but its replicas did not confirm
│   │                            it in time: the sender repeats, answered once they hold it
│   │                            (`errors.replication`)
│   ├── TryLater                 a Shopify webhook's work waits on a session in flight: the
│   │                            webhook ladder runs it again
│   └── SessionsLeft             some sessions of an uninstalled shop could not be failed on
│                                this attempt: the webhook ladder runs it again
├── PermanentError               the same attempt fails again until something else changes
│   ├── ShopifyUserError         Shopify refused the mutation with a userError: not retried
│   ├── TokenRejected            Shopify refused the shop's access token (HTTP 401/403):
│   │                            replay once `payhook shops add` stored a valid one
│   ├── MissingCredentials       no access token for the shop, or none the keys decrypt
│   │   └── ShopGone             the shop uninstalled the app (`app/uninstalled`): no
│   │                            report can ever be sent for it
│   ├── TokenUnreadable          a stored token no `PAYHOOK_TOKEN_KEYS` key decrypts: fix
│   │   │                        the keys (the gateway says `MissingCredentials`)
│   │   └── ShopUninstalled      the shop's token is an uninstall's tombstone (`ShopGone`)
│   ├── NoTokenKey               a token to store with no `PAYHOOK_TOKEN_KEYS`: set them
│   ├── CodeRefused              Shopify refused the install code or the app's credentials:
│   │                            a new install brings a new code
│   ├── ConnectorSettingsError   [ValueError] `PAYHOOK_CONNECTOR` lacks a setting it needs
│   ├── StoreCorrupt             a key a write needs holds another Redis type; nothing was
│   │                            written: an operator repairs the key
│   ├── IllegalTransition        [ValueError] a move the state machine forbids: a defect
│   ├── MoneyError               [ValueError] an amount or currency that cannot be accepted:
│   │                            refused
│   ├── BodyProblem              [ValueError] a Shopify webhook body that does not fit its
│   │                            topic (`code`, `field`): refused
│   └── BadMessage               [ValueError] a queue message that is no session task: acked
├── Conflict                     another writer moved first; this write changed nothing and
│   │                            stops, neither retried nor a dead letter: the winner goes on
│   ├── StaleState               the session is not in a state the change may start from
│   ├── LeaseLost                a fenced write whose fence is no longer the latest claim
│   └── LeaseLostError           a lease renewal found the session taken over; the work stopped
└── ApiError                     the refusal of an inbound request: `status`, `code`, `field`
                                 make its JSON answer; a 4xx is the sender's to change, a
                                 429/502/503 the sender's to retry (`Retry-After` where known)
```

`LeaseLost` (the write's word) and `LeaseLostError` (the renewer's) are siblings on purpose:
a run that meets either is abandoned, and only the write's is counted as a lost lease, since
the renewer counted its own when it found the lease gone.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any


class PayhookError(Exception):
    """Root of every error payhook raises on purpose."""


# -- a later attempt may succeed -----------------------------------------------------------


class RetryableError(PayhookError):
    def __init__(self, message: str, *, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class ShopifyUnavailable(RetryableError):
    """`cause` classes the failure for metrics and alerts: `http_5xx`, `http_429`,
    `throttled`, `malformed`, `transport` (timeouts, refused or reset connections) or
    `pending_out_of_range` (a userError that a later attempt can get past)."""

    def __init__(
        self, message: str, *, retry_after: float | None = None, cause: str = "transport"
    ) -> None:
        super().__init__(message, retry_after=retry_after)
        self.cause = cause


class ExchangeFailed(RetryableError):
    """Shopify could not be asked, or answered something other than a token."""


class TooManyAttempts(RetryableError):
    """Wrong admin tokens spent their budget; `retry_after` is whole seconds, at least 1."""

    retry_after: int

    def __init__(self, retry_after: float) -> None:
        super().__init__(
            f"too many wrong admin tokens; try again in {retry_after:.0f} s",
            retry_after=max(1, round(retry_after + 0.5)),
        )


class TryLater(RetryableError):
    """The topic's work cannot be finished now (a session it must touch is in flight)."""


class SessionsLeft(RetryableError):
    """Some sessions of the shop could not be failed on this attempt."""


# -- the same attempt fails again ----------------------------------------------------------


class PermanentError(PayhookError):
    pass


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


class TokenUnreadable(PermanentError):
    """A stored token that none of the configured keys decrypts."""


class ShopUninstalled(TokenUnreadable):
    """The shop uninstalled the app: its token was deleted and no other stands in for it."""


class NoTokenKey(PermanentError):
    """A token was to be stored with no `PAYHOOK_TOKEN_KEYS` to encrypt it."""


class CodeRefused(PermanentError):
    """Shopify refused the code (used, unknown, expired) or the app's credentials."""


class ConnectorSettingsError(PermanentError, ValueError):
    """PAYHOOK_CONNECTOR names a connector whose settings are missing."""


class StoreCorrupt(PermanentError):
    """A key the write needs holds another Redis type; the write changed nothing."""

    def __init__(self, key: str) -> None:
        super().__init__(f"{key} holds another Redis type; nothing was written")
        self.key = key


class IllegalTransition(PermanentError, ValueError):
    # `sessions.states`' State and Event, which are strings; named as such here, below them.
    def __init__(self, current: str, target: str, event: str | None = None) -> None:
        by = f" by {event}" if event is not None else ""
        super().__init__(f"a session cannot go from {current} to {target}{by}")
        self.current = current
        self.target = target
        self.event = event


class MoneyError(PermanentError, ValueError):
    """An amount or currency that cannot be accepted."""


class BodyProblem(PermanentError, ValueError):
    """The body does not fit the topic; `field` names where."""

    def __init__(self, code: str, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.field = field


class BadMessage(PermanentError, ValueError):
    """A message on the session queue that is not a payhook session task; `tag` acks it."""

    def __init__(self, reason: str, tag: str | None = None) -> None:
        super().__init__(reason)
        self.tag = tag


# -- someone else moved first --------------------------------------------------------------


class Conflict(PayhookError):
    """Another writer moved first: this write changed nothing, and the work is the winner's."""


class StaleState(Conflict):
    """The session was not in a state the change may start from."""

    def __init__(self, session_id: str, current: str | None) -> None:
        super().__init__(f"session {session_id} is {current or 'missing'}")
        self.current = current


class LeaseLost(Conflict):
    """A fenced write whose token is no longer the session's latest claim: it changed nothing."""

    def __init__(self, session_id: str, fence: int, current: int) -> None:
        super().__init__(f"session {session_id}: lease {fence} was superseded by {current}")


class LeaseLostError(Conflict):
    """The work was stopped because another worker took the session over."""


# -- the answer to an inbound request ------------------------------------------------------


class ApiError(PayhookError):
    """A refused request: `webhook.errors.json_errors` answers it as
    `{"error": {"code", "message", "field"}}` with `status` and `headers`."""

    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        field: str | None = None,
        *,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.field = field
        self.headers = headers
