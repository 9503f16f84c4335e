"""Redis keys cannot collide, whatever an id contains: each key is a fixed prefix and then
the id, and no prefix is the start of another one or of a fixed key."""

from __future__ import annotations

from collections.abc import Callable

from hypothesis import example, given, settings
from hypothesis import strategies as st

from sessions.keys import (
    BEAT_LOCK,
    DUE,
    DUE_INDEXED,
    EXPIRING,
    FAILED,
    INDEX_CREATED,
    PENDING,
    SHOPS,
    WORKABLE,
    failed_index,
    lease_key,
    logout_key,
    rate_key,
    session_key,
    timeline_key,
)
from sessions.ledger_store import ledger_keys
from shops.installs import state_key
from shops.onboarding import ONBOARDING_DUE, onboarding_key
from shops.webhooks import (
    WEBHOOK_DUE,
    WEBHOOK_FAILED,
    WEBHOOK_RECEIVED,
    webhook_events_key,
    webhook_key,
    webhook_lease_key,
    webhook_report_key,
)
from webhook.install import install_rate_key

PER_ID: dict[str, Callable[[str], str]] = {
    "session": session_key,
    "timeline": timeline_key,
    "lease": lease_key,
    "book": lambda i: ledger_keys(i)[0],
    "reservations": lambda i: ledger_keys(i)[1],
    "settled": lambda i: ledger_keys(i)[2],
    "failed by kind": lambda i: failed_index(kind=i),
    "failed by shop": lambda i: failed_index(shop=i),
    "rate": rate_key,
    "logout": logout_key,
    "install state": state_key,
    "install rate": install_rate_key,
    "onboarding": onboarding_key,
    "webhook": webhook_key,
    "webhook events": webhook_events_key,
    "webhook lease": webhook_lease_key,
    "webhook report": webhook_report_key,
}
FIXED = [
    DUE,
    INDEX_CREATED,
    EXPIRING,
    FAILED,
    WORKABLE,
    PENDING,
    DUE_INDEXED,
    SHOPS,
    BEAT_LOCK,
    ONBOARDING_DUE,
    WEBHOOK_DUE,
    WEBHOOK_FAILED,
    WEBHOOK_RECEIVED,
]
# What ids are made of, colons and key-like words included.
PARTS = [*"a:{}|*", "timeline", "res", "settled", "kind", "shop", "s"]
IDS = st.lists(st.sampled_from(PARTS), max_size=5).map("".join)


@settings(max_examples=1000)
@example(first="X:timeline", second="X", kinds=("session", "timeline"))
@example(first="P:res", second="P", kinds=("book", "reservations"))
@given(
    first=IDS,
    second=IDS,
    kinds=st.tuples(st.sampled_from(sorted(PER_ID)), st.sampled_from(sorted(PER_ID))),
)
def test_two_keys_are_equal_only_for_the_same_kind_and_id(
    first: str, second: str, kinds: tuple[str, str]
) -> None:
    one, other = kinds
    if PER_ID[one](first) == PER_ID[other](second):
        assert (one, first) == (other, second)


def test_no_prefix_starts_another_prefix_or_a_fixed_key() -> None:
    prefixes = {name: key("") for name, key in PER_ID.items()}
    for name, prefix in prefixes.items():
        for other, other_prefix in prefixes.items():
            if other != name:
                assert not other_prefix.startswith(prefix), (name, other)
        for fixed in FIXED:
            assert not fixed.startswith(prefix), (name, fixed)
