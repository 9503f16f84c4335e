"""Fault rules on the sandbox Shopify: what a client sees, and what Shopify's state does."""

from __future__ import annotations

import time
from typing import Any

import pytest
from aiohttp.test_utils import TestClient
from gql.client import AsyncClientSession
from gql.transport.exceptions import TransportQueryError, TransportServerError

from tests.sandbox.conftest import ServerFactory
from tests.sandbox.helpers import (
    AUTH,
    GRAPHQL_PATH,
    add_fault,
    calls,
    gid,
    graphql,
    mutate,
    register,
    resolve_doc,
    session_state,
)

CAPTURE = gid("capture")


class FakeClock:
    """Monotonic seconds that move only when a test says so."""

    def __init__(self) -> None:
        self.now = 1_000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
async def registered(http: TestClient[Any, Any]) -> str:
    await register(http, CAPTURE)
    return CAPTURE


@pytest.mark.parametrize("status", [500, 502, 503])
async def test_status_fault_fails_n_times_then_answers(
    status: int,
    registered: str,
    http: TestClient[Any, Any],
    gql_session: AsyncClientSession,
) -> None:
    await add_fault(http, {"kind": "status", "status": status, "times": 2})

    for _ in range(2):
        with pytest.raises(TransportServerError) as failure:
            await mutate(gql_session, resolve_doc("capture"), id=registered)
        assert failure.value.code == status
    assert (await session_state(http, registered))["state"] is None
    payload = await mutate(gql_session, resolve_doc("capture"), id=registered)

    assert payload["userErrors"] == []
    recorded = await calls(http, gid=registered)
    assert [(c["status"], c["fault"], c["applied"]) for c in recorded] == [
        (status, "status", False),
        (status, "status", False),
        (200, None, True),
    ]


async def test_mutation_filter_spares_other_mutations(
    registered: str, http: TestClient[Any, Any]
) -> None:
    await add_fault(
        http, {"kind": "status", "status": 503, "times": 1, "mutation": "refundSessionResolve"}
    )

    status, _ = await graphql(http, resolve_doc("capture"), {"id": registered})

    assert status == 200
    assert len((await (await http.get("/_sandbox/faults")).json())["faults"]) == 1


@pytest.mark.parametrize(("retry_after", "header"), [(7, "7"), (None, None)])
async def test_html_429_looks_like_a_cloudflare_challenge(
    retry_after: int | None, header: str | None, registered: str, http: TestClient[Any, Any]
) -> None:
    rule: dict[str, Any] = {"kind": "html_429", "times": 1}
    if retry_after is not None:
        rule["retry_after"] = retry_after
    await add_fault(http, rule)

    response = await http.post(
        GRAPHQL_PATH,
        json={"query": resolve_doc("capture"), "variables": {"id": registered}},
        headers=AUTH,
    )

    assert response.status == 429
    assert response.content_type == "text/html"
    assert response.headers.get("Retry-After") == header
    assert "Your connection needs to be verified" in await response.text()
    assert (await session_state(http, registered))["state"] is None


async def test_throttled_is_a_graphql_error_with_an_empty_bucket(
    registered: str, http: TestClient[Any, Any], gql_session: AsyncClientSession
) -> None:
    await add_fault(http, {"kind": "throttled", "times": 1})

    status, body = await graphql(http, resolve_doc("capture"), {"id": registered})
    assert status == 200
    assert body["errors"] == [{"message": "Throttled", "extensions": {"code": "THROTTLED"}}]
    assert body["extensions"]["cost"]["throttleStatus"]["currentlyAvailable"] == 0
    assert (await session_state(http, registered))["state"] is None

    await add_fault(http, {"kind": "throttled", "times": 1})
    with pytest.raises(TransportQueryError, match="Throttled"):
        await mutate(gql_session, resolve_doc("capture"), id=registered)


async def test_delay_answers_late_but_normally(registered: str, http: TestClient[Any, Any]) -> None:
    await add_fault(http, {"kind": "delay", "seconds": 0.3, "times": 1})

    started = time.monotonic()
    status, body = await graphql(http, resolve_doc("capture"), {"id": registered})

    assert time.monotonic() - started >= 0.3
    assert status == 200
    assert body["data"]["captureSessionResolve"]["userErrors"] == []
    assert (await calls(http))[0]["fault"] == "delay"


async def test_commit_then_status_applies_but_loses_the_answer(
    registered: str, http: TestClient[Any, Any], gql_session: AsyncClientSession
) -> None:
    await add_fault(http, {"kind": "commit_then_status", "status": 502, "times": 1})

    with pytest.raises(TransportServerError) as failure:
        await mutate(gql_session, resolve_doc("capture"), id=registered)
    assert failure.value.code == 502
    assert (await session_state(http, registered))["state"] == "resolved"
    # The client's retry of the same mutation succeeds: idempotent per mutation name.
    retry = await mutate(gql_session, resolve_doc("capture"), id=registered)

    assert retry["userErrors"] == []
    assert [(c["status"], c["applied"]) for c in await calls(http)] == [(502, True), (200, True)]


async def test_for_seconds_window_ends_on_time(
    shopify_factory: ServerFactory, aiohttp_client: Any
) -> None:
    clock = FakeClock()
    http = await aiohttp_client(await shopify_factory(clock=clock, strict_sessions=False))
    await add_fault(http, {"kind": "status", "status": 503, "for_seconds": 30})

    during = [(await graphql(http, resolve_doc("void"), {"id": gid("void")}))[0] for _ in "abc"]
    clock.now += 29.9
    still = (await graphql(http, resolve_doc("void"), {"id": gid("void")}))[0]
    clock.now += 0.2
    after = (await graphql(http, resolve_doc("void"), {"id": gid("void")}))[0]

    assert (during, still, after) == ([503, 503, 503], 503, 200)
    assert (await (await http.get("/_sandbox/faults")).json())["faults"] == []


async def test_rules_are_consumed_in_order(registered: str, http: TestClient[Any, Any]) -> None:
    await add_fault(http, {"kind": "status", "status": 500, "times": 1})
    await add_fault(http, {"kind": "html_429", "times": 1})
    await add_fault(http, {"kind": "status", "status": 503, "times": 1})

    statuses = [
        (await graphql(http, resolve_doc("capture"), {"id": registered}))[0] for _ in range(4)
    ]

    assert statuses == [500, 429, 503, 200]


async def test_clearing_faults_disarms_them(registered: str, http: TestClient[Any, Any]) -> None:
    await add_fault(http, {"kind": "status", "status": 500, "times": 10})

    cleared = await (await http.delete("/_sandbox/faults")).json()
    status, _ = await graphql(http, resolve_doc("capture"), {"id": registered})

    assert cleared == {"cleared": 1}
    assert status == 200


@pytest.mark.parametrize(
    ("rule", "complaint"),
    [
        pytest.param({"status": 500, "times": 1}, "kind", id="no-kind"),
        pytest.param({"kind": "teapot", "times": 1}, "kind", id="unknown-kind"),
        pytest.param({"kind": "status", "status": 404, "times": 1}, "status", id="not-5xx"),
        pytest.param({"kind": "throttled"}, "times", id="no-budget"),
        pytest.param(
            {"kind": "throttled", "times": 1, "for_seconds": 5}, "exactly one", id="two-budgets"
        ),
        pytest.param({"kind": "throttled", "times": 0}, "times", id="zero-times"),
        pytest.param({"kind": "delay", "times": 1}, "seconds", id="delay-without-seconds"),
        pytest.param(
            {"kind": "throttled", "times": 1, "mutation": "captureSessionResolved"},
            "unknown mutation",
            id="misspelt-mutation",
        ),
        pytest.param({"kind": "throttled", "times": 1, "typo": 1}, "typo", id="extra-field"),
    ],
)
async def test_bad_fault_rules_are_refused(
    rule: dict[str, Any], complaint: str, http: TestClient[Any, Any]
) -> None:
    response = await http.post("/_sandbox/faults", json=rule)

    assert response.status == 400
    assert complaint in (await response.json())["error"]
    assert (await (await http.get("/_sandbox/faults")).json())["faults"] == []
