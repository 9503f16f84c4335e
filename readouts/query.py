"""Finding sessions for operators: filters shared by `payhook sessions`, `payhook replay`
and the admin API."""

from __future__ import annotations

from dataclasses import dataclass

from sessions.keys import INDEX_CREATED, text
from sessions.models import Session
from sessions.states import State
from sessions.store import SessionStore

# Listing walks the creation index newest first; this bounds how far one query may read.
SCAN_LIMIT = 20_000
# Sessions are read a batch per round trip: as many as the listing wants (so an unfiltered
# page decodes no more than it shows), at least `_MIN_BATCH`, at most `_BATCH`.
_MIN_BATCH = 50
_BATCH = 500


@dataclass(frozen=True)
class SessionFilter:
    state: State | None = None
    kind: str | None = None
    shop: str | None = None
    since: float | None = None
    until: float | None = None
    error_contains: str | None = None
    limit: int = 50

    def matches(self, session: Session) -> bool:
        return (
            (self.state is None or session.state is self.state)
            and (self.kind is None or session.kind == self.kind)
            and (self.shop is None or session.shop == self.shop)
            and (
                self.error_contains is None
                or self.error_contains.lower() in (session.last_error or "").lower()
            )
        )


async def find_sessions(store: SessionStore, wanted: SessionFilter) -> list[Session]:
    """Matching sessions: failed ones by failure time (oldest first), others newest first.

    `since`/`until` bound the failure time for failed sessions and the creation time
    otherwise.
    """
    size = min(_BATCH, max(_MIN_BATCH, wanted.limit))
    if wanted.state is State.FAILED:
        ids = await store.failed_ids(
            kind=wanted.kind,
            shop=wanted.shop,
            since=wanted.since,
            until=wanted.until,
            limit=SCAN_LIMIT,
        )
        found = []
        for start in range(0, len(ids), size):
            for session in await store.get_many(ids[start : start + size]):
                if session is not None and wanted.matches(session):
                    found.append(session)
                    if len(found) >= wanted.limit:
                        return found
        return found
    high = "+inf" if wanted.until is None else repr(wanted.until)
    low = "-inf" if wanted.since is None else repr(wanted.since)
    found = []
    for offset in range(0, SCAN_LIMIT, size):
        batch = await store.redis.zrevrangebyscore(INDEX_CREATED, high, low, start=offset, num=size)
        for session in await store.get_many([text(raw) for raw in batch]):
            if session is not None and wanted.matches(session):
                found.append(session)
                if len(found) >= wanted.limit:
                    return found
        if len(batch) < size:
            break
    return found
