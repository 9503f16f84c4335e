"""A shop redact (`shops.privacy.erase_shop`) against fakeredis: what a connector's send
journal kept of a finished session's requests goes with the session."""

from __future__ import annotations

import fakeredis

from sessions.models import Op, Outcome
from sessions.states import Event
from sessions.store import SessionStore
from shops.privacy import erase_shop
from tests.factories import SHOP, change_to, make_session, received_event
from workers.connectors.journal import Journal, Sent


async def reported(store: SessionStore, **fields: object) -> str:
    session = make_session(**fields)
    await store.create(session, received_event(), due_at=0, queue=False)
    await store.change(session, change_to(Event.PSP_SETTLED, outcome=Outcome.APPROVED))
    settled = await store.get(session.id)
    assert settled is not None
    await store.change(settled, change_to(Event.REPORTED))
    return session.id


async def test_a_redact_erases_the_journal_entries_of_the_shops_sessions_only(
    redis: fakeredis.FakeAsyncRedis,
) -> None:
    store = SessionStore(redis)
    mine = await reported(store)
    theirs = await reported(store, shop="other.myshopify.com")
    sent = Sent(request={"path": "/capture", "body": {"amount": 1000}}, amount=1000)
    for connector in ("ledyer", "aplazame", "purchase"):
        journal = Journal(redis, connector)
        for session_id in (mine, theirs):
            await journal.remember(Op.CAPTURE, session_id, sent)

    done = await erase_shop(redis, SHOP, cutoff=10**10, event='{"event": "redacted"}')

    assert done.erased == 1
    assert await store.get(mine) is None
    for connector in ("ledyer", "aplazame", "purchase"):
        journal = Journal(redis, connector)
        assert await journal.recall(Op.CAPTURE, mine) is None
        kept = await journal.recall(Op.CAPTURE, theirs)
        assert kept is not None
        assert kept.request == sent.request
