"""The mark payhook leaves on an operation so that a later read can tell whose it is.

Where a provider keeps a free-text field with an operation and shows it in its reads
(BigCommerce's refund `reason`, Ledyer's refund `note`), payhook writes
`Shopify refund <session id>` there. Reading it back, the session id is everything after
the prefix, compared whole: a session whose id is part of another's (`rf-10`, `rf-100`)
never takes the other's operation for its own.
"""

from __future__ import annotations

_REFUND = "Shopify refund "


def refund_mark(session_id: str) -> str:
    return f"{_REFUND}{session_id}"


def marked_session(text: str | None) -> str | None:
    """The session id a mark names, or None for text that is not a mark."""
    if text is None or not text.startswith(_REFUND):
        return None
    return text[len(_REFUND) :] or None


def is_marked_by(text: str | None, session_id: str) -> bool:
    return marked_session(text) == session_id
