"""Session state held by the sandbox Shopify, and the rules that decide each mutation.

The rules are Shopify's (notes §5.1): for one gid, idempotency is per mutation *name*.
The first name that succeeds wins; repeating that name succeeds again and returns the
stored state (a repeated reject ignores its new reason); any other name is refused with
`<KIND>_SESSION_INVALID_STATE`.

One exception, also Shopify's: `paymentSessionPending` is not final. A pending payment is
later resolved or rejected, so those two may follow it; once they have, pending is refused
like any other late name.

`paymentSessionPending` also checks its `pendingExpiresAt` against the time of the call: a
moment already past is refused (`EXPIRED_PENDING_EXPIRES_AT`), and so is one more than
`PENDING_LIMIT_SECONDS` ahead (`OUT_OF_RANGE_PENDING_EXPIRES_AT`): Shopify recommends a window
within three days, and the sandbox holds an app to it.

`paymentSessionConfirm` is not final either: it puts the payment in `confirming` and Shopify
then sends the app its confirmation request (to the session's `confirmation_callback_url`;
without one the app is not set up for confirmation: `CONFIRMATION_NOT_SUPPORTED`). A
confirming payment may be rejected, and resolved only if Shopify's checks confirmed it.

No I/O here, so the rules are tested as plain functions of their inputs.
"""

from __future__ import annotations

import dataclasses
import enum
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal

SessionKind = Literal["capture", "refund", "void", "payment"]
StateName = Literal["resolved", "rejected", "pending", "confirming"]

_GID_PREFIX = "gid://shopify/"
_GID_TYPES: dict[str, SessionKind] = {
    "CaptureSession": "capture",
    "RefundSession": "refund",
    "VoidSession": "void",
    "PaymentSession": "payment",
}

MUTATIONS: dict[str, tuple[SessionKind, StateName]] = {
    "captureSessionResolve": ("capture", "resolved"),
    "captureSessionReject": ("capture", "rejected"),
    "refundSessionResolve": ("refund", "resolved"),
    "refundSessionReject": ("refund", "rejected"),
    "voidSessionResolve": ("void", "resolved"),
    "voidSessionReject": ("void", "rejected"),
    "paymentSessionResolve": ("payment", "resolved"),
    "paymentSessionReject": ("payment", "rejected"),
    "paymentSessionPending": ("payment", "pending"),
    "paymentSessionConfirm": ("payment", "confirming"),
}
"""Every mutation the sandbox serves: the session kind it acts on and the state it sets."""

# The furthest a pending payment's window may reach, from the moment of the call.
PENDING_LIMIT_SECONDS = 3 * 86400.0


def kind_of_gid(gid: str) -> SessionKind | None:
    """`gid://shopify/CaptureSession/abc` → `"capture"`; None for anything else."""
    if not gid.startswith(_GID_PREFIX):
        return None
    type_name, slash, local_id = gid[len(_GID_PREFIX) :].partition("/")
    if not slash or not local_id or "/" in local_id:
        return None
    return _GID_TYPES.get(type_name)


@dataclass
class SessionRecord:
    """What the sandbox knows about one session. `state` is None until a mutation lands."""

    gid: str
    kind: SessionKind
    state: StateName | None = None
    mutation: str | None = None
    reason: dict[str, Any] | None = None
    authorization_expires_at: str | None = None
    pending_expires_at: str | None = None
    # Where Shopify sends the confirmation request (the extension's setting), and what its
    # checks decided once the payment was confirmed.
    confirmation_callback_url: str | None = None
    confirmation_result: bool | None = None

    @property
    def local_id(self) -> str:
        return self.gid.rsplit("/", 1)[1]

    def as_json(self) -> dict[str, Any]:
        shown: dict[str, Any] = {
            "gid": self.gid,
            "kind": self.kind,
            "state": self.state,
            "mutation": self.mutation,
            "reason": self.reason,
            "authorizationExpiresAt": self.authorization_expires_at,
            "pendingExpiresAt": self.pending_expires_at,
        }
        if self.kind == "payment":
            shown["confirmationCallbackUrl"] = self.confirmation_callback_url
            shown["confirmationResult"] = self.confirmation_result
        return shown


class Refusal(enum.Enum):
    """Why a mutation was refused; each mutation's userError code for it is in
    `sandbox.shopify_schema` (`<KIND>_SESSION_<name>` for captures, refunds and voids)."""

    NOT_FOUND = "NOT_FOUND"
    INVALID_STATE = "INVALID_STATE"
    # paymentSessionConfirm for an app without a confirmation_callback_url.
    NOT_SUPPORTED = "NOT_SUPPORTED"
    # paymentSessionPending: its pendingExpiresAt is past, or too far ahead.
    EXPIRED = "EXPIRED"
    OUT_OF_RANGE = "OUT_OF_RANGE"


@dataclass(frozen=True)
class Outcome:
    """The decision on one mutation. `session` is a snapshot, None when refused."""

    mutation: str
    gid: str
    session: SessionRecord | None
    refusal: Refusal | None = None
    # The same name again: answered from what is stored, nothing done anew.
    repeat: bool = False

    @property
    def applied(self) -> bool:
        return self.refusal is None


class Ledger:
    """All sessions the sandbox knows, keyed by gid.

    With `strict` on, a gid must have been registered first (as Shopify only knows
    sessions it created); with it off, an unknown gid of the right kind is registered on
    first use, which suits ad-hoc dev runs.
    """

    def __init__(self, *, strict: bool, confirmation_callback_url: str | None = None) -> None:
        self.strict = strict
        # The app's confirmation_callback_url for sessions registered without their own.
        self.confirmation_callback_url = confirmation_callback_url
        self._sessions: dict[str, SessionRecord] = {}

    def register(self, gid: str, confirmation_callback_url: str | None = None) -> SessionRecord:
        """Make `gid` known. Registering it again keeps its state (a URL given replaces
        the one it had)."""
        kind = kind_of_gid(gid)
        if kind is None:
            raise ValueError(f"not a Payments Apps session gid: {gid!r}")
        record = self._sessions.setdefault(gid, SessionRecord(gid=gid, kind=kind))
        if confirmation_callback_url is not None:
            record.confirmation_callback_url = confirmation_callback_url
        return record

    def get(self, gid: str) -> SessionRecord | None:
        record = self._sessions.get(gid)
        return dataclasses.replace(record) if record else None

    def clear(self) -> None:
        self._sessions.clear()

    def apply(
        self,
        mutation: str,
        gid: str,
        *,
        now: float,
        reason: dict[str, Any] | None = None,
        authorization_expires_at: str | None = None,
        pending_expires_at: str | None = None,
        confirm: bool = True,
    ) -> Outcome:
        """Decide `mutation` on `gid` at `now` (epoch seconds) and, if it is the first of its
        name, store its state.

        `confirm`: for `paymentSessionConfirm`, what Shopify's checks decide (the
        confirmation request then says so)."""
        kind, target = MUTATIONS[mutation]
        # A gid of another kind is not a session this mutation can see at all.
        if kind_of_gid(gid) != kind:
            return Outcome(mutation, gid, None, Refusal.NOT_FOUND)
        record = self._sessions.get(gid)
        if record is None:
            if self.strict:
                return Outcome(mutation, gid, None, Refusal.NOT_FOUND)
            record = self.register(gid)

        if record.mutation == mutation:
            # Same name again: performed once, same answer; new arguments are ignored.
            return Outcome(mutation, gid, dataclasses.replace(record), repeat=True)
        if not _may_follow(record, target):
            return Outcome(mutation, gid, None, Refusal.INVALID_STATE)
        if target == "pending":
            window = _window_refusal(pending_expires_at, now)
            if window is not None:
                return Outcome(mutation, gid, None, window)
        if target == "confirming":
            url = record.confirmation_callback_url or self.confirmation_callback_url
            if url is None:
                return Outcome(mutation, gid, None, Refusal.NOT_SUPPORTED)
            record.confirmation_callback_url = url
            record.confirmation_result = confirm

        record.state = target
        record.mutation = mutation
        # A payment leaving pending drops the pending reason; the expiry times stay.
        record.reason = reason
        if authorization_expires_at is not None:
            record.authorization_expires_at = authorization_expires_at
        if pending_expires_at is not None:
            record.pending_expires_at = pending_expires_at
        return Outcome(mutation, gid, dataclasses.replace(record))


def _may_follow(record: SessionRecord, target: StateName) -> bool:
    """Whether a mutation setting `target` may follow the session's state (another name)."""
    if record.state is None:
        return True
    if record.state == "pending":
        return target in ("resolved", "rejected")
    if record.state == "confirming":
        # Only what Shopify's checks confirmed may be resolved.
        return target == "rejected" or (target == "resolved" and bool(record.confirmation_result))
    return False


def _window_refusal(pending_expires_at: str | None, now: float) -> Refusal | None:
    """Whether a pending window closing at `pending_expires_at` is one Shopify refuses."""
    if pending_expires_at is None:
        return None
    closes = datetime.fromisoformat(pending_expires_at)
    if closes.tzinfo is None:
        closes = closes.replace(tzinfo=UTC)
    ahead = closes.timestamp() - now
    if ahead <= 0:
        return Refusal.EXPIRED
    if ahead > PENDING_LIMIT_SECONDS:
        return Refusal.OUT_OF_RANGE
    return None
