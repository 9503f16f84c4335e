"""Every Redis key of the session store, named once.

| key | type | holds |
|---|---|---|
| `s:{id}` | hash | the session's fields (see `Session`) plus its request fingerprint |
| `s:{id}:timeline` | list | JSON `TimelineEvent`s, oldest first |
| `idx:created` | sorted set | session id by creation time, for listing |
| `due` | sorted set | every unfinished session id by the time it must next be looked at |
| `idx:failed[:kind:{k}│:shop:{s}]` | sorted sets | failed sessions by time of failure |
| `lease:{id}` | string | the fencing token of the worker holding the session, with an expiry |

All keys live under `payhook:`.
"""

from __future__ import annotations

PREFIX = "payhook:"
INDEX_CREATED = f"{PREFIX}idx:created"
DUE = f"{PREFIX}due"
FAILED = f"{PREFIX}idx:failed"


def failed_index(*, kind: str | None = None, shop: str | None = None) -> str:
    if kind is not None:
        return f"{FAILED}:kind:{kind}"
    if shop is not None:
        return f"{FAILED}:shop:{shop}"
    return FAILED


def session_key(session_id: str) -> str:
    return f"{PREFIX}s:{session_id}"


def timeline_key(session_id: str) -> str:
    return f"{PREFIX}s:{session_id}:timeline"


def lease_key(session_id: str) -> str:
    return f"{PREFIX}lease:{session_id}"


def text(value: object) -> str:
    """A Redis reply as text (replies are bytes unless the client decodes them)."""
    return value.decode() if isinstance(value, bytes) else str(value)
