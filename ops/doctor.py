"""`payhook doctor`: can this configuration keep every session, and does only Shopify get in?
Exits 1 on any FAIL or WARN."""

from __future__ import annotations

from urllib.parse import urlsplit

from redis.asyncio import Redis

from config import Settings
from errors import TokenUnreadable
from readouts.stats import DUE_SCAN
from redisio.connect import tool_client
from redisio.durability import durability_warnings
from redisio.topology import Topology, read_topology
from sessions.due_index import IndexState, index_state
from shops.tokens import ShopTokens, token_cipher
from webhook.auth import ShopifyAuth
from webhook.signing import MIN_SECRET_CHARS, secret_problem


async def run_doctor(settings: Settings) -> int:
    status = await _redis_findings(settings)
    # Whether or not it answers, a broker that is not the session Redis never carries a
    # session to a worker: intake queues each one in the session Redis.
    problem = settings.broker_problem
    if problem is not None:
        print(f"FAIL  {problem}")
        status = 1
    else:
        print("ok    broker is the session Redis")
    if settings.shopify_access_token is None:
        print("note  no PAYHOOK_SHOPIFY_ACCESS_TOKEN: every shop needs `payhook shops add`")
    for line in install_lines(settings):
        print(line)
        status = 1 if line.startswith("WARN") else status
    if settings.shopify_api_secret is None:
        print(
            "note  no PAYHOOK_SHOPIFY_API_SECRET: Shopify's webhooks (app/uninstalled, the "
            "privacy topics Shopify requires) are refused with 404 (docs/webhooks.md)"
        )
    for warning in security_warnings(settings):
        print(f"WARN  {warning}")
        status = 1
    return status


async def _redis_findings(settings: Settings) -> int:
    """Reachability, durability, topology and stored tokens of the session Redis."""
    redis, where = tool_client(settings), _where(settings)
    try:
        try:
            await redis.ping()
        except Exception as exc:  # any failure to connect is the finding
            print(f"FAIL  redis at {_safe(where)} is unreachable: {type(exc).__name__}: {exc}")
            return 1
        print(f"ok    redis at {_safe(where)} answers")
        warnings = [f"redis: {warning}" for warning in await durability_warnings(redis)]
        topology = await read_topology(redis, settings)
        for line in topology_lines(topology):
            print(line)
        warnings.extend(topology.warnings())
        warnings.extend(await _token_warnings(settings, redis))
        lines, found = due_index_findings(await index_state(redis))
        for line in lines:
            print(line)
        warnings.extend(found)
    finally:
        await redis.aclose()
    for warning in warnings:
        print(f"WARN  {warning}")
    return 1 if warnings else 0


def topology_lines(topology: Topology) -> list[str]:
    """The topology as `payhook doctor` prints it."""
    lines = []
    if topology.mode == "sentinel":
        lines.append(f"ok    primary {topology.primary} (named by the sentinels)")
        for address, answer in topology.sentinels.items():
            lines.append(
                f"{'ok   ' if not answer.startswith('error') else 'FAIL '} "
                f"sentinel {address}: {answer}"
            )
    replicas = (
        ", ".join(f"{r.address} {r.state} lag {r.lag_seconds}s" for r in topology.replicas)
        or "none"
    )
    lines.append(
        f"note  role {topology.role}; replicas: {replicas}; "
        f"a 201 waits for {topology.min_replicas} of them (PAYHOOK_REDIS_MIN_REPLICAS)"
    )
    return lines


def due_index_findings(state: IndexState) -> tuple[list[str], list[str]]:
    """What `payhook doctor` says of the due summary's indexes: lines, then warnings."""
    if state.built and state.indexed == state.due:
        return [f"ok    due summary indexed ({state.due} due sessions)"], []
    if state.built:
        return [], [
            f"the due summary's indexes hold {state.indexed} entries for {state.due} due "
            "sessions (due sessions whose data is gone, or sessions an older version moved): "
            "`payhook sessions reindex` builds them again"
        ]
    if not state.due:
        return ["ok    due summary: nothing due (indexed from the first session)"], []
    where = "not begun" if state.phase is None else f"at the {state.phase} set"
    return [
        f"note  the sweeper is indexing the due set ({state.due} sessions, {where}): until it "
        f"is done the metrics read the {DUE_SCAN:,} most due sessions only "
        "(`payhook sessions reindex` does it at once)"
    ], []


def install_lines(settings: Settings) -> list[str]:
    """Whether merchants can install the app through OAuth (docs/install.md)."""
    problem = settings.install_problem
    if settings.shopify_api_key is None and settings.shopify_api_secret is None:
        return [
            "note  no PAYHOOK_SHOPIFY_API_KEY and PAYHOOK_SHOPIFY_API_SECRET: the OAuth install "
            "is off (/shopify/install answers 404); store tokens with `payhook shops add`"
        ]
    if problem is not None:
        return [f"WARN  {problem}: /shopify/install and /shopify/callback answer 404"]
    callback = settings.install_callback_url
    lines = [
        f"ok    OAuth install: client id {settings.shopify_api_key}, scopes "
        f"{','.join(settings.shopify_scopes)}; Shopify sends merchants back to {callback} "
        "(list it among the app's allowed redirection URLs)"
    ]
    host = urlsplit(callback).hostname or ""
    if not callback.startswith("https://") and host not in ("127.0.0.1", "localhost", "::1"):
        lines.append(
            f"WARN  the install's redirect URL {callback} is not https: set PAYHOOK_PUBLIC_URL "
            "to the https address merchants reach"
        )
    return lines


def _where(settings: Settings) -> str:
    if settings.redis_sentinels:
        sentinels = ",".join(f"{h}:{p}" for h, p in settings.redis_sentinels)
        return f"sentinel {settings.redis_sentinel_master}@{sentinels}"
    return settings.redis_url


def security_warnings(settings: Settings) -> list[str]:
    """What lets someone other than Shopify, the PSP or the operator in."""
    found = []
    secret = settings.simulator_webhook_secret
    problem = secret_problem(secret)
    if secret is not None and problem is not None:
        found.append(f"{problem}: anyone can sign a payment callback")
    if not ShopifyAuth.from_settings(settings).enforced:
        found.append(
            "no PAYHOOK_TLS_CLIENT_CA_FILE and no PAYHOOK_TRUSTED_PROXIES: the session routes "
            "accept any client, not only Shopify (docs/operations.md, mTLS)"
        )
    admin = settings.admin_token
    if admin is not None and len(admin.get_secret_value()) < MIN_SECRET_CHARS:
        found.append(
            f"PAYHOOK_ADMIN_TOKEN is shorter than {MIN_SECRET_CHARS} characters: the dashboard's "
            "login form lets anyone who reaches it try tokens"
        )
    if settings.flower_basic_auth is None and not settings.flower_on_loopback:
        found.append(
            f"Flower on {settings.flower_address} without PAYHOOK_FLOWER_BASIC_AUTH: "
            "`payhook flower` will refuse to start"
        )
    return found


async def _token_warnings(settings: Settings, redis: Redis) -> list[str]:
    tokens = ShopTokens(redis, token_cipher(settings.token_key_list))
    found = []
    plain = await tokens.plain_text()
    if plain:
        found.append(
            f"{len(plain)} shop token(s) stored in plain text ({_few(plain)}): "
            "`payhook shops rotate` encrypts them"
        )
    unreadable = []
    for shop in await tokens.shops():
        try:
            await tokens.token_for(shop)
        except TokenUnreadable:
            unreadable.append(shop)
    if unreadable:
        found.append(
            f"{len(unreadable)} shop token(s) no key in PAYHOOK_TOKEN_KEYS decrypts "
            f"({_few(unreadable)}): their sessions fail until the key or the token is fixed"
        )
    return found


def _few(names: list[str]) -> str:
    return ", ".join(names[:5]) + (f" and {len(names) - 5} more" if len(names) > 5 else "")


def _safe(url: str) -> str:
    """The URL without its password."""
    if "@" not in url:
        return url
    scheme, rest = url.split("://", 1)
    return f"{scheme}://***@{rest.split('@', 1)[1]}"
