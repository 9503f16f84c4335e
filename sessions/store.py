"""The Redis session store: the single source of truth for every session.

Keys are named in `sessions.keys`. Every write that changes state is one Lua script, so a
session's fields, its state, its timeline, its due time and its task message never disagree,
and a concurrent duplicate can neither create a second session nor overwrite the first.
Workers reach sessions through `sessions.claims`, which adds leases and fencing on top.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, TypeVar

import orjson
from redis.asyncio import Redis

from errors import StaleState, StoreCorrupt
from redisio.replication import NONE, Replication
from sessions.change import Change
from sessions.due_index import BUILD, INDEX_DUE, REPAIR, START
from sessions.handoff import Envelope, Handoff
from sessions.intake import NewSession, encode_value
from sessions.keys import (
    CONFIRMING,
    DUE,
    DUE_INDEXED,
    EXPIRING,
    INDEX_CREATED,
    PENDING,
    WORKABLE,
    WRONG_TYPE,
    failed_index,
    session_key,
    text,
    timeline_key,
)
from sessions.models import Kind, Session, TimelineEvent
from sessions.states import State
from sessions.writes import apply_change, register_apply

__all__ = [
    "Change",
    "CreateResult",
    "Created",
    "IndexBuild",
    "Pruned",
    "SessionStore",
]

T = TypeVar("T")

log = logging.getLogger("payhook.store")

# KEYS: session, timeline, listing, due, queue (or ''), the due summary's workable and pending
# indexes, their build state, the confirming index. ARGV: fingerprint, created_at, first timeline
# event, id, due_at, task message (or ''), the session's fields as one JSON object. One argument
# rather than a pair per field: redis-py packs each argument in Python, and 30 of them cost the
# intake more than the JSON does. A store whose due set is empty has nothing left to index from
# before the indexes, so the first session into it marks them built.
_CREATE = (
    WRONG_TYPE
    + INDEX_DUE
    + """
local bad = wrong_type({KEYS[1], 'hash', KEYS[2], 'list', KEYS[3], 'zset', KEYS[4], 'zset',
                        KEYS[5], 'list', KEYS[6], 'zset', KEYS[7], 'zset', KEYS[8], 'string',
                        KEYS[9], 'zset'})
if bad then return {'wrongtype', bad} end
local fp = redis.call('HGET', KEYS[1], 'fingerprint')
if fp then
  if fp == ARGV[1] then
    -- Rewritten as it is: a write that replicates after the first request's, so a WAIT
    -- on this connection covers the session before the repeat is answered 201 (Redis 7
    -- waits only for a connection's own writes; 6.2 for everything before its last command).
    redis.call('HSET', KEYS[1], 'fingerprint', fp)
    return {'duplicate'}
  end
  return {'conflict', fp}
end
local flat = {'fingerprint', ARGV[1]}
for name, value in pairs(cjson.decode(ARGV[7])) do
  flat[#flat + 1] = name
  flat[#flat + 1] = value
end
if redis.call('EXISTS', KEYS[4]) == 0 then redis.call('SET', KEYS[8], 'done', 'NX') end
redis.call('HSET', KEYS[1], unpack(flat))
redis.call('RPUSH', KEYS[2], ARGV[3])
redis.call('ZADD', KEYS[3], ARGV[2], ARGV[4])
redis.call('ZADD', KEYS[4], ARGV[5], ARGV[4])
index_due(KEYS[4], KEYS[6], KEYS[7], KEYS[9], KEYS[1], ARGV[4])
if ARGV[6] ~= '' then redis.call('LPUSH', KEYS[5], ARGV[6]) end
return {'created'}
"""
)

# KEYS: session, timeline, due, failed index, queue (or ''), the due summary's indexes.
# Due sessions with their kind; each is pushed `hold` ahead so the next sweep skips it. An id
# whose session is gone is dropped from the due set rather than tried again forever.
# Reported sessions whose retention ran out leave the listing index: their data expired
# with its TTL; the expiring index says which ones, so nothing is scanned twice. One whose
# data is still there (its expiry was scored by a clock behind Redis's) is scored again by
# its real TTL, so every id this looks at leaves the range and a sweep's batches always
# move on; one with no TTL at all is not expiring and leaves the expiring index.
_PRUNE = """
local ids = redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', ARGV[1], 'LIMIT', 0, tonumber(ARGV[2]))
local pruned = 0
for _, id in ipairs(ids) do
  local ttl = redis.call('PTTL', ARGV[3] .. id)
  if ttl == -2 then
    redis.call('ZREM', KEYS[1], id)
    redis.call('ZREM', KEYS[2], id)
    pruned = pruned + 1
  elseif ttl == -1 then
    redis.call('ZREM', KEYS[2], id)
  else
    redis.call('ZADD', KEYS[2], tonumber(ARGV[1]) + ttl / 1000, id)
  end
end
return {#ids, pruned}
"""

# Moving a session in the due set leaves its index entries as they are (no index is scored by
# the due time); an id dropped leaves them too. KEYS: due, the three indexes.
_CLAIM_DUE = (
    WRONG_TYPE
    + """
local bad = wrong_type({KEYS[1], 'zset'})
if bad then return {'wrongtype', bad} end
-- An index of another type is left alone (and named in the reply): the indexes are the
-- metrics' upkeep, and must never stop the re-kicks that move sessions.
local indexes, found = {}, {'ok'}
for i = 2, 4 do
  local corrupt = wrong_type({KEYS[i], 'zset'})
  if corrupt then found[1] = 'index:' .. corrupt else table.insert(indexes, KEYS[i]) end
end
local ids = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'LIMIT', 0, tonumber(ARGV[2]))
for _, id in ipairs(ids) do
  local kind = redis.call('HGET', ARGV[4] .. id, 'kind')
  if kind then
    redis.call('ZADD', KEYS[1], ARGV[3], id)
    table.insert(found, id)
    table.insert(found, kind)
  else
    redis.call('ZREM', KEYS[1], id)
    for _, index in ipairs(indexes) do redis.call('ZREM', index, id) end
  end
end
return found
"""
)


# A write that changes nothing but replicates, so that a WAIT after it on the same connection
# covers every earlier write to the session, whichever connection made it.
_TOUCH = """
local fp = redis.call('HGET', KEYS[1], 'fingerprint')
if fp then redis.call('HSET', KEYS[1], 'fingerprint', fp) end
return 1
"""


class Created(StrEnum):
    CREATED = "created"
    DUPLICATE = "duplicate"
    CONFLICT = "conflict"


@dataclass(frozen=True)
class Pruned:
    """One pruning batch: ids it looked at (each has left the expired range) and dropped."""

    looked_at: int
    dropped: int


@dataclass(frozen=True)
class IndexBuild:
    """One batch of building the due summary's indexes (`sessions.due_index`)."""

    looked_at: int
    done: bool


@dataclass(frozen=True)
class CreateResult:
    status: Created
    stored_fingerprint: str | None = None


def _encode(session: Session) -> dict[str, str]:
    dumped = session.model_dump(mode="json")
    return {name: encode_value(value) for name, value in dumped.items() if value is not None}


def decode(fields: Mapping[str, str]) -> Session:
    data: dict[str, Any] = {k: v for k, v in fields.items() if k != "fingerprint"}
    return Session.model_validate(data)


def _decoded(fields: Mapping[Any, Any]) -> Session | None:
    if not fields:
        return None
    return decode({text(k): text(v) for k, v in fields.items()})


class SessionStore:
    """Async access to sessions; shared by the web handlers, the workers and the tools.

    `handoff` renders the task message that queues a session; without one (tools that only
    read), nothing is ever queued. `replication` says how many replicas must hold a new
    session before `create` returns (`redisio.replication`).
    """

    def __init__(
        self,
        redis: Redis,
        handoff: Handoff | None = None,
        *,
        replication: Replication = NONE,
    ) -> None:
        self._redis = redis
        self._handoff = handoff
        self._replication = replication
        self._create = redis.register_script(_CREATE)
        self._apply = register_apply(redis)
        self._claim_due = redis.register_script(_CLAIM_DUE)
        self._prune = redis.register_script(_PRUNE)
        self._touch = redis.register_script(_TOUCH)
        self._build = redis.register_script(BUILD)
        self._repair = redis.register_script(REPAIR)

    @property
    def redis(self) -> Redis:
        return self._redis

    def envelope(self, kind: Kind, session_id: str) -> Envelope | None:
        return None if self._handoff is None else self._handoff.envelope(kind, session_id)

    async def create(
        self, session: Session, event: TimelineEvent, *, due_at: float, queue: bool
    ) -> CreateResult:
        """Store a new session in one round trip, or say why not (duplicate or conflict).

        The session enters the due set at `due_at`: if the task message that should carry it
        is lost, the sweeper picks it up from there. With `queue`, its task message is pushed
        in the same atomic step, only when the session is new.

        A new or repeated session is returned only once the required replicas hold it;
        raises `NotReplicated` when they do not in time (the session stays stored).
        """
        new = NewSession(
            id=session.id,
            kind=session.kind,
            fields=_encode(session),
            fingerprint=session.fingerprint(),
            created_at=session.created_at,
            event=event.model_dump_json(exclude_none=True),
        )
        return await self.create_new(new, due_at=due_at, queue=queue)

    async def create_new(self, new: NewSession, *, due_at: float, queue: bool) -> CreateResult:
        """`create` for a session intake has already encoded (`sessions.intake`)."""
        envelope = self.envelope(new.kind, new.id) if queue else None
        keys = [
            session_key(new.id),
            timeline_key(new.id),
            INDEX_CREATED,
            DUE,
            envelope.queue if envelope else "",
            WORKABLE,
            PENDING,
            DUE_INDEXED,
            CONFIRMING,
        ]
        args = [
            new.fingerprint,
            repr(new.created_at),
            new.event,
            new.id,
            repr(due_at),
            envelope.body if envelope else "",
            orjson.dumps(new.fields),
        ]
        reply = await self._replication.run(self._redis, self._create, keys, args)
        if text(reply[0]) == "wrongtype":
            raise StoreCorrupt(text(reply[1]))
        status = Created(text(reply[0]))
        return CreateResult(status, text(reply[1]) if len(reply) > 1 else None)

    async def get(self, session_id: str) -> Session | None:
        return _decoded(await self._redis.hgetall(session_key(session_id)))

    async def fields(self, session_id: str, names: Sequence[str]) -> dict[str, str] | None:
        """Some of a session's fields as stored (a missing field is absent); None when there
        is no such session. One HMGET: cheap enough to ask again and again."""
        found = await self._redis.hmget(session_key(session_id), ["state", *names])
        if found[0] is None:
            return None
        return {
            name: text(value)
            for name, value in zip(names, found[1:], strict=True)
            if value is not None
        }

    async def get_many(self, session_ids: Sequence[str]) -> list[Session | None]:
        """Sessions by id in one round trip; None for one that is gone."""
        async with self._redis.pipeline(transaction=False) as pipe:
            for session_id in session_ids:
                pipe.hgetall(session_key(session_id))
            found = await pipe.execute()
        return [_decoded(fields) for fields in found]

    async def timeline(self, session_id: str) -> list[TimelineEvent]:
        raw = await self._redis.lrange(timeline_key(session_id), 0, -1)
        return [TimelineEvent.model_validate_json(item) for item in raw]

    async def change(self, session: Session, change: Change, *, queue: bool = False) -> State:
        """Apply `change` outside any lease (a PSP's verdict, an operator); see `apply_change`.

        With `queue`, the session's task message is pushed in the same atomic step.
        """
        envelope = self.envelope(session.kind, session.id) if queue else None
        return await apply_change(self._apply, session.id, change, envelope=envelope)

    async def decide_and_change(
        self,
        session_id: str,
        decide: Callable[[Session | None], Change | T],
        *,
        attempts: int,
    ) -> tuple[Session | None, Change | T] | None:
        """Read the session, let `decide` (a pure decision) say what to write, and write it,
        queueing the session's task in the same step. A write refused because the session
        moved since the read is decided again on a fresh read, up to `attempts` times.

        Returns the session as read and what `decide` answered (a `Change` is written by
        then; anything else is not); None when the session kept changing.
        """
        for _ in range(attempts):
            session = await self.get(session_id)
            decided = decide(session)
            if not isinstance(decided, Change):
                return session, decided
            if session is None:
                raise ValueError(f"a change decided for a missing session {session_id}")
            try:
                await self.change(session, decided, queue=True)
            except StaleState:
                continue
            return session, decided
        return None

    async def replicated(self, session_id: str) -> None:
        """Return once the required replicas hold everything stored for the session so far
        (at once when none is required); raises `NotReplicated` when they do not in time."""
        if self._replication.replicas:
            await self._replication.run(self._redis, self._touch, [session_key(session_id)], [])

    async def prune_expired(self, now: float, *, limit: int) -> Pruned:
        """One batch: drop up to `limit` expired sessions from the listing index."""
        looked_at, dropped = await self._prune(
            keys=[INDEX_CREATED, EXPIRING], args=[repr(now), limit, session_key("")]
        )
        return Pruned(int(looked_at), int(dropped))

    async def requeue_due(self, now: float, *, limit: int, hold_for: float) -> list[str]:
        """Queue again up to `limit` sessions whose due time has passed; returns their ids.

        Each is pushed `hold_for` seconds ahead in the due set first, so a crash between the
        two steps only delays it. A session that cannot be queued is logged and skipped: one
        bad entry never stops the rest of the batch.
        """
        reply = await self._claim_due(
            keys=[DUE, WORKABLE, PENDING, CONFIRMING],
            args=[repr(now), limit, repr(now + hold_for), session_key("")],
        )
        if text(reply[0]) == "wrongtype":
            raise StoreCorrupt(text(reply[1]))
        if text(reply[0]).startswith("index:"):
            # The sweep goes on; `payhook sessions reindex` puts the indexes back once the
            # key is deleted.
            log.error("due index not kept", extra={"key": text(reply[0]).removeprefix("index:")})
        pairs = [(text(reply[i]), text(reply[i + 1])) for i in range(1, len(reply), 2)]
        queued: list[tuple[str, Envelope]] = []
        for session_id, kind in pairs:
            try:
                envelope = self.envelope(Kind(kind), session_id)
            except ValueError:
                log.error("due session of unknown kind", extra={"session_id": session_id})
                continue
            if envelope is not None:
                queued.append((session_id, envelope))
        if queued:
            async with self._redis.pipeline(transaction=False) as pipe:
                for _, envelope in queued:
                    pipe.lpush(envelope.queue, envelope.body)
                await pipe.execute()
        return [session_id for session_id, _ in queued]

    async def failed_ids(
        self,
        *,
        kind: str | None = None,
        shop: str | None = None,
        since: float | None = None,
        until: float | None = None,
        limit: int = 1000,
    ) -> list[str]:
        """Failed sessions, oldest failure first, from the narrowest index that applies."""
        index = failed_index(kind=kind, shop=shop if kind is None else None)
        low = "-inf" if since is None else repr(since)
        high = "+inf" if until is None else repr(until)
        ids = [text(i) for i in await self._redis.zrangebyscore(index, low, high)]
        if kind is not None and shop is not None:
            in_shop = await self._redis.zrangebyscore(failed_index(shop=shop), low, high)
            wanted = {text(i) for i in in_shop}
            ids = [i for i in ids if i in wanted]
        return ids[:limit]

    async def due_count(self) -> int:
        return int(await self._redis.zcard(DUE))

    async def build_due_index(self, *, limit: int) -> IndexBuild:
        """One batch (about `limit` ids) of indexing a store written before the due summary's
        indexes; `done` once they hold every due session and nothing else."""
        reply = await self._build(
            keys=[DUE, WORKABLE, PENDING, CONFIRMING, DUE_INDEXED], args=[limit, session_key("")]
        )
        if text(reply[0]) == "wrongtype":
            raise StoreCorrupt(text(reply[1]))
        return IndexBuild(int(reply[1]), bool(int(reply[2])))

    async def repair_due_index(self, *, limit: int) -> int:
        """Put right the first entries of each index that break its rule, stopping at the
        first that holds (at most `limit` in all); returns how many were put right."""
        reply = await self._repair(
            keys=[DUE, WORKABLE, PENDING, CONFIRMING], args=[limit, session_key("")]
        )
        if text(reply[0]) == "wrongtype":
            raise StoreCorrupt(text(reply[1]))
        return int(reply[1])

    async def restart_due_index(self) -> None:
        """Build the indexes again from the start; the summary scans until it is done."""
        await self._redis.set(DUE_INDEXED, START)
