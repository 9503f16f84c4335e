"""Holding a lease while working: renew it in the background, stop the work if it is lost.

The renewal runs every third of the lease, so two renewals can fail (a Redis blip) before
the lease lapses. If a renewal finds the lease taken over (the session's fencing token moved
on), the work is cancelled at once: whatever it would still write would be refused anyway,
and it must not start another PSP call for a session someone else now holds.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from typing import Literal, Protocol, TypeVar

from redis.exceptions import RedisError

from errors import LeaseLostError

T = TypeVar("T")


class Leases(Protocol):
    """Where a lease is renewed and released: a session's claims, or a webhook store."""

    async def renew(self, key: str, fence: int, /, *, lease_seconds: float, now: float) -> bool: ...

    async def release(self, key: str, fence: int, /) -> None: ...


log = logging.getLogger("payhook.lease")


async def holding(
    claims: Leases,
    session_id: str,
    fence: int,
    *,
    lease_seconds: float,
    clock: Callable[[], float],
    work: Awaitable[T],
    renewed: Callable[[Literal["kept", "failed", "lost"]], object] = lambda _: None,
) -> T:
    """Run `work` while renewing the lease `fence` on `session_id`; `renewed` hears how
    each renewal went.

    `work` gives the lease up with its last write when it returns; when it fails, or when a
    renewal was sent while it ran, the lease is released here once the renewer has stopped.
    """
    task: asyncio.Task[T] = asyncio.ensure_future(work)
    lost = asyncio.Event()
    # Set when the work is over. The renewer is cancelled too, but a cancellation that
    # reaches it inside a Redis call can be lost there (redis-py turns it into an error of
    # its own, or finishes the call): a renewer relying on it alone went on renewing, and
    # the run held its worker slot until the step timeout.
    stopped = asyncio.Event()
    renewing = False
    interval = lease_seconds / 3

    async def renew() -> None:
        nonlocal renewing
        while not stopped.is_set():
            renewing = True
            try:
                async with asyncio.timeout(interval):
                    kept = await claims.renew(
                        session_id, fence, lease_seconds=lease_seconds, now=clock()
                    )
            except (RedisError, OSError, TimeoutError) as exc:
                if stopped.is_set():
                    return
                # Transient: the lease may still be live; fencing guards the writes if not.
                log.warning(
                    "lease renewal failed",
                    extra={"session_id": session_id, "error": type(exc).__name__},
                )
                renewed("failed")
            else:
                renewed("kept" if kept else "lost")
                if not kept:
                    log.warning("lease lost", extra={"session_id": session_id, "fence": fence})
                    lost.set()
                    task.cancel()
                    return
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(interval):
                    await stopped.wait()

    # Most runs end within one renewal interval: a timer, not a task, waits for the first.
    renewer: asyncio.Task[None] | None = None

    def start_renewing() -> None:
        nonlocal renewer
        if not stopped.is_set():
            renewer = asyncio.ensure_future(renew())

    first_renewal = asyncio.get_running_loop().call_later(interval, start_renewing)
    returned = False
    try:
        result = await task
        returned = True
        return result
    except asyncio.CancelledError:
        if lost.is_set() and not _cancelling():
            raise LeaseLostError(f"session {session_id}: lease lost to another worker") from None
        raise
    finally:
        stopped.set()
        first_renewal.cancel()
        if renewer is not None:
            renewer.cancel()
            # Bounded: a renewal stuck in a Redis call ends by its own timeout, in the
            # background.
            await asyncio.wait({renewer}, timeout=interval)
        if not task.done():
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        if renewing or not returned:
            # Even after a run whose last write released the lease: a renewal sent before
            # the renewer stopped may reach Redis after that write and set the lease again;
            # only a release after the renewer has stopped is final. A run shorter than a
            # renewal interval (most of them) sent none and needs no second round trip.
            with contextlib.suppress(RedisError, OSError, TimeoutError):
                async with asyncio.timeout(interval):
                    await claims.release(session_id, fence)


def _cancelling() -> bool:
    """True when the caller itself is being cancelled (shutdown), not just the work."""
    current = asyncio.current_task()
    return current is not None and current.cancelling() > 0
