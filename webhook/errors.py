"""Error responses: every refusal is JSON `{"error": {"code", "message", "field"}}`.

Bad input is a 4xx naming what was wrong; an unexpected failure is a bare 5xx JSON body
(logged with its trace, never sent with one) so Shopify retries it.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable

from aiohttp import web
from pydantic import ValidationError
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import OutOfMemoryError, ReadOnlyError, ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError

from errors import ApiError
from errors.replication import NotReplicated
from sessions.store import SessionStore

log = logging.getLogger("payhook.webhook")


def not_replicated(what: str, exc: Exception) -> ApiError:
    """The 503 for a write that stands but is not yet on the replicas it must be on before
    payhook answers on it (`redisio.replication`): the sender retries, and the repeat is
    answered once the replicas hold it."""
    return ApiError(
        503,
        "not_replicated",
        f"{what} is stored but not yet on its Redis replicas ({exc}); retry",
        headers={"Retry-After": "1"},
    )


# Messages may quote what was sent (an id, a path); the cap keeps every refusal small.
MAX_MESSAGE_CHARS = 300


def error_response(status: int, code: str, message: str, field: str | None = None) -> web.Response:
    body: dict[str, object] = {"code": code, "message": _capped(message)}
    if field is not None:
        body["field"] = _capped(field)
    return web.json_response({"error": body}, status=status)


async def held_by_replicas(store: SessionStore, session_id: str, what: str) -> None:
    """Return once the required replicas hold everything stored for the session; the 503
    `not_replicated` otherwise (the sender's repeat is answered once they do)."""
    try:
        await store.replicated(session_id)
    except NotReplicated as exc:
        raise not_replicated(what, exc) from None


def invalid(exc: ValidationError) -> ApiError:
    """The 422 for a body or query its model refused, naming the first field that does not
    fit: `missing_field` when it is absent, `invalid_field` otherwise."""
    first = exc.errors()[0]
    field = ".".join(str(part) for part in first["loc"]) or None
    if first["type"] == "missing":
        return ApiError(422, "missing_field", f"{field} is required", field)
    message = first["msg"].removeprefix("Value error, ")
    return ApiError(422, "invalid_field", f"{field}: {message}", field)


def kept_changing(what: str) -> ApiError:
    """A write that lost its race with other writers again and again: retry shortly."""
    return ApiError(503, "busy", f"{what} kept changing; retry", headers={"Retry-After": "1"})


def _capped(text: str) -> str:
    return text if len(text) <= MAX_MESSAGE_CHARS else text[: MAX_MESSAGE_CHARS - 1] + "…"


Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

# Redis is away rather than broken: down, restarting, loading, no primary named yet by the
# sentinels, or a demoted primary refusing writes during a failover. Each passes in seconds,
# so the answer is a 503 Shopify retries shortly; a script or programming error stays a 500.
STORE_AWAY = (RedisConnectionError, RedisTimeoutError, ReadOnlyError)


def _pool_exhausted(exc: Exception) -> bool:
    """Every connection of the web's bounded pool stayed busy for the pool's whole wait:
    Redis is up and the process is past its capacity. redis-py says so only by this
    ConnectionError raised from the wait's timeout."""
    return isinstance(exc, RedisConnectionError) and isinstance(exc.__cause__, TimeoutError)


# Seconds a full Redis is given before the sender tries again: it stays full until an
# operator adds memory or retention frees some, so retrying within a second only adds load.
STORE_FULL_RETRY_AFTER = 30


def _store_full(exc: Exception) -> bool:
    """Redis is past its `maxmemory` and, with `noeviction`, refuses every write. Redis 7
    keeps the `OOM` error code for a script's write (OutOfMemoryError); Redis 6 wraps it in
    the script's own error text."""
    return isinstance(exc, OutOfMemoryError) or (
        isinstance(exc, ResponseError) and "OOM command not allowed" in str(exc)
    )


def failure_code(exc: Exception) -> str:
    """The code of the answer to an exception that is not a refusal: `overloaded`,
    `store_unavailable` or `store_full` (503s Shopify retries), else `internal_error` (500)."""
    if isinstance(exc, STORE_AWAY):
        return "overloaded" if _pool_exhausted(exc) else "store_unavailable"
    if _store_full(exc):
        return "store_full"
    return "internal_error"


# aiohttp's own refusals, named as payhook's are where the reason text would differ: a form
# past the body limit is the same 413 as a JSON body past it.
_CODES = {413: "payload_too_large"}


@web.middleware
async def json_errors(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        return await handler(request)
    except ApiError as exc:
        answer = error_response(exc.status, exc.code, exc.message, exc.field)
        answer.headers.update(exc.headers or {})
        return answer
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        code = _CODES.get(exc.status) or exc.reason.lower().replace(" ", "_")
        return error_response(exc.status, code, exc.reason)
    except Exception as exc:
        code = failure_code(exc)
        if code == "internal_error":
            log.exception("unhandled error", extra={"path": request.path})
            return error_response(500, code, "The request could not be processed.")
        if code == "store_full":
            # Every write fails alike until Redis has room: a page for an operator, and a
            # retry for Shopify that is not answered from a session that was never stored.
            log.error(
                "store full: Redis refuses writes past its maxmemory",
                extra={"path": request.path, "error": str(exc)},
            )
            answer = error_response(503, code, "The session store is full; retry later.")
            answer.headers["Retry-After"] = str(STORE_FULL_RETRY_AFTER)
            return answer
        if code == "overloaded":
            log.warning("overloaded: no Redis connection free", extra={"path": request.path})
            answer = error_response(503, code, "payhook is at capacity; retry shortly.")
        else:
            log.warning("store unavailable", extra={"path": request.path, "error": repr(exc)})
            answer = error_response(503, code, "The session store is unavailable.")
        answer.headers["Retry-After"] = "1"
        return answer
