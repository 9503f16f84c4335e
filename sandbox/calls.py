"""The call log: every request the sandbox Shopify answered, in order, for tests to read."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any


@dataclass(frozen=True)
class CallRecord:
    """One HTTP request to the GraphQL endpoint.

    `mutation` and `gid` come from the document's first mutation field (None when the
    request never got that far). `applied` means the session now holds the state this
    call asked for: it changed it, or repeated the name that did. `fault` is the kind of
    fault rule that shaped the answer, if any.
    """

    seq: int
    at: float
    shop: str
    mutation: str | None
    gid: str | None
    variables: dict[str, Any]
    status: int
    applied: bool
    user_error_codes: list[str | None] = field(default_factory=list)
    fault: str | None = None

    def as_json(self) -> dict[str, Any]:
        return asdict(self)


class CallLog:
    """Append-only list of `CallRecord`s; `wall_clock` stamps them (epoch seconds)."""

    def __init__(self, wall_clock: Callable[[], float]) -> None:
        self._wall_clock = wall_clock
        self._calls: list[CallRecord] = []

    def record(
        self,
        *,
        shop: str,
        mutation: str | None,
        gid: str | None,
        variables: dict[str, Any],
        status: int,
        applied: bool = False,
        user_error_codes: list[str | None] | None = None,
        fault: str | None = None,
    ) -> CallRecord:
        call = CallRecord(
            seq=len(self._calls) + 1,
            at=self._wall_clock(),
            shop=shop,
            mutation=mutation,
            gid=gid,
            variables=variables,
            status=status,
            applied=applied,
            user_error_codes=list(user_error_codes or []),
            fault=fault,
        )
        self._calls.append(call)
        return call

    def select(self, *, gid: str | None = None, mutation: str | None = None) -> list[CallRecord]:
        return [
            call
            for call in self._calls
            if (gid is None or call.gid == gid) and (mutation is None or call.mutation == mutation)
        ]

    def clear(self) -> None:
        self._calls.clear()
