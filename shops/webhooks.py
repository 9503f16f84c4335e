"""Shopify's own webhooks (`POST /shopify/webhooks`): their topics, the bodies payhook reads,
and the record the store keeps of each while a worker processes it.

| topic | payhook does |
|---|---|
| `app/uninstalled` | deletes the shop's token (intake then refuses the shop), fails its |
| | unfinished sessions |
| `shop/redact` | the same, then erases what it keeps of the shop, money records aside |
| `customers/redact` | erases what it keeps that names the customer |
| `customers/data_request` | writes a report of what it keeps that names the customer |

Shopify signs the body only (`X-Shopify-Hmac-Sha256`); the topic and the shop travel in
headers it does not sign. So each topic's body must have that topic's shape and no other's,
and name the shop the header names: a signed body cannot be replayed under another topic or
for another shop.

Keys (all under `payhook:`; no prefix starts another, nor a session store key):

| key | type | holds |
|---|---|---|
| `wh:{id}` | hash | the webhook's record (`Webhook`) and its fingerprint |
| `wh-events:{id}` | list | JSON `WebhookEvent`s, oldest first |
| `wh-lease:{id}` | string | the fencing token of the worker processing it |
| `wh-report:{id}` | string | a `customers/data_request`'s report (JSON), for the retention |
| `whidx:due` | sorted set | every unfinished webhook by when it must next be looked at |
| `whidx:failed` | sorted set | dead letters by time of failure |
| `whidx:received` | sorted set | webhooks by time received, for listing |
"""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, StrictStr, ValidationError

from errors import BodyProblem
from sessions.keys import PREFIX

WEBHOOK_DUE = f"{PREFIX}whidx:due"
WEBHOOK_FAILED = f"{PREFIX}whidx:failed"
WEBHOOK_RECEIVED = f"{PREFIX}whidx:received"
# A webhook's events keep their newest; retries for hours cannot grow the list past this.
EVENTS_MAX = 100


def webhook_key(webhook_id: str) -> str:
    return f"{PREFIX}wh:{webhook_id}"


def webhook_events_key(webhook_id: str) -> str:
    return f"{PREFIX}wh-events:{webhook_id}"


def webhook_lease_key(webhook_id: str) -> str:
    return f"{PREFIX}wh-lease:{webhook_id}"


def webhook_report_key(webhook_id: str) -> str:
    return f"{PREFIX}wh-report:{webhook_id}"


class Topic(StrEnum):
    APP_UNINSTALLED = "app/uninstalled"
    SHOP_REDACT = "shop/redact"
    CUSTOMERS_REDACT = "customers/redact"
    CUSTOMERS_DATA_REQUEST = "customers/data_request"


# Topics whose work needs nothing but the shop: one done can be done again.
SHOP_TOPICS = frozenset({Topic.APP_UNINSTALLED, Topic.SHOP_REDACT})


class HookState(StrEnum):
    RECEIVED = "received"  # stored, answered 200, waiting for a worker
    RETRYING = "retrying"  # an attempt failed; the next is due at `not_before`
    DONE = "done"  # processed; expires after the retention period
    FAILED = "failed"  # the ladder ran out: a dead letter, replayable


# Shopify's numeric ids, as the body's JSON numbers or strings of digits.
NumericId = Annotated[int, Field(ge=0, le=2**63)]
Text = Annotated[StrictStr, Field(max_length=320)]


class _Body(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)


class UninstalledBody(_Body):
    """`app/uninstalled`: the shop resource. Only its domain is read (and bound to the
    header); nothing else of it is stored."""

    myshopify_domain: Text


class ShopRedactBody(_Body):
    shop_domain: Text


class Customer(_Body):
    id: NumericId | None = None
    email: Text | None = None
    phone: Text | None = None


class CustomersRedactBody(_Body):
    shop_domain: Text
    customer: Customer
    orders_to_redact: list[NumericId] = Field(default_factory=list, max_length=10_000)


class DataRequest(_Body):
    id: NumericId


class DataRequestBody(_Body):
    shop_domain: Text
    customer: Customer
    orders_requested: list[NumericId] = Field(default_factory=list, max_length=10_000)
    data_request: DataRequest


BODIES: dict[Topic, type[_Body]] = {
    Topic.APP_UNINSTALLED: UninstalledBody,
    Topic.SHOP_REDACT: ShopRedactBody,
    Topic.CUSTOMERS_REDACT: CustomersRedactBody,
    Topic.CUSTOMERS_DATA_REQUEST: DataRequestBody,
}


def shape_of(body: dict[str, Any]) -> Topic | None:
    """The one topic whose body this is by its keys, or None."""
    if "myshopify_domain" in body and "shop_domain" not in body:
        return Topic.APP_UNINSTALLED
    if "shop_domain" not in body:
        return None
    if "data_request" in body:
        return Topic.CUSTOMERS_DATA_REQUEST
    if "customer" in body or "orders_to_redact" in body:
        return Topic.CUSTOMERS_REDACT
    return Topic.SHOP_REDACT


def read_body(topic: Topic, body: dict[str, Any], shop: str) -> _Body:
    """The topic's body, once its shape and its shop are checked; `BodyProblem` if not."""
    shape = shape_of(body)
    if shape is not topic:
        raise BodyProblem(
            "topic_mismatch",
            f"the body is not a {topic} body"
            + (f" (it has the shape of {shape})" if shape else ""),
            "X-Shopify-Topic",
        )
    try:
        parsed = BODIES[topic].model_validate(body)
    except ValidationError as exc:
        first = exc.errors()[0]
        field = ".".join(str(part) for part in first["loc"]) or None
        raise BodyProblem("invalid_field", f"{field}: {first['msg']}", field) from None
    named = parsed.myshopify_domain if isinstance(parsed, UninstalledBody) else _domain(parsed)
    if named.lower() != shop:
        raise BodyProblem(
            "shop_mismatch",
            "the body names another shop than X-Shopify-Shop-Domain",
            "X-Shopify-Shop-Domain",
        )
    return parsed


def _domain(parsed: _Body) -> str:
    domain: str = getattr(parsed, "shop_domain")  # noqa: B009 - every privacy body has one
    return domain


class CustomerPayload(BaseModel):
    """What a worker needs of a customer topic's body; erased once the webhook is done."""

    model_config = ConfigDict(frozen=True)

    customer_id: int | None = None
    email: str | None = None
    phone: str | None = None
    orders: tuple[int, ...] = ()
    data_request_id: int | None = None


def payload_of(parsed: _Body) -> CustomerPayload | None:
    """What is stored with the webhook until it is done: the customer topics' identifiers;
    nothing for the shop topics (the shop is the record's own field)."""
    if isinstance(parsed, CustomersRedactBody):
        customer = parsed.customer
        return CustomerPayload(
            customer_id=customer.id,
            email=customer.email,
            phone=customer.phone,
            orders=tuple(parsed.orders_to_redact),
        )
    if isinstance(parsed, DataRequestBody):
        customer = parsed.customer
        return CustomerPayload(
            customer_id=customer.id,
            email=customer.email,
            phone=customer.phone,
            orders=tuple(parsed.orders_requested),
            data_request_id=parsed.data_request.id,
        )
    return None


class Webhook(BaseModel):
    """A webhook as the store keeps it: what came, where it is, what became of it."""

    model_config = ConfigDict(frozen=True)

    id: str
    topic: Topic
    shop: str
    api_version: str | None = None
    # When Shopify says the event happened (X-Shopify-Triggered-At), else when it arrived.
    triggered_at: float
    received_at: float
    state: HookState
    updated_at: float
    # Attempts of the current round (since it was received or last replayed), and when
    # the round began: what the retry ladder's cap and deadline are measured against.
    attempts: int = 0
    round_since: float | None = None
    deliveries: int = 0
    replays: int = 0
    fence: int = 0
    not_before: float | None = None
    done_at: float | None = None
    failed_at: float | None = None
    last_error: str | None = None
    result: str | None = None
    payload: str | None = None

    def customer(self) -> CustomerPayload | None:
        return None if self.payload is None else CustomerPayload.model_validate_json(self.payload)

    def shown(self) -> dict[str, Any]:
        """The record as operators read it (admin API, `payhook webhooks`): everything but
        the customer's identifiers a privacy webhook brought, and whether it holds them."""
        shown = self.model_dump(mode="json", exclude={"payload", "fence"})
        shown["holds_customer_identifiers"] = self.payload is not None
        return shown


class WebhookEvent(BaseModel):
    """One thing that happened to a webhook: its audit trail."""

    model_config = ConfigDict(frozen=True)

    at: float
    event: str
    state: HookState
    attempt: int | None = None
    error: str | None = None
    detail: str | None = None
