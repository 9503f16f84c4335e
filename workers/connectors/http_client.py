"""One PSP's HTTP endpoint, with every aiohttp failure translated into a `TryAgain`.

A connector asks `PspHttp.request` and gets either the provider's `Reply` (any status:
reading it is the connector's rule table's job) or a `TryAgain` saying whether the request
may have reached the provider:

    aiohttp / asyncio failure                           → TryAgain
    ├── connection refused, DNS, TLS, connect timeout   → not sent: ambiguous=False
    └── read timeout, total timeout, reset, disconnect,
        truncated body (after the request went out)     → ambiguous=True for writes

Reads (GET) are never ambiguous: repeating them is harmless.

The `aiohttp.ClientSession` is either given (and then borrowed: `close()` leaves it open)
or created on first use, inside the worker's running event loop, and owned.
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from functools import partial
from typing import Any, TypeVar

import aiohttp
from multidict import CIMultiDict
from pydantic import BaseModel, ValidationError

from workers.connectors.base import NotFound, TryAgain
from workers.retry_policy import parse_retry_after

Model = TypeVar("Model", bound=BaseModel)

# Amounts in JSON answers become Decimal, never float.
_loads = partial(json.loads, parse_float=Decimal)


@dataclass(frozen=True)
class Reply:
    status: int
    body: Any
    text: str
    headers: Mapping[str, str] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return 200 <= self.status < 300

    @property
    def retry_after(self) -> float | None:
        return parse_retry_after(self.headers.get("Retry-After"), now=time.time())

    def message(self) -> str | None:
        """The provider's own words, from the usual error body shapes."""
        body = self.body
        if not isinstance(body, dict):
            return None
        candidates: list[Any] = [body.get("message"), body.get("detail"), body.get("title")]
        error = body.get("error")
        candidates.append(error.get("message") if isinstance(error, dict) else error)
        errors = body.get("errors")
        if isinstance(errors, list) and errors and isinstance(errors[0], dict):
            candidates.append(errors[0].get("message"))
        for candidate in candidates:
            if isinstance(candidate, str) and candidate.strip():
                return candidate.strip()[:500]
        return None

    def at(self, *path: str) -> Any:
        """`body[path[0]][path[1]]...`, or None where the body has no such field."""
        value = self.body
        for key in path:
            if not isinstance(value, dict):
                return None
            value = value.get(key)
        return value


class PspHttp:
    def __init__(
        self,
        base_url: str,
        *,
        name: str,
        timeout_seconds: float,
        headers: Mapping[str, str] | None = None,
        session: aiohttp.ClientSession | None = None,
        connections: int = 100,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        # One connection per session in flight: a smaller pool would queue PSP calls.
        self._connections = connections
        self._name = name
        self._timeout = aiohttp.ClientTimeout(total=timeout_seconds)
        self._headers = CIMultiDict(headers or {})
        self._session = session
        self._owned = session is None

    async def request(
        self,
        method: str,
        path: str,
        *,
        json_body: Any = None,
        headers: Mapping[str, str] | None = None,
    ) -> Reply | TryAgain:
        """Send; a `Reply` whatever its status, or a `TryAgain` if no answer was read."""
        write = method.upper() != "GET"
        merged = CIMultiDict(self._headers)
        merged.update(headers or {})
        what = f"{self._name} {method.upper()} {path}"
        try:
            async with self._client().request(
                method,
                self.base_url + path,
                json=json_body,
                headers=merged,
                timeout=self._timeout,
            ) as response:
                text = await response.text()
                return Reply(
                    status=response.status,
                    body=_parse(text),
                    text=text,
                    headers=dict(response.headers),
                )
        except (aiohttp.ClientConnectorError, aiohttp.ConnectionTimeoutError) as exc:
            return TryAgain(f"{what}: cannot connect: {exc}")
        except TimeoutError:
            return TryAgain(f"{what}: no answer within {self._timeout.total:g}s", ambiguous=write)
        except (aiohttp.ClientError, OSError) as exc:
            return TryAgain(f"{what}: {type(exc).__name__}: {exc}", ambiguous=write)

    async def read(
        self,
        path: str,
        model: type[Model],
        what: str,
        *,
        headers: Mapping[str, str] | None = None,
    ) -> Model | NotFound | TryAgain:
        """GET a resource into `model`: 404 is `NotFound`, any other trouble `TryAgain`."""
        reply = await self.request("GET", path, headers=headers)
        if isinstance(reply, TryAgain):
            return reply
        if reply.status == 404:
            return NotFound()
        if not reply.ok:
            return TryAgain(f"{self._name} GET {path}: HTTP {reply.status}", reply.retry_after)
        try:
            return model.model_validate(reply.body)
        except ValidationError:
            return TryAgain(f"{self._name} GET {path}: an answer that is not {what}")

    def _client(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            connector = aiohttp.TCPConnector(limit=self._connections)
            self._session = aiohttp.ClientSession(connector=connector)
            self._owned = True
        return self._session

    async def close(self) -> None:
        if self._owned and self._session is not None:
            await self._session.close()
            self._session = None


def _parse(text: str) -> Any:
    if not text:
        return None
    try:
        return _loads(text)
    except ValueError:
        return None  # an HTML error page from a proxy, say: the status still tells
