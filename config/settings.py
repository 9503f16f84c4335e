"""The one reader of the environment: every `PAYHOOK_*` setting, typed.

Each entry point (`payhook serve`, `payhook worker`, ...) builds a `Settings` once and passes
it down; no other module looks at `os.environ`.
"""

from __future__ import annotations

import os
import re
import string
from ipaddress import IPv4Network, IPv6Network, ip_address, ip_network
from pathlib import Path
from typing import Annotated, Literal
from urllib.parse import parse_qs, urlsplit

from cryptography import x509
from cryptography.fernet import Fernet
from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from config.shop_domains import SHOPIFY_SUFFIXES, check_suffix

ConnectorName = Literal["simulator", "http", "ledyer", "aplazame", "purchase", "bigcommerce"]
# Whether a connector's PSP account moves real money (`live`) or is the provider's sandbox
# (`test`): Shopify's test-mode sessions are only ever sent to a `test` account.
Account = Literal["live", "test"]
ACCOUNT_SETTINGS: dict[str, str] = {
    "http": "PAYHOOK_HTTP_CONNECTOR_ACCOUNT",
    "ledyer": "PAYHOOK_LEDYER_ACCOUNT",
    "aplazame": "PAYHOOK_APLAZAME_ACCOUNT",
    "purchase": "PAYHOOK_PURCHASE_ACCOUNT",
    "bigcommerce": "PAYHOOK_BIGCOMMERCE_ACCOUNT",
}

Ladder = Annotated[tuple[float, ...], NoDecode]
Suffixes = Annotated[tuple[str, ...], NoDecode]


Scopes = Annotated[tuple[str, ...], NoDecode]
ProxyList = Annotated[tuple[IPv4Network | IPv6Network, ...], NoDecode]
Sentinels = Annotated[tuple[tuple[str, int], ...], NoDecode]


def _parse_sentinels(value: object) -> object:
    if isinstance(value, str):
        found = []
        for entry in (part.strip() for part in value.split(",")):
            if not entry:
                continue
            host, colon, port = entry.rpartition(":")
            if not (colon and host and port.isdigit() and 0 < int(port) < 65536):
                raise ValueError(f"sentinels are host:port, comma-separated; not {entry!r}")
            found.append((host.strip("[]"), int(port)))
        return tuple(found)
    return value


def _parse_networks(value: object) -> object:
    if isinstance(value, str):
        entries = [entry.strip() for entry in value.split(",") if entry.strip()]
        try:
            return tuple(ip_network(entry) for entry in entries)
        except ValueError as exc:
            raise ValueError(
                f"a list of IP addresses or networks, comma-separated: {exc}"
            ) from None
    return value


def _split_keys(text: str) -> tuple[str, ...]:
    return tuple(key.strip() for key in text.split(",") if key.strip())


def _parse_ladder(value: object) -> object:
    if isinstance(value, str):
        steps = tuple(float(step) for step in value.replace(" ", "").split(",") if step)
        if not steps or any(step < 0 for step in steps):
            raise ValueError("a retry ladder is a comma-separated list of seconds >= 0")
        return steps
    return value


_SCOPE = re.compile(r"(?:unauthenticated_)?[a-z]+(?:_[a-z]+)+")


def _parse_scopes(value: object) -> object:
    if isinstance(value, str):
        value = tuple(part for part in value.replace(" ", "").split(",") if part)
    if isinstance(value, tuple | list):
        if not value or not all(isinstance(s, str) and _SCOPE.fullmatch(s) for s in value):
            raise ValueError("access scopes, comma-separated, such as 'write_payment_sessions'")
        return tuple(value)
    return value


def _shop_template(value: str) -> str:
    """A URL template whose only placeholder is `{shop}`; a typo fails at start."""
    try:
        names = {name for _, name, _, _ in string.Formatter().parse(value) if name is not None}
    except ValueError:
        names = {"?"}
    if names != {"shop"}:
        raise ValueError(f"a URL with {{shop}} as its only placeholder, not {value!r}")
    return value


# What the buyer page template may name (`webhook.sessions` fills each in).
BUYER_PAGE_PLACEHOLDERS = frozenset({"session_id", "amount", "currency", "callback", "return_url"})


def _buyer_page_template(value: str) -> str:
    """A URL template naming only the buyer page's placeholders: a typo fails at start, not
    as a 500 on every payment session."""
    try:
        names = {name for _, name, _, _ in string.Formatter().parse(value) if name is not None}
    except ValueError:
        names = {"?"}
    unknown = names - BUYER_PAGE_PLACEHOLDERS
    if unknown:
        allowed = ", ".join(f"{{{name}}}" for name in sorted(BUYER_PAGE_PLACEHOLDERS))
        raise ValueError(f"a URL with placeholders among {allowed} only, not {value!r}")
    return value


def _parse_suffixes(value: object) -> object:
    if isinstance(value, str):
        value = tuple(part for part in value.replace(" ", "").split(",") if part)
    if isinstance(value, tuple | list):
        if not value:
            raise ValueError("give at least one shop domain suffix")
        return tuple(check_suffix(str(part)) for part in value)
    return value


# Shopify's limit on a pending payment's window ("recommended to be within 3 days"; past it,
# `OUT_OF_RANGE_PENDING_EXPIRES_AT`), and what payhook keeps of it for a clock of ours ahead
# of Shopify's. The window is counted from Shopify's payment request, which comes before the
# PSP's word and every report of it, so Shopify is only ever sent a shorter one.
SHOPIFY_PENDING_LIMIT_SECONDS = 3 * 86400.0
PENDING_MARGIN_SECONDS = 600.0
PENDING_MAX_SECONDS = SHOPIFY_PENDING_LIMIT_SECONDS - PENDING_MARGIN_SECONDS
# Two days and 23 hours: an hour inside the limit.
PENDING_DEFAULT_SECONDS = SHOPIFY_PENDING_LIMIT_SECONDS - 3600.0


class Settings(BaseSettings):
    # A refused value is never repeated in the error: many of these are secrets.
    model_config = SettingsConfigDict(
        env_prefix="PAYHOOK_",
        # `VAR=` (or compose's `${VAR:-}`) means unset: an empty admin token would be one
        # that "Bearer " matches.
        env_ignore_empty=True,
        extra="ignore",
        frozen=True,
        hide_input_in_errors=True,
        populate_by_name=True,
    )

    # Where the truth lives, and the Celery transport (defaults to the same Redis).
    redis_url: str = "redis://127.0.0.1:6379/0"
    broker_url: str | None = None
    # Redis Sentinel (docs/scaling.md): the sentinels, host:port comma-separated, and the
    # name they monitor the primary under. Set, the store and the broker follow whichever
    # server the sentinels name primary; REDIS_URL then only gives the database and password.
    redis_sentinels: Sentinels = ()
    redis_sentinel_master: str = "payhook"
    # Replication is asynchronous: a primary can die with writes no replica saw. With this
    # many replicas required, a 201 and a report to Shopify wait (Redis WAIT) until that many
    # replicas hold what they rest on; past the timeout, intake answers 503 (Shopify retries)
    # and the worker reports later.
    redis_min_replicas: int = Field(default=0, ge=0, le=16)
    redis_replica_timeout_seconds: float = Field(default=0.5, gt=0)

    # Shopify Payments Apps GraphQL API.
    shopify_graphql_url: str = "https://{shop}/payments_apps/api/{version}/graphql.json"
    shopify_api_version: str = "2025-10"
    shopify_access_token: SecretStr | None = None
    shopify_timeout_seconds: float = Field(default=10.0, gt=0)
    # The shops payhook accepts sessions from, and sends access tokens to: one DNS label and
    # one of these suffixes (comma-separated). Widen only for a sandbox playing Shopify.
    shop_domain_suffixes: Suffixes = SHOPIFY_SUFFIXES
    # The app's own life at Shopify (docs/install.md): the OAuth install, which stores each
    # shop's offline token (encrypted, as `payhook shops add` does), and the onboarding call
    # that tells Shopify the shop is ready. Without the key and the secret the install routes
    # answer 404. The authorize and token URLs are templates, so a sandbox can play them.
    # Shopify also signs its own webhooks (`POST /shopify/webhooks`, `X-Shopify-Hmac-Sha256`)
    # with the secret; while it is rotated, the previous one is still accepted there. Without
    # a secret the webhook route answers 404.
    shopify_api_key: str | None = Field(default=None, max_length=255)
    shopify_api_secret: SecretStr | None = None
    shopify_api_secret_previous: SecretStr | None = None
    shopify_scopes: Scopes = ("write_payment_gateways", "write_payment_sessions")
    shopify_authorize_url: str = "https://{shop}/admin/oauth/authorize"
    shopify_token_url: str = "https://{shop}/admin/oauth/access_token"  # noqa: S105 - a URL

    # PSP connector.
    connector: ConnectorName = "simulator"
    psp_timeout_seconds: float = Field(default=15.0, gt=0)
    # PSP connectors: where each provider is and its credentials (docs/connectors.md).
    # Only the block of the chosen PAYHOOK_CONNECTOR is read. Each account is taken as live
    # unless set to `test` (the simulator is always a test account).
    http_connector_url: str | None = None
    http_connector_token: SecretStr | None = None
    http_connector_account: Account = "live"
    ledyer_base_url: str = "https://api.sandbox.ledyer.com"
    ledyer_access_token: SecretStr | None = None
    ledyer_account: Account = "live"
    aplazame_base_url: str = "https://api.aplazame.com"
    aplazame_private_key: SecretStr | None = None
    aplazame_account: Account = "live"
    purchase_graphql_url: str | None = None
    purchase_token: SecretStr | None = None
    purchase_account: Account = "live"
    bigcommerce_base_url: str = "https://api.bigcommerce.com"
    bigcommerce_store_hash: str | None = None
    bigcommerce_access_token: SecretStr | None = None
    bigcommerce_account: Account = "live"
    # End of PSP connectors.

    # Inbound HTTP.
    host: str = "127.0.0.1"
    port: int = Field(default=8080, ge=0, le=65535)
    max_body_bytes: int = Field(default=64 * 1024, gt=0)
    # Optional: at most this many session requests per shop per window, across every web
    # process (kept in Redis); past it, 429 with Retry-After. Unset, no limit. The bound
    # keeps the limiter's integer arithmetic exact (webhook.rate_limit) for any window.
    shop_rate_limit: int | None = Field(default=None, ge=1, le=1_000_000)
    shop_rate_window_seconds: float = Field(default=60.0, gt=0, le=86400)
    # The operator listener of `payhook serve`: /metrics, the detailed /readyz and /healthz,
    # plain HTTP without authentication, away from the listener Shopify reaches (which shows
    # metrics and readiness detail only to the admin bearer token). Unset, there is none;
    # several `payhook serve` on one host each need a port of their own.
    operator_host: str = "127.0.0.1"
    operator_port: int | None = Field(default=None, ge=1, le=65535)
    # How the PSP (and its buyer page) reaches payhook; default http://HOST:PORT.
    public_url: str | None = None

    # Payment sessions (offsite). The buyer is sent to the PSP's page, a template with
    # {session_id}, {amount}, {currency}, {callback} and {return_url}; the simulator's page
    # is served by the sandbox. The PSP reports the buyer's outcome to
    # /psp/simulator/payments/{id}, signed with the webhook secret over the session and a
    # timestamp (webhook.signing), then sends the buyer to {return_url}
    # (/payments/{id}/return), which sends them on to where Shopify said.
    # No default secret: `payhook dev` makes one per run; unset, callbacks are refused.
    buyer_page_url: str = (
        "http://127.0.0.1:8090/pay/{session_id}?amount={amount}&currency={currency}"
        "&callback={callback}&return_url={return_url}"
    )
    simulator_webhook_secret: SecretStr | None = None
    # How far a callback's signing time may be from now, either way, before it is refused.
    callback_tolerance_seconds: float = Field(default=300.0, gt=0, le=3600)
    buyer_window_seconds: float = Field(default=3600.0, gt=0)
    # How long the buyer's return (/payments/{id}/return) waits for the payment's outcome
    # to reach Shopify before it shows a page that asks again by itself; kept well under
    # the timeouts of proxies in front of payhook.
    buyer_return_wait_seconds: float = Field(default=5.0, gt=0, le=25.0)
    # How long a payment reported pending may stay pending (Shopify's `pendingExpiresAt`),
    # counted from Shopify's payment request; when it closes without the PSP's final word it
    # is rejected. Kept inside Shopify's three days with a margin (`_inside_pending_limit`).
    pending_seconds: float = Field(default=PENDING_DEFAULT_SECONDS, gt=0)
    # Payment confirmation (an app Shopify enabled for it): an approved payment is first
    # `paymentSessionConfirm`ed; Shopify then POSTs its confirmation request to
    # /payment_confirmations, and the payment is resolved, or rejected with
    # CONFIRMATION_REJECTED. A payment whose confirmation request has not come within the
    # window fails for an operator to look at.
    payment_confirmation: bool = False
    confirmation_window_seconds: float = Field(default=3600.0, gt=0, le=3 * 86400.0)
    # mTLS: Shopify presents a client certificate signed by its Payments Platform CA. The
    # listener asks every client for one; only the session routes require it (webhook.auth).
    tls_cert_file: Path | None = None
    tls_key_file: Path | None = None
    tls_client_ca_file: Path | None = None
    # Optional pin: an RFC 4514 name; every attribute given must be in the client
    # certificate's subject (natively, or in the proxy's subject header).
    tls_client_subject: str | None = None
    # Trusted-proxy mode: a load balancer in front verifies Shopify's certificate and says
    # so in a header; session requests are accepted only from these addresses (IPs or
    # networks, comma-separated) carrying `proxy_verify_header: proxy_verify_value`.
    trusted_proxies: ProxyList = ()
    proxy_verify_header: str = Field(default="X-Client-Verify", min_length=1)
    proxy_verify_value: str = Field(default="SUCCESS", min_length=1)
    proxy_subject_header: str = Field(default="X-Client-Subject", min_length=1)

    # Retry ladders: ceilings in seconds before attempt n+1 (the last step repeats), full
    # jitter. A round gives up once both its attempt cap and its deadline have passed.
    psp_retry_ladder: Ladder = (2.0, 10.0, 30.0, 120.0, 600.0, 1800.0, 3600.0)
    psp_max_attempts: int = Field(default=12, ge=1)
    psp_retry_deadline_seconds: float = Field(default=6 * 3600.0, ge=0)
    shopify_retry_ladder: Ladder = (
        5.0,
        30.0,
        120.0,
        600.0,
        1800.0,
        3600.0,
        7200.0,
        14400.0,
        28800.0,
    )
    shopify_max_attempts: int = Field(default=16, ge=1)
    shopify_retry_deadline_seconds: float = Field(default=2 * 86400.0, ge=0)
    # Shopify's webhooks (app/uninstalled, the privacy topics) are processed off the
    # request path on this ladder; exhausted, a webhook is a dead letter (`payhook webhooks`).
    webhook_retry_ladder: Ladder = (2.0, 10.0, 30.0, 120.0, 600.0, 1800.0, 3600.0)
    webhook_max_attempts: int = Field(default=12, ge=1)
    webhook_retry_deadline_seconds: float = Field(default=6 * 3600.0, ge=0)
    # Task deliveries of one session before it is declared poison (a session whose task
    # keeps killing its worker would otherwise be redelivered forever).
    max_deliveries: int = Field(default=200, ge=1)

    # Workers: each process keeps up to `worker_concurrency` sessions in flight on one event
    # loop; `worker_processes` such processes per `payhook worker` (docs/workers.md).
    worker_concurrency: int = Field(default=200, ge=1, le=2000)
    worker_processes: int = Field(default=1, ge=1, le=64)
    # Celery's prefetch for the sweeper's queue; the session consumer takes session
    # messages only for free slots.
    worker_prefetch_multiplier: int = Field(default=2, ge=1, le=16)
    # Task events feed Flower. Off, they cost nothing; Flower switches them on in every
    # worker it watches (remote control), so watching needs no restart.
    worker_task_events: bool = False
    # Each worker process serves Prometheus metrics on this port plus its `--processes`
    # index (0, 1, ...); unset, workers serve none (`payhook dev` turns them on).
    worker_metrics_port: int | None = Field(default=None, ge=1, le=65535)
    worker_metrics_address: str = "127.0.0.1"
    # A lease is renewed every third of its length while its holder works.
    lease_seconds: float = Field(default=30.0, gt=0)
    # Every Redis command of payhook's own clients gives up after this long.
    redis_timeout_seconds: float = Field(default=2.0, gt=0)
    # Celery/Redis re-delivers an unacknowledged message after this long; every countdown
    # payhook asks Celery for stays well below it.
    visibility_timeout_seconds: int = Field(default=3600, gt=0)

    # The sweeper (run by beat) re-kicks sessions whose due time passed: lost task
    # messages, crashed workers, and retries too far out for a Celery countdown. The batch
    # bounds one Lua call; pruning the listing runs batch after batch (`sweep_prune_seconds`).
    sweep_interval_seconds: float = Field(default=5.0, gt=0)
    sweep_batch: int = Field(default=500, ge=1)

    # Retention. A reported session (fields and timeline) expires this long after it was
    # reported; until then a repeat of its request is answered from it. Failed sessions stay
    # until an operator replays them. Fractions of a day are allowed (benchmarks, tests).
    retention_days: float = Field(default=30.0, gt=0)
    # A payment's ledger book expires this long after its last reservation: as long as it
    # can still be captured or refunded (Shopify takes refunds for months).
    ledger_retention_days: float = Field(default=400.0, gt=0)

    # Local state of `payhook dev` (Redis data, AOF, logs); nothing in production reads it.
    state_dir: Path = Path(".payhook")

    # Fernet keys for the per-shop access tokens at rest, comma-separated: the first
    # encrypts, all decrypt (rotation: docs/operations.md). `payhook dev` makes its own.
    token_keys: SecretStr | None = None

    # `payhook flower`: where it listens, and its users (`user:password`, comma-separated).
    # Anywhere but a loopback address it refuses to start without them.
    flower_address: str = "127.0.0.1"
    flower_port: int = Field(default=5555, ge=1, le=65535)
    flower_basic_auth: SecretStr | None = None

    # Bearer token for the /admin endpoints; unset disables them (the dashboard too).
    admin_token: SecretStr | None = None
    # How long a dashboard login lasts before the form asks for the token again.
    admin_login_seconds: int = Field(default=28_800, ge=60, le=7 * 86_400)
    # Wrong admin tokens (the login form, a bearer header) allowed per minute from one
    # client and from all clients together, across web processes; past either budget the
    # token is not even compared until it refills (429 with Retry-After).
    admin_attempts_per_client: int = Field(default=10, ge=1, le=10_000)
    admin_attempts_in_all: int = Field(default=100, ge=1, le=100_000)

    log_level: str = "INFO"

    # Traces (docs/operations.md, Traces): OpenTelemetry's own variables, without the
    # PAYHOOK_ prefix. Off unless OTEL_TRACES_EXPORTER names an exporter (`otlp`, `console`)
    # or an OTLP endpoint is given; OTEL_SDK_DISABLED=true turns them off whatever else is set.
    otel_traces_exporter: str | None = Field(default=None, validation_alias="OTEL_TRACES_EXPORTER")
    otel_exporter_otlp_endpoint: str | None = Field(
        default=None, validation_alias="OTEL_EXPORTER_OTLP_ENDPOINT"
    )
    otel_exporter_otlp_traces_endpoint: str | None = Field(
        default=None, validation_alias="OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"
    )
    otel_service_name: str | None = Field(default=None, validation_alias="OTEL_SERVICE_NAME")
    otel_sdk_disabled: bool = Field(default=False, validation_alias="OTEL_SDK_DISABLED")

    _split_psp = field_validator("psp_retry_ladder", mode="before")(_parse_ladder)
    _split_shopify = field_validator("shopify_retry_ladder", mode="before")(_parse_ladder)
    _split_webhook = field_validator("webhook_retry_ladder", mode="before")(_parse_ladder)
    _split_proxies = field_validator("trusted_proxies", mode="before")(_parse_networks)
    _split_sentinels = field_validator("redis_sentinels", mode="before")(_parse_sentinels)
    _buyer_page = field_validator("buyer_page_url")(_buyer_page_template)

    @field_validator("pending_seconds")
    @classmethod
    def _inside_pending_limit(cls, value: float) -> float:
        if value > PENDING_MAX_SECONDS:
            raise ValueError(
                f"at most {PENDING_MAX_SECONDS:g} s: Shopify takes a pendingExpiresAt within "
                f"3 days ({SHOPIFY_PENDING_LIMIT_SECONDS:g} s), and payhook keeps "
                f"{PENDING_MARGIN_SECONDS:g} s of it for clocks that disagree"
            )
        return value

    @field_validator("admin_token")
    @classmethod
    def _a_token_to_guess(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None and not value.get_secret_value():
            raise ValueError("an empty admin token would let anyone in: leave it unset")
        return value

    @field_validator("shopify_api_secret", "shopify_api_secret_previous")
    @classmethod
    def _a_secret_to_sign_with(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None and not value.get_secret_value():
            raise ValueError("an empty secret would sign anything: leave it unset")
        return value

    @property
    def webhook_secrets(self) -> tuple[str, ...]:
        """The secrets a Shopify webhook may be signed with: the current one, then the one
        it replaces while a rotation is under way."""
        if self.shopify_api_secret is None:
            return ()
        found = (self.shopify_api_secret, self.shopify_api_secret_previous)
        return tuple(secret.get_secret_value() for secret in found if secret is not None)

    @field_validator("tls_client_subject")
    @classmethod
    def _a_distinguished_name(cls, value: str | None) -> str | None:
        if value is not None:
            try:
                x509.Name.from_rfc4514_string(value)
            except ValueError:
                raise ValueError(
                    f"{value!r} is not an RFC 4514 name such as 'CN=payments.shopify.com'"
                ) from None
        return value

    @field_validator("otel_traces_exporter")
    @classmethod
    def _known_exporter(cls, value: str | None) -> str | None:
        if value is None:
            return None
        name = value.strip().lower()
        if name not in ("otlp", "console", "none"):
            raise ValueError("payhook exports traces with `otlp` or `console` (or `none`)")
        return name

    @field_validator("token_keys")
    @classmethod
    def _fernet_keys(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None:
            keys = _split_keys(value.get_secret_value())
            try:
                if not keys:
                    raise ValueError
                for key in keys:
                    Fernet(key)
            except ValueError:
                # The message never repeats the value: it is a secret.
                raise ValueError(
                    "comma-separated Fernet keys (32 url-safe base64-encoded bytes each; "
                    "make one with `payhook shops new-key`)"
                ) from None
        return value

    @field_validator("flower_basic_auth")
    @classmethod
    def _users_and_passwords(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None:
            for entry in value.get_secret_value().split(","):
                user, colon, password = entry.partition(":")
                if not (user.strip() and colon and password):
                    raise ValueError("user:password pairs, comma-separated")
        return value

    @property
    def flower_on_loopback(self) -> bool:
        if self.flower_address == "localhost":
            return True
        try:
            return ip_address(self.flower_address).is_loopback
        except ValueError:
            return False

    @property
    def token_key_list(self) -> tuple[str, ...]:
        keys = self.token_keys
        return _split_keys(keys.get_secret_value()) if keys is not None else ()

    _split_suffixes = field_validator("shop_domain_suffixes", mode="before")(_parse_suffixes)
    _split_scopes = field_validator("shopify_scopes", mode="before")(_parse_scopes)
    _shop_templates = field_validator("shopify_authorize_url", "shopify_token_url")(_shop_template)

    @property
    def install_problem(self) -> str | None:
        """Why the OAuth install is off; None when it can run."""
        missing = [
            name
            for name, value in (
                ("PAYHOOK_SHOPIFY_API_KEY", self.shopify_api_key),
                ("PAYHOOK_SHOPIFY_API_SECRET", self.shopify_api_secret),
                ("PAYHOOK_TOKEN_KEYS", self.token_keys),
            )
            if value is None
        ]
        if not missing:
            return None
        return f"the app is not configured for installs: set {', '.join(missing)}"

    @property
    def install_callback_url(self) -> str:
        """The `redirect_uri` of the install: where Shopify sends the merchant back."""
        return self.public_base_url + "/shopify/callback"

    @model_validator(mode="after")
    def _lease_can_be_renewed(self) -> Settings:
        # The holder renews every third of the lease; a renewal that cannot finish within
        # that interval would let the lease lapse under a live worker.
        if self.redis_timeout_seconds >= self.lease_seconds / 3:
            raise ValueError(
                f"PAYHOOK_REDIS_TIMEOUT_SECONDS ({self.redis_timeout_seconds:g}) must be under "
                f"a third of PAYHOOK_LEASE_SECONDS ({self.lease_seconds:g})"
            )
        # WAIT blocks its connection: it must give up before the command's own timeout does.
        if (
            self.redis_min_replicas
            and self.redis_replica_timeout_seconds >= self.redis_timeout_seconds
        ):
            raise ValueError(
                f"PAYHOOK_REDIS_REPLICA_TIMEOUT_SECONDS ({self.redis_replica_timeout_seconds:g}) "
                f"must be under PAYHOOK_REDIS_TIMEOUT_SECONDS ({self.redis_timeout_seconds:g})"
            )
        return self

    @property
    def sweep_prune_seconds(self) -> float:
        """How long one sweep may go on pruning expired sessions, batch after batch: a fifth
        of the interval, so a backlog (after beat was down for hours) is worked off over
        several sweeps rather than in one burst, and a sweep ends well before the next. As
        long again goes to indexing a store written before the due summary's indexes."""
        return self.sweep_interval_seconds / 5

    @property
    def retention_seconds(self) -> int:
        return max(1, int(self.retention_days * 86400))

    @property
    def ledger_retention_seconds(self) -> int:
        return max(1, int(self.ledger_retention_days * 86400))

    @property
    def run_timeout_seconds(self) -> float:
        """The longest one session run may take: a step's sequential PSP calls (status,
        payment lookup, read, send) and the Shopify call, each with its own timeout."""
        return 4 * self.psp_timeout_seconds + self.shopify_timeout_seconds + 10

    @property
    def psp_in_flight_seconds(self) -> float:
        """How long after sending a request to a provider without idempotency keys payhook
        assumes the provider may still apply it (docs/connectors.md): its answer was lost,
        so it is not sent again before then."""
        return 3 * self.psp_timeout_seconds

    @property
    def psp_order_lock_seconds(self) -> float:
        """How long a provider order's lock outlives its last renewal (docs/connectors.md).

        A session whose PSP outcome is unknown keeps its order locked across its whole PSP
        retry round, and renews the lock on every attempt; this outlasts the round's
        deadline, its longest wait and one more run, so the lock only lapses once its owner
        has given up.
        """
        return (
            self.psp_retry_deadline_seconds + max(self.psp_retry_ladder) + self.run_timeout_seconds
        )

    @property
    def traces_exporter(self) -> Literal["otlp", "console"] | None:
        """Where spans go; None: tracing is off and OpenTelemetry is never imported."""
        if self.otel_sdk_disabled or self.otel_traces_exporter == "none":
            return None
        if self.otel_traces_exporter == "console":
            return "console"
        if self.otel_traces_exporter == "otlp" or self.otel_exporter_otlp_endpoint:
            return "otlp"
        return "otlp" if self.otel_exporter_otlp_traces_endpoint else None

    @property
    def otlp_traces_endpoint(self) -> str:
        """The OTLP/HTTP traces URL, as the OpenTelemetry specification derives it."""
        if self.otel_exporter_otlp_traces_endpoint:
            return self.otel_exporter_otlp_traces_endpoint
        base = self.otel_exporter_otlp_endpoint or "http://localhost:4318"
        return base.rstrip("/") + "/v1/traces"

    @property
    def broker(self) -> str:
        """The Celery broker URL: kombu's `sentinel://` list when sentinels are set."""
        if self.broker_url:
            return self.broker_url
        if self.redis_sentinels:
            database = redis_database(self.redis_url)
            # The primary's password rides on each sentinel URL, as kombu reads it.
            password = urlsplit(self.redis_url).password
            auth = f":{password}@" if password else ""
            return ";".join(
                f"sentinel://{auth}{host}:{port}/{database}" for host, port in self.redis_sentinels
            )
        return self.redis_url

    @property
    def broker_is_store(self) -> bool:
        """The broker is the session Redis: intake writes a session's task message in the
        same Lua call that stores it, so a worker reading any other broker never sees one.
        Judged by what names a keyspace (transport, host, port, database), not by spelling;
        with sentinels, by the sentinels and the database."""
        if self.broker_url is None:
            return True
        if self.redis_sentinels:
            sentinels = frozenset((host.lower(), port) for host, port in self.redis_sentinels)
            wanted = (sentinels, redis_database(self.redis_url))
            return _sentinel_keyspace(self.broker_url) == wanted
        store = _redis_keyspace(self.redis_url)
        return store is not None and _redis_keyspace(self.broker_url) == store

    @property
    def broker_problem(self) -> str | None:
        """Why no process may start with this broker; None when it is the session Redis."""
        if self.broker_is_store:
            return None
        store = (
            f"the sentinels' primary, database {redis_database(self.redis_url)}"
            if self.redis_sentinels
            else redacted(self.redis_url)
        )
        return (
            f"PAYHOOK_BROKER_URL ({redacted(self.broker)}) is not the session Redis ({store}). "
            "Intake queues every session in the session Redis, in the same step that stores "
            "it, so workers reading another broker would never settle one. Unset "
            "PAYHOOK_BROKER_URL (it defaults to the session Redis, or to the sentinels)."
        )

    @property
    def psp_account(self) -> Account:
        """The chosen connector's account: Shopify's test sessions go to `test` ones only."""
        if self.connector == "simulator":
            return "test"
        accounts: dict[str, Account] = {
            "http": self.http_connector_account,
            "ledyer": self.ledyer_account,
            "aplazame": self.aplazame_account,
            "purchase": self.purchase_account,
            "bigcommerce": self.bigcommerce_account,
        }
        return accounts[self.connector]

    @property
    def public_base_url(self) -> str:
        return (self.public_url or f"http://{self.host}:{self.port}").rstrip("/")

    def graphql_url(self, shop: str) -> str:
        return self.shopify_graphql_url.format(shop=shop, version=self.shopify_api_version)


# What a redis:// URL leaves unsaid, as redis-py and kombu both read it.
_REDIS_DEFAULT_PORT = 6379


def _redis_keyspace(url: str) -> tuple[str, str, int, int, str] | None:
    """(transport, host, port, database, query database) of a redis:// or rediss:// URL;
    None for any other kind of URL. Credentials and options do not name another keyspace;
    a `db` in the query does, as redis-py and kombu do not read it alike."""
    parts = urlsplit(url.strip())
    scheme = parts.scheme.lower()
    if scheme not in ("redis", "rediss"):
        return None
    try:
        port = parts.port or _REDIS_DEFAULT_PORT
    except ValueError:
        return None
    query_db = ",".join(parse_qs(parts.query).get("db", []))
    host = (parts.hostname or "localhost").lower()
    return scheme, host, port, redis_database(url), query_db


def _sentinel_keyspace(url: str) -> tuple[frozenset[tuple[str, int]], int] | None:
    """(the sentinels, database) of kombu's `sentinel://` list; None for anything else."""
    sentinels, databases = set(), set()
    for entry in url.split(";"):
        parts = urlsplit(entry.strip())
        if parts.scheme.lower() != "sentinel" or parts.hostname is None:
            return None
        try:
            port = parts.port
        except ValueError:
            return None
        if port is None:
            return None
        sentinels.add((parts.hostname.lower(), port))
        databases.add(redis_database(entry.strip()))
    if len(databases) != 1:
        return None
    return frozenset(sentinels), databases.pop()


def redacted(url: str) -> str:
    """A URL (or kombu's `;`-separated list) without its passwords, fit for a message."""
    return ";".join(
        f"{scheme}://***@{rest.split('@', 1)[1]}" if "@" in rest else entry
        for entry in url.split(";")
        for scheme, _, rest in [entry.partition("://")]
    )


def redis_database(url: str) -> int:
    """The database number of a `redis://host:port/N` URL (0 when it names none)."""
    path = urlsplit(url).path.strip("/")
    return int(path) if path.isdigit() else 0


def child_environment(overrides: dict[str, str]) -> dict[str, str]:
    """The environment for a child process (`payhook dev` starts several): ours plus `overrides`."""
    return {**os.environ, **overrides}
