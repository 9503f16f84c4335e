"""Where the session Redis stands: its primary, its replicas and the sentinels watching it.

`payhook doctor` prints it and `GET /readyz` returns it, with a warning for every way the
topology can lose an acknowledged session or stop intake.
"""

from __future__ import annotations

import asyncio
from dataclasses import asdict, dataclass, field
from typing import Any

from redis.asyncio import Redis

from config import Settings

SENTINEL_TIMEOUT_SECONDS = 1.0


@dataclass(frozen=True)
class Replica:
    address: str
    state: str
    lag_seconds: int


@dataclass
class Topology:
    mode: str  # "single" or "sentinel"
    role: str
    replicas: list[Replica]
    min_replicas: int
    primary: str | None = None
    # Each sentinel's answer: the primary it names, or why it did not answer.
    sentinels: dict[str, str] = field(default_factory=dict)

    def warnings(self) -> list[str]:
        found = []
        if self.role != "master":
            found.append(f"the session Redis is a {self.role}, not a primary: writes fail")
        online = sum(1 for replica in self.replicas if replica.state == "online")
        if online < self.min_replicas:
            found.append(
                f"{online} replica(s) online, {self.min_replicas} required "
                "(PAYHOOK_REDIS_MIN_REPLICAS): intake answers 503 and reports wait"
            )
        if self.mode == "sentinel":
            answered = [a for a in self.sentinels.values() if not a.startswith("error")]
            named = set(answered)
            reachable = len(answered)
            if reachable <= len(self.sentinels) // 2:
                found.append(
                    f"{reachable} of {len(self.sentinels)} sentinels answer: without a "
                    "majority no failover can be authorized"
                )
            if len(named) > 1:
                found.append(f"the sentinels disagree on the primary: {sorted(named)}")
            if self.min_replicas == 0:
                found.append(
                    "PAYHOOK_REDIS_MIN_REPLICAS is 0: replication is asynchronous, so a "
                    "failover can lose sessions already answered 201"
                )
        return found

    def as_json(self) -> dict[str, Any]:
        return asdict(self)


class SentinelPeers:
    """One client per configured sentinel, kept: a process that asks them on every probe
    (the web's `/readyz`) reuses its connections instead of opening new ones each time."""

    def __init__(self, settings: Settings) -> None:
        self._clients = {
            (host, port): Redis(
                host=host,
                port=port,
                socket_timeout=SENTINEL_TIMEOUT_SECONDS,
                socket_connect_timeout=SENTINEL_TIMEOUT_SECONDS,
                max_connections=2,
            )
            for host, port in settings.redis_sentinels
        }

    async def primary(self, master: str) -> dict[str, str]:
        """Each sentinel's answer: the primary's address, or why it could not say."""
        answers = await asyncio.gather(*(_ask(client, master) for client in self._clients.values()))
        return {f"{h}:{p}": a for (h, p), a in zip(self._clients, answers, strict=True)}

    async def close(self) -> None:
        for client in self._clients.values():
            await client.aclose()


async def read_topology(
    redis: Redis, settings: Settings, sentinels: SentinelPeers | None = None
) -> Topology:
    """The primary's replication state and, with sentinels, what each names the primary;
    `sentinels`: kept clients to ask (else they are opened for this read and closed)."""
    info = await redis.info("replication")
    replicas = []
    for key, value in info.items():
        if key.startswith("slave") and isinstance(value, dict):
            replicas.append(
                Replica(
                    f"{value.get('ip')}:{value.get('port')}",
                    str(value.get("state", "?")),
                    int(value.get("lag", -1)),
                )
            )
    topology = Topology(
        mode="sentinel" if settings.redis_sentinels else "single",
        role=str(info.get("role", "?")),
        replicas=replicas,
        min_replicas=settings.redis_min_replicas,
    )
    if settings.redis_sentinels:
        peers = sentinels or SentinelPeers(settings)
        try:
            topology.sentinels = await peers.primary(settings.redis_sentinel_master)
        finally:
            if sentinels is None:
                await peers.close()
        answers = list(topology.sentinels.values())
        named = [answer for answer in answers if not answer.startswith("error")]
        topology.primary = max(set(named), key=named.count) if named else None
    return topology


async def _ask(sentinel: Redis, master: str) -> str:
    """The primary's address as one sentinel names it, or why it could not say."""
    try:
        address: Any = await sentinel.execute_command(  # type: ignore[no-untyped-call]
            "SENTINEL", "GET-MASTER-ADDR-BY-NAME", master
        )
    except Exception as exc:  # whatever went wrong is the answer
        return f"error: {type(exc).__name__}"
    if not address:
        return f"error: does not monitor {master!r}"
    return ":".join(part.decode() if isinstance(part, bytes) else str(part) for part in address)
