"""What every PSP fake shares: fault rules, the call log, idempotency keys, magic amounts.

A money call (capture, refund, void) runs through `money_call`, which applies the first
armed fault rule for its operation:

| `kind`     | the connector sees                                                          |
|------------|-----------------------------------------------------------------------------|
| `status`   | HTTP `status` (429 or 5xx, optional `Retry-After`), nothing applied         |
| `decline`  | the provider's own refusal (`code`, `message`), nothing applied             |
| `delay`    | no answer for `seconds`; `apply: true` applies first (a lost answer once    |
|            | the client gives up), `apply: false` applies after the wait                 |
| `lost`     | applied, then HTTP `status` (5xx): the answer is lost                       |

Besides faults, a fake can answer every money call `latency` seconds late (`payhook
psp-sandbox NAME --latency S`), the steady round trip of a real provider, and every read
`read_latency` seconds late (`--read-latency S`); the admin routes are never slowed.

A rule is armed for `times` calls (default 1) and optionally only one `operation`
(`capture`, `refund`, `void`, `read`, ...). Amounts whose minor units end in `51` are
declined and in `52` expired, as with the simulator PSP.

Every request to a fake is recorded (`PspCall`), with `applied` true only for the call
that moved money and `payment` the provider's payment or order it was for; a repeated
idempotency key is answered from the first call's stored answer (`replayed`) and moves
nothing. `GET /_sandbox/charges` counts the applied calls of one operation per payment and
per key (`Charges`): what a test asks a fake running in its own process to learn whether
anything was charged twice.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field, ValidationError


class Fault(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    kind: Literal["status", "decline", "delay", "lost"]
    operation: str | None = None
    times: int = Field(default=1, ge=1)
    status: int = Field(default=503, ge=400, le=599)
    retry_after: int | None = Field(default=None, ge=0)
    seconds: float = Field(default=1.0, gt=0, le=300)
    apply: bool = True
    code: str | None = None
    message: str | None = None


def magic(amount_minor: int | None) -> Literal["decline", "expired"] | None:
    if amount_minor is None:
        return None
    ending = amount_minor % 100
    return "decline" if ending == 51 else "expired" if ending == 52 else None


@dataclass(frozen=True)
class PspCall:
    seq: int
    operation: str
    method: str
    path: str
    status: int
    idempotency_key: str | None = None
    payment: str | None = None
    amount: int | None = None
    applied: bool = False
    replayed: bool = False
    fault: str | None = None

    def as_json(self) -> dict[str, Any]:
        return asdict(self)


class Charges(BaseModel):
    """`GET /_sandbox/charges?operation=capture`: the calls of `operation` that moved money,
    counted per payment (or order) and per idempotency key (none for a provider without
    keys); above 1 for a payment asked once, a buyer was charged twice. `sent`: the
    requests to do `operation`, whatever came of them (reads of an outcome, GETs, are not
    counted); `replayed`: those answered from a stored key, which moved nothing."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    operation: str
    payments: dict[str, int]
    keys: dict[str, int]
    sent: int = 0
    replayed: int = 0


@dataclass
class _Stored:
    fingerprint: str
    status: int
    body: Any
    headers: dict[str, str]


@dataclass
class _Armed:
    rule: Fault
    remaining: int


@dataclass
class PspState:
    """One fake's books besides its provider's own: faults, calls and idempotency keys.

    `latency`: seconds every money call waits before it is processed (0: none);
    `read_latency`: the same for every read.
    """

    latency: float = 0.0
    read_latency: float = 0.0
    faults: list[_Armed] = field(default_factory=list)
    calls: list[PspCall] = field(default_factory=list)
    keys: dict[str, _Stored] = field(default_factory=dict)
    locks: dict[str, asyncio.Lock] = field(default_factory=dict)
    stopping: asyncio.Event = field(default_factory=asyncio.Event)

    def arm(self, fault: Fault | dict[str, Any]) -> Fault:
        rule = fault if isinstance(fault, Fault) else Fault.model_validate(fault)
        self.faults.append(_Armed(rule, rule.times))
        return rule

    def take(self, operation: str, kinds: tuple[str, ...] | None = None) -> Fault | None:
        """The first armed rule for `operation` (of one of `kinds`), spending one use."""
        for armed in self.faults:
            if kinds is not None and armed.rule.kind not in kinds:
                continue
            if armed.remaining > 0 and armed.rule.operation in (None, operation):
                armed.remaining -= 1
                return armed.rule
        return None

    def record(self, **fields: Any) -> PspCall:
        call = PspCall(seq=len(self.calls) + 1, **fields)
        self.calls.append(call)
        return call

    def applied(self, operation: str | None = None) -> list[PspCall]:
        return [c for c in self.calls if c.applied and operation in (None, c.operation)]

    def charges(self, operation: str) -> Charges:
        payments: dict[str, int] = {}
        keys: dict[str, int] = {}
        for call in self.applied(operation):
            if call.payment is not None:
                payments[call.payment] = payments.get(call.payment, 0) + 1
            if call.idempotency_key is not None:
                keys[call.idempotency_key] = keys.get(call.idempotency_key, 0) + 1
        sent = [c for c in self.calls if c.operation == operation and c.method != "GET"]
        return Charges(
            operation=operation,
            payments=payments,
            keys=keys,
            sent=len(sent),
            replayed=sum(c.replayed for c in sent),
        )

    async def wait(self, seconds: float) -> None:
        """Sleep, but wake when the server shuts down so tests never wait for a fault."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.stopping.wait(), timeout=seconds)

    def reset(self) -> None:
        self.faults.clear()
        self.calls.clear()
        self.keys.clear()


PSP_STATE: web.AppKey[PspState] = web.AppKey("psp_state", PspState)

# What a fake's handler does once faults let it through: (status, body, applied).
Applied = tuple[int, Any, bool]


async def money_call(
    request: web.Request,
    *,
    operation: str,
    amount: int | None,
    key: str | None,
    body: Any,
    apply: Callable[[], Awaitable[Applied]],
    decline: Callable[[Fault], tuple[int, Any]],
    headers: dict[str, str] | None = None,
    replay: Callable[[int, Any], tuple[int, Any]] | None = None,
    payment: str | None = None,
) -> web.Response:
    """Run one money-moving request through faults, idempotency and the call log.

    `payment`: the provider's payment or order the request is for, as the call log shows it.
    Shielded: like a real PSP, the fake finishes what it started when the client hangs
    up (a timeout), whatever the server's handler-cancellation setting.
    """
    processing = asyncio.ensure_future(
        _process(request, operation, amount, key, payment, body, apply, decline, headers, replay)
    )
    return await asyncio.shield(processing)


async def _process(
    request: web.Request,
    operation: str,
    amount: int | None,
    key: str | None,
    payment: str | None,
    body: Any,
    apply: Callable[[], Awaitable[Applied]],
    decline: Callable[[Fault], tuple[int, Any]],
    headers: dict[str, str] | None,
    replay: Callable[[int, Any], tuple[int, Any]] | None,
) -> web.Response:
    state = request.app[PSP_STATE]
    if state.latency > 0:
        await state.wait(state.latency)
    extra = dict(headers or {})
    common = {
        "operation": operation,
        "method": request.method,
        "path": request.path,
        "idempotency_key": key,
        "payment": payment,
        "amount": amount,
    }
    lock = state.locks.setdefault(key, asyncio.Lock()) if key else contextlib.nullcontext()
    async with lock:
        fingerprint = json.dumps(body, sort_keys=True, default=str)
        stored = state.keys.get(key) if key else None
        if stored is not None:
            if stored.fingerprint != fingerprint:
                state.record(status=422, **common)
                message = "idempotency key reused with different parameters"
                return web.json_response(
                    {"code": "idempotency_error", "message": message}, status=422
                )
            status, answer = (replay or (lambda s, b: (s, b)))(stored.status, stored.body)
            state.record(status=status, replayed=True, **common)
            return web.json_response(answer, status=status, headers=stored.headers)
        fault = state.take(operation)
        if fault is not None and fault.kind == "status":
            retry = {"Retry-After": str(fault.retry_after)} if fault.retry_after is not None else {}
            state.record(status=fault.status, fault="status", **common)
            return web.Response(status=fault.status, text="<html>unavailable</html>", headers=retry)
        if fault is not None and fault.kind == "decline":
            status, answer = decline(fault)
            state.record(status=status, fault="decline", **common)
            return web.json_response(answer, status=status, headers=extra)
        if fault is not None and fault.kind == "delay" and not fault.apply:
            await state.wait(fault.seconds)
        status, answer, applied = await apply()
        if key and status < 500:
            state.keys[key] = _Stored(fingerprint, status, answer, extra)
        state.record(status=status, applied=applied, fault=fault and fault.kind, **common)
        if fault is not None and fault.kind == "lost":
            return web.Response(status=fault.status, text="<html>bad gateway</html>")
        if fault is not None and fault.kind == "delay" and fault.apply:
            await state.wait(fault.seconds)
        return web.json_response(answer, status=status, headers=extra)


async def read_fault(request: web.Request, operation: str = "read") -> web.Response | None:
    """Faults for reads, once `read_latency` has passed: only `status` rules apply (and only
    they are spent)."""
    state = request.app[PSP_STATE]
    if state.read_latency > 0:
        await state.wait(state.read_latency)
    fault = state.take(operation, kinds=("status",))
    if fault is None:
        return None
    state.record(
        operation=operation,
        method=request.method,
        path=request.path,
        status=fault.status,
        fault="status",
    )
    return web.Response(status=fault.status, text="<html>unavailable</html>")


def record_read(request: web.Request, status: int, operation: str = "read") -> None:
    request.app[PSP_STATE].record(
        operation=operation, method=request.method, path=request.path, status=status
    )


async def json_object(request: web.Request) -> dict[str, Any] | None:
    try:
        body = await request.json()
    except ValueError:
        return None
    return body if isinstance(body, dict) else None


def add_admin_routes(app: web.Application) -> None:
    """`/_sandbox/calls`, `/_sandbox/charges`, `/_sandbox/faults` (GET, POST, DELETE) and
    `/_sandbox/reset`."""

    async def calls(request: web.Request) -> web.Response:
        wanted = request.query.get("operation")
        rows = [c.as_json() for c in request.app[PSP_STATE].calls]
        return web.json_response({"calls": [c for c in rows if wanted in (None, c["operation"])]})

    async def charges(request: web.Request) -> web.Response:
        counted = request.app[PSP_STATE].charges(request.query.get("operation", "capture"))
        return web.json_response(counted.model_dump())

    async def faults(request: web.Request) -> web.Response:
        shown = [
            {**armed.rule.model_dump(exclude_none=True), "remaining": armed.remaining}
            for armed in request.app[PSP_STATE].faults
            if armed.remaining > 0
        ]
        return web.json_response({"faults": shown})

    async def add_fault(request: web.Request) -> web.Response:
        try:
            fault = Fault.model_validate(await json_object(request))
        except ValidationError as exc:
            return web.json_response({"error": str(exc)}, status=400)
        request.app[PSP_STATE].arm(fault)
        return web.json_response({"fault": fault.model_dump(exclude_none=True)}, status=201)

    async def clear_faults(request: web.Request) -> web.Response:
        request.app[PSP_STATE].faults.clear()
        return web.json_response({})

    async def reset(request: web.Request) -> web.Response:
        request.app[PSP_STATE].reset()
        return web.json_response({})

    app.router.add_get("/_sandbox/calls", calls)
    app.router.add_get("/_sandbox/charges", charges)
    app.router.add_get("/_sandbox/faults", faults)
    app.router.add_post("/_sandbox/faults", add_fault)
    app.router.add_delete("/_sandbox/faults", clear_faults)
    app.router.add_post("/_sandbox/reset", reset)


def psp_app(state: PspState | None = None) -> web.Application:
    """An app with the shared state and admin routes; the fake adds its own routes."""
    app = web.Application()
    app[PSP_STATE] = state or PspState()

    async def wake_sleepers(app: web.Application) -> None:
        app[PSP_STATE].stopping.set()

    app.on_shutdown.append(wake_sleepers)
    add_admin_routes(app)
    return app


def bearer_ok(request: web.Request, token: str | None, header: str = "Authorization") -> bool:
    """No token configured: any non-empty credential passes, as in the Shopify sandbox."""
    given = request.headers.get(header, "")
    if header == "Authorization":
        given = given.removeprefix("Bearer ").strip() if given.startswith("Bearer ") else ""
    return bool(given) and (token is None or given == token)
