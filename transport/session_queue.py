"""The session queue as the worker consumes it: Celery's messages, taken many at a time.

The intake writes one Celery task message per session onto QUEUE, in the Redis list layout of
kombu's Redis transport (`transport.messages`). Celery's own consumer would take them one
BRPOP at a time, record each in kombu's `unacked` hash in a transaction of its own, and ack
each in another: about a millisecond of CPU per session before any work. `SessionQueue` keeps
kombu's layout and its promises and pays per batch instead:

- `take` pops up to N messages and records each as delivered and unacknowledged, exactly as
  kombu does (`unacked` holds `[message, exchange, routing_key]` under the delivery tag,
  `unacked_index` the time), in one script: a message is never out of the list without its
  record. kombu's visibility-timeout restore, which every Celery consumer of this Redis runs,
  puts the messages of a worker that died back on the queue; their sessions come back sooner
  through the due set, which holds every session from intake.
- `wait` blocks for one message when the list is empty, so an idle worker costs nothing, and
  says whether more are queued behind it (then the next call is a `take`, else a `wait`).
- `ack` forgets many deliveries in one round trip; `give_back` puts deliveries not worked on
  back at the head of the queue (a warm shutdown), as kombu does for a closing channel.
"""

from __future__ import annotations

import base64
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import orjson
from redis.asyncio import Redis

from errors import BadMessage
from transport.messages import QUEUE

# kombu's Redis transport defaults (payhook sets no transport option that changes them).
UNACKED = "unacked"
UNACKED_INDEX = "unacked_index"
# W3C trace context headers, as `transport.messages.CeleryHandoff` writes them.
TRACE_HEADERS = ("traceparent", "tracestate")

# Records `item` as kombu's QoS does on delivery. A message that is not JSON or carries no
# delivery tag (nothing kombu could have written) is still handed out, unrecorded, so the
# consumer can say what it was and drop it.
_RECORD = """
local function record(item)
  local ok, message = pcall(cjson.decode, item)
  if ok and type(message) == 'table' and type(message.properties) == 'table' then
    local tag = message.properties.delivery_tag
    local info = message.properties.delivery_info
    if type(tag) == 'string' and type(info) == 'table' then
      redis.call('ZADD', KEYS[2], ARGV[2], tag)
      redis.call('HSET', KEYS[3], tag, '[' .. item .. ',' .. cjson.encode(info.exchange or '')
        .. ',' .. cjson.encode(info.routing_key or KEYS[1]) .. ']')
    end
  end
end
"""

_TAKE = (
    _RECORD
    + """
local out = {}
for i = 1, tonumber(ARGV[1]) do
  local item = redis.call('RPOP', KEYS[1])
  if not item then break end
  record(item)
  out[#out + 1] = item
end
return out
"""
)

# ARGV[3]: a message BRPOP took. Returns how many are still queued, so the consumer knows
# whether to take more or to block again.
_RECORD_ONE = (
    _RECORD
    + """
record(ARGV[3])
return redis.call('LLEN', KEYS[1])
"""
)

# ARGV: tag, message, tag, message, ...: only deliveries still recorded go back (kombu's
# restore may have put one back already).
_GIVE_BACK = """
local back = 0
for i = 1, #ARGV, 2 do
  if redis.call('HDEL', KEYS[3], ARGV[i]) == 1 then
    redis.call('ZREM', KEYS[2], ARGV[i])
    redis.call('RPUSH', KEYS[1], ARGV[i + 1])
    back = back + 1
  end
end
return back
"""


@dataclass(frozen=True)
class Delivery:
    """One message taken from the queue: what the worker runs, and how to ack it."""

    raw: bytes
    tag: str | None
    task: str
    task_id: str
    session_id: str
    argsrepr: str
    # Epoch seconds before which the task must not run (a Celery countdown), or None.
    eta: float | None
    trace_parent: dict[str, str] | None


def decode(raw: bytes) -> Delivery:
    """A Celery protocol-2 message for `task(session_id)`; `BadMessage` for anything else."""
    tag: str | None = None
    try:
        message = orjson.loads(raw)
        headers: dict[str, Any] = message["headers"]
        properties: dict[str, Any] = message["properties"]
        found = properties.get("delivery_tag")
        tag = found if isinstance(found, str) else None
        body = message["body"]
        if properties.get("body_encoding") == "base64":
            body = base64.b64decode(body)
        args, kwargs, _ = orjson.loads(body)
        session_id = args[0] if args else kwargs["session_id"]
        task = headers["task"]
        eta = _epoch(headers.get("eta"))
    except (orjson.JSONDecodeError, KeyError, IndexError, TypeError, ValueError) as exc:
        raise BadMessage(f"not a session task message: {exc!r}", tag) from None
    if not isinstance(session_id, str) or not isinstance(task, str):
        raise BadMessage(f"not a session task message: {task!r}({session_id!r})", tag)
    trace = {name: headers[name] for name in TRACE_HEADERS if isinstance(headers.get(name), str)}
    task_id, argsrepr = headers.get("id"), headers.get("argsrepr")
    return Delivery(
        raw=raw,
        tag=tag,
        task=task,
        task_id=task_id if isinstance(task_id, str) else "",
        session_id=session_id,
        argsrepr=argsrepr if isinstance(argsrepr, str) else repr((session_id,)),
        eta=eta,
        trace_parent=trace or None,
    )


def _epoch(eta: Any) -> float | None:
    if not isinstance(eta, str):
        return None
    # A naive time is UTC, as Celery writes it with `enable_utc`.
    parsed = datetime.fromisoformat(eta)
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return parsed.timestamp()


class SessionQueue:
    def __init__(self, redis: Redis, queue: str = QUEUE) -> None:
        self._redis = redis
        self._keys = (queue, UNACKED_INDEX, UNACKED)
        self._take = redis.register_script(_TAKE)
        self._record = redis.register_script(_RECORD_ONE)
        self._give_back = redis.register_script(_GIVE_BACK)

    async def take(self, count: int) -> list[bytes]:
        """Up to `count` messages, oldest first, each recorded as unacknowledged."""
        taken: list[bytes] = await self._take(keys=self._keys, args=[count, time.time()])
        return taken

    async def wait(self, seconds: float) -> tuple[list[bytes], int]:
        """Block up to `seconds` for one message (recorded like `take`); [] when none came.
        Also says how many messages were left behind it."""
        # BRPOP and the record are two calls, as in kombu's own consumer: a worker dying
        # between them loses the message, never the session (the due set holds it).
        popped = await self._redis.brpop([self._keys[0]], timeout=seconds)
        if popped is None:
            return [], 0
        raw = popped[1] if isinstance(popped[1], bytes) else popped[1].encode()
        left: int = await self._record(keys=self._keys, args=[1, time.time(), raw])
        return [raw], left

    async def ack(self, tags: Sequence[str]) -> None:
        if not tags:
            return
        async with self._redis.pipeline(transaction=False) as pipe:
            pipe.zrem(UNACKED_INDEX, *tags)
            pipe.hdel(UNACKED, *tags)
            await pipe.execute()

    async def give_back(self, deliveries: Sequence[Delivery]) -> int:
        """Put deliveries no run finished back where the next `take` finds them first."""
        args: list[str | bytes] = []
        for delivery in deliveries:
            if delivery.tag is not None:
                args += [delivery.tag, delivery.raw]
        if not args:
            return 0
        back: int = await self._give_back(keys=self._keys, args=args)
        return back
