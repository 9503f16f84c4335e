"""Every Redis key of the session store, named once.

| key | type | holds |
|---|---|---|
| `s:{id}` | hash | the session's fields (see `Session`) plus its request fingerprint |
| `timeline:{id}` | list | JSON `TimelineEvent`s, oldest first |
| `lease:{id}` | string | the fencing token of the worker holding the session, with an expiry |
| `idx:created` | sorted set | session id by creation time, for listing |
| `idx:expiring` | sorted set | reported session id by the time its data expires (retention) |
| `due` | sorted set | every unfinished session id by the time it must next be looked at |
| `idx:workable` | sorted set | due session id a worker still has to move, by creation time |
| `idx:pending` | sorted set | due payment reported pending, by the time its window closes |
| `idx:confirming` | sorted set | payment awaiting Shopify's confirmation, by creation time |
| `idx:due-indexed` | string | `done` once the three indexes hold every due session (`due_index`) |
| `idx:failed[:kind:{k}│:shop:{s}]` | sorted sets | failed sessions by time of failure |
| `shops` | hash | each shop's access token, sealed by `shops.tokens`; a claim reads it raw |
| `psp:{connector}:{op}:{id}` | string | a connector's send journal entry (`journal`) |
| `rate:{shop}` | string | the shop's rate-limit state, when `PAYHOOK_SHOP_RATE_LIMIT` is set |
| `beat:lock` | string | the `payhook beat` that may send the sweeper's schedule, with an expiry |
| `logout:{login}` | string | a dashboard login ended by its logout, until it would have expired |

All keys live under `payhook:`. Keys cannot collide whatever an id contains: a key is a fixed
prefix followed by the id and nothing after it, and no prefix is the start of another prefix
or of a fixed key (`tests/sessions/test_keys.py` holds every key builder to that).
"""

from __future__ import annotations

PREFIX = "payhook:"
INDEX_CREATED = f"{PREFIX}idx:created"
EXPIRING = f"{PREFIX}idx:expiring"
# Retention defaults (settings: PAYHOOK_RETENTION_DAYS, PAYHOOK_LEDGER_RETENTION_DAYS).
RETENTION_SECONDS = 30 * 86400
LEDGER_RETENTION_SECONDS = 400 * 86400
# A timeline keeps its newest events; a session that retries for days cannot grow it past this.
TIMELINE_MAX_EVENTS = 200
DUE = f"{PREFIX}due"
# The due-set summary's indexes and how far they are built (`sessions.due_index`).
WORKABLE = f"{PREFIX}idx:workable"
PENDING = f"{PREFIX}idx:pending"
CONFIRMING = f"{PREFIX}idx:confirming"
DUE_INDEXED = f"{PREFIX}idx:due-indexed"
BEAT_LOCK = f"{PREFIX}beat:lock"
# The shop token registry. Kept by `shops.tokens`; named here because a claim reads a shop's
# value in the same Lua call, so the run knows at once whether its report can be sent.
SHOPS = f"{PREFIX}shops"
FAILED = f"{PREFIX}idx:failed"

# Lua shared by the store's write scripts. Redis does not roll a script back: a write that
# fails halfway (a key holding another type) would leave the first writes in place. Each
# script checks every key it writes before the first write and refuses with the key's name.
WRONG_TYPE = """
local function wrong_type(expected)
  for i = 1, #expected, 2 do
    local key, want = expected[i], expected[i + 1]
    if key ~= '' then
      local found = redis.call('TYPE', key)['ok']
      if found ~= 'none' and found ~= want then return key end
    end
  end
  return nil
end
"""


def failed_index(*, kind: str | None = None, shop: str | None = None) -> str:
    if kind is not None:
        return f"{FAILED}:kind:{kind}"
    if shop is not None:
        return f"{FAILED}:shop:{shop}"
    return FAILED


def session_key(session_id: str) -> str:
    return f"{PREFIX}s:{session_id}"


def timeline_key(session_id: str) -> str:
    return f"{PREFIX}timeline:{session_id}"


def lease_key(session_id: str) -> str:
    return f"{PREFIX}lease:{session_id}"


def psp_journal_key(connector: str, op: str, idempotency_key: str) -> str:
    return f"{PREFIX}psp:{connector}:{op}:{idempotency_key}"


def rate_key(shop: str) -> str:
    return f"{PREFIX}rate:{shop}"


def admin_attempts_key(client: str) -> str:
    """Failed admin-token attempts of one client (an address), or of all (`*`)."""
    return f"{PREFIX}admin-attempts:{client}"


def logout_key(login: str) -> str:
    return f"{PREFIX}logout:{login}"


def text(value: object) -> str:
    """A Redis reply as text (replies are bytes unless the client decodes them)."""
    return value.decode() if isinstance(value, bytes) else str(value)
