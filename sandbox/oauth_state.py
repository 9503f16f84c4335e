"""What the sandbox Shopify keeps of OAuth installs: the apps it knows, the codes it gave
out, and every token exchange. No I/O here, so the rules are tested as plain functions.

Shopify's rules, as the sandbox keeps them: an authorization code is good for one exchange,
by the app it was made for, for the shop it was made for, within `CODE_SECONDS`; a used,
unknown or expired code, or a wrong client secret, is refused with HTTP 400 and nothing is
issued. The callback's query is signed with the app's secret: the hex HMAC-SHA256 of the
other parameters sorted by name, `name=value` joined by `&` (with `%` and `&` written
`%25` and `%26`, and `=` in a name `%3D`).
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass
from typing import Any

CODE_SECONDS = 600.0
CODE_REFUSED = "The authorization code was not found or was already used"


def sign_query(params: Mapping[str, str], secret: str) -> str:
    """The `hmac` Shopify puts on a callback carrying `params`."""

    def escaped(text: str, *, name: bool) -> str:
        text = text.replace("%", "%25").replace("&", "%26")
        return text.replace("=", "%3D") if name else text

    signed = "&".join(
        f"{escaped(name, name=True)}={escaped(value, name=False)}"
        for name, value in sorted(params.items())
        if name not in ("hmac", "signature")
    )
    return hmac.new(secret.encode(), signed.encode(), hashlib.sha256).hexdigest()


@dataclass
class _Grant:
    shop: str
    client_id: str
    scope: str
    issued_at: float
    used: bool = False


@dataclass(frozen=True)
class Exchange:
    """One `POST /admin/oauth/access_token`, as `GET /_sandbox/installs` lists it."""

    seq: int
    at: float
    shop: str
    client_id: str
    status: int
    error: str | None
    scope: str | None

    def as_json(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class Issued:
    token: str
    scope: str


class Grants:
    def __init__(self, apps: dict[str, str], wall_clock: Callable[[], float]) -> None:
        self.apps = apps
        self._clock = wall_clock
        self._codes: dict[str, _Grant] = {}
        self.exchanges: list[Exchange] = []

    def secret_of(self, client_id: str) -> str | None:
        return self.apps.get(client_id)

    def grant(self, shop: str, client_id: str, scope: str) -> str:
        """A fresh code for `client_id` to install on `shop` with `scope`."""
        code = secrets.token_hex(16)
        self._codes[code] = _Grant(shop, client_id, scope, self._clock())
        return code

    def exchange(self, shop: str, client_id: str, client_secret: str, code: str) -> Issued | str:
        """A token for a good code (spent by it), or why the code is refused."""
        secret = self.apps.get(client_id)
        grant = self._codes.get(code)
        if secret is None or not hmac.compare_digest(secret, client_secret):
            refusal: Issued | str = "invalid client_id or client_secret"
        elif (
            grant is None
            or grant.used
            or grant.shop != shop
            or grant.client_id != client_id
            or self._clock() - grant.issued_at > CODE_SECONDS
        ):
            refusal = CODE_REFUSED
        else:
            grant.used = True
            refusal = Issued(f"shpat_{secrets.token_hex(16)}", grant.scope)
        self._record(shop, client_id, refusal)
        return refusal

    def _record(self, shop: str, client_id: str, result: Issued | str) -> None:
        issued = isinstance(result, Issued)
        self.exchanges.append(
            Exchange(
                seq=len(self.exchanges) + 1,
                at=self._clock(),
                shop=shop,
                client_id=client_id,
                status=200 if issued else 400,
                error=None if isinstance(result, Issued) else result,
                scope=result.scope if isinstance(result, Issued) else None,
            )
        )

    def clear(self) -> None:
        self._codes.clear()
        self.exchanges.clear()
