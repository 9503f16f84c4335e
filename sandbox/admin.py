"""The sandbox's own JSON API under `/_sandbox/`, for tests and `payhook demo` to steer it.

| method | path                     | does                                                   |
|--------|--------------------------|--------------------------------------------------------|
| GET    | /_sandbox/calls          | `{"calls": [...]}`, optional `?gid=` and `?mutation=`   |
| GET    | /_sandbox/sessions/{gid} | the session's state; 404 if the gid is unknown          |
| POST   | /_sandbox/sessions       | `{"gids": [...]}` registers them, as Shopify would;     |
|        |                          | `confirmation_callback_url` (loopback) for their        |
|        |                          | confirmation requests                                   |
| GET    | /_sandbox/confirmations  | `{"confirmations": [...]}` sent, optional `?gid=`       |
| GET    | /_sandbox/faults         | `{"faults": [...]}`, the rules still armed              |
| POST   | /_sandbox/faults         | adds one fault rule; 400 and the reason if invalid      |
| DELETE | /_sandbox/faults         | disarms every rule                                      |
| POST   | /_sandbox/reset          | forgets sessions, calls, faults, codes, configurations, |
|        |                          | webhook deliveries                                      |
| GET    | /_sandbox/installs       | `{"exchanges": [...]}`: every OAuth token exchange      |
| POST   | /_sandbox/apps           | `{"api_key", "api_secret"}`: an app that may be installed |
| GET    | /_sandbox/configurations | `{"configurations": {shop: {externalHandle, ready}}}`   |

Shopify's own webhooks to the app (`/_sandbox/webhooks`) are described in
`sandbox.app_webhooks`.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from sandbox.app_webhooks import WEBHOOK_SENDER
from sandbox.buyer import loopback_url
from sandbox.faults import FaultRule, FaultRuleError, UserErrorFault, parse_fault
from sandbox.shopify_schema import user_error_codes
from sandbox.state import SANDBOX_STATE, SandboxState


def add_admin_routes(app: web.Application) -> None:
    app.router.add_get("/_sandbox/calls", list_calls)
    # A gid contains slashes (`gid://shopify/CaptureSession/x`), percent-encoded or not.
    app.router.add_get("/_sandbox/sessions/{gid:.+}", get_session)
    app.router.add_post("/_sandbox/sessions", register_sessions)
    app.router.add_get("/_sandbox/confirmations", list_confirmations)
    app.router.add_get("/_sandbox/faults", list_faults)
    app.router.add_post("/_sandbox/faults", add_fault)
    app.router.add_delete("/_sandbox/faults", clear_faults)
    app.router.add_post("/_sandbox/reset", reset)
    app.router.add_get("/_sandbox/installs", list_installs)
    app.router.add_post("/_sandbox/apps", add_app)
    app.router.add_get("/_sandbox/configurations", list_configurations)


def _bad_request(message: str) -> web.Response:
    return web.json_response({"error": message}, status=400)


async def _json_object(request: web.Request) -> dict[str, Any] | None:
    try:
        body = await request.json()
    except ValueError:
        return None
    return body if isinstance(body, dict) else None


async def list_calls(request: web.Request) -> web.Response:
    calls = request.app[SANDBOX_STATE].calls.select(
        gid=request.query.get("gid"), mutation=request.query.get("mutation")
    )
    return web.json_response({"calls": [call.as_json() for call in calls]})


async def get_session(request: web.Request) -> web.Response:
    gid = request.match_info["gid"]
    record = request.app[SANDBOX_STATE].ledger.get(gid)
    if record is None:
        return web.json_response({"error": f"unknown session {gid}"}, status=404)
    return web.json_response(record.as_json())


async def register_sessions(request: web.Request) -> web.Response:
    body = await _json_object(request)
    gids = body.get("gids") if body else None
    if not isinstance(gids, list) or not all(isinstance(gid, str) for gid in gids):
        return _bad_request('expected {"gids": ["gid://shopify/...", ...]}')
    url = body.get("confirmation_callback_url") if body else None
    if url is not None and not (isinstance(url, str) and loopback_url(url)):
        # The sandbox only ever calls this machine.
        return _bad_request("confirmation_callback_url must be on 127.0.0.1 or localhost")
    ledger = request.app[SANDBOX_STATE].ledger
    try:
        records = [ledger.register(gid, url) for gid in gids]
    except ValueError as exc:
        return _bad_request(str(exc))
    return web.json_response({"sessions": [record.as_json() for record in records]})


async def list_confirmations(request: web.Request) -> web.Response:
    sent = request.app[SANDBOX_STATE].confirmations.select(request.query.get("gid"))
    return web.json_response({"confirmations": [delivery.as_json() for delivery in sent]})


async def list_faults(request: web.Request) -> web.Response:
    return web.json_response({"faults": request.app[SANDBOX_STATE].faults.active()})


async def add_fault(request: web.Request) -> web.Response:
    body = await _json_object(request)
    if body is None:
        return _bad_request("expected a JSON object describing one fault rule")
    try:
        rule = parse_fault(body)
    except FaultRuleError as exc:
        return _bad_request(str(exc))
    state = request.app[SANDBOX_STATE]
    problem = _code_problem(state, rule)
    if problem is not None:
        return _bad_request(problem)
    state.faults.add(rule)
    return web.json_response({"fault": rule.model_dump(exclude_none=True)}, status=201)


def _code_problem(state: SandboxState, rule: FaultRule) -> str | None:
    """Why a `user_error` rule's code is not one the mutation can answer, if it is not."""
    if not isinstance(rule, UserErrorFault) or rule.code is None:
        return None
    assert rule.mutation is not None  # the rule's own check
    codes = user_error_codes(state.schema, rule.mutation)
    if codes is None:
        return f"code: {rule.mutation}'s userErrors have no code (UserError)"
    if rule.code not in codes:
        return f"code: {rule.mutation} answers one of {', '.join(sorted(codes))}"
    return None


async def clear_faults(request: web.Request) -> web.Response:
    cleared = request.app[SANDBOX_STATE].faults.clear()
    return web.json_response({"cleared": cleared})


async def reset(request: web.Request) -> web.Response:
    request.app[SANDBOX_STATE].reset()
    request.app[WEBHOOK_SENDER].clear()
    return web.json_response({"reset": True})


async def list_installs(request: web.Request) -> web.Response:
    exchanges = request.app[SANDBOX_STATE].grants.exchanges
    return web.json_response({"exchanges": [exchange.as_json() for exchange in exchanges]})


async def add_app(request: web.Request) -> web.Response:
    body = await _json_object(request)
    key, secret = (body or {}).get("api_key"), (body or {}).get("api_secret")
    if not (isinstance(key, str) and key and isinstance(secret, str) and secret):
        return _bad_request('expected {"api_key": "...", "api_secret": "..."}')
    request.app[SANDBOX_STATE].grants.apps[key] = secret
    return web.json_response({"api_key": key}, status=201)


async def list_configurations(request: web.Request) -> web.Response:
    return web.json_response({"configurations": request.app[SANDBOX_STATE].configurations})
