"""Per-shop Shopify access tokens, kept in Redis encrypted and managed with `payhook shops`.

A token is stored as `fernet:<Fernet token>` under `PAYHOOK_TOKEN_KEYS`: the first key
encrypts, every key decrypts (`MultiFernet`), so a key is rotated by putting the new one
first on every process, running `payhook shops rotate` (which re-encrypts each token under
it), and then dropping the old one. A Redis dump or replica therefore holds no usable token
without the keys, which live only in the processes' settings.

A value without the prefix was stored before tokens were encrypted: it is still read (so an
upgrade strands no shop), `payhook doctor` warns about it and `payhook shops rotate`
encrypts it. Tokens are never logged or echoed back in full.

A shop that uninstalled the app (Shopify's `app/uninstalled` webhook) keeps a tombstone in
place of its token, `uninstalled:<epoch seconds>`: no token, and no fallback token either,
so intake refuses its sessions (403 `shop_uninstalled`) and a worker's claim, which reads
the same value, knows at once that no report can be sent. A re-install stores a token over
it (`payhook shops add`, OAuth) and lets the shop in again.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from enum import StrEnum

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from redis.asyncio import Redis

from config import Settings
from errors import NoTokenKey, ShopUninstalled, TokenUnreadable
from sessions.keys import SHOPS

PREFIX = "fernet:"
UNINSTALLED = "uninstalled:"
# Decrypted registry values a cipher remembers (one per shop in use).
OPENED_AT_MOST = 10_000

# Replaces a shop's stored value only if it is still the one that was read ('' for none): a
# rotation never overwrites a token `payhook shops add` stored meanwhile, nor an uninstall a
# re-install's token.
_REPLACE_IF_UNCHANGED = """
if (redis.call('HGET', KEYS[1], ARGV[1]) or '') == ARGV[2] then
  redis.call('HSET', KEYS[1], ARGV[1], ARGV[3])
  return 1
end
return 0
"""


def uninstalled_at(stored: str | None) -> float | None:
    """When the shop uninstalled the app, if `stored` is its tombstone; else None."""
    if stored is None or not stored.startswith(UNINSTALLED):
        return None
    try:
        return float(stored.removeprefix(UNINSTALLED))
    except ValueError:
        return 0.0


class TokenCipher:
    def __init__(self, keys: Sequence[str]) -> None:
        if not keys:
            raise ValueError("a token cipher needs at least one key")
        self._fernet = MultiFernet([Fernet(key) for key in keys])
        self._opened: dict[str, str] = {}

    def seal(self, token: str) -> str:
        return PREFIX + self._fernet.encrypt(token.encode()).decode()

    def open(self, stored: str) -> str:
        # Every session of a shop opens the same value: decrypted once (a stored value
        # opens to the same token under the same keys).
        token = self._opened.get(stored)
        if token is None:
            token = self._fernet.decrypt(stored.removeprefix(PREFIX).encode()).decode()
            if len(self._opened) >= OPENED_AT_MOST:
                self._opened.clear()
            self._opened[stored] = token
        return token

    def sealed_at(self, stored: str) -> float | None:
        """When an encrypted token was first stored (a rotation keeps the time); None for
        one no key opens."""
        try:
            return float(self._fernet.extract_timestamp(stored.removeprefix(PREFIX).encode()))
        except InvalidToken:
            return None

    def reseal(self, stored: str) -> str:
        """The same token under the first key; a plain-text one is encrypted."""
        if not stored.startswith(PREFIX):
            return self.seal(stored)
        return PREFIX + self._fernet.rotate(stored.removeprefix(PREFIX).encode()).decode()


def token_cipher(keys: Sequence[str]) -> TokenCipher | None:
    """The cipher for `PAYHOOK_TOKEN_KEYS`; None when no key is configured."""
    return TokenCipher(keys) if keys else None


def open_stored(cipher: TokenCipher | None, shop: str, stored: str) -> str:
    """The token in a stored registry value; `TokenUnreadable` if these keys cannot open it,
    `ShopUninstalled` for a tombstone."""
    if stored.startswith(UNINSTALLED):
        raise ShopUninstalled(
            f"{shop} uninstalled the app: its access token was deleted (a re-install, or "
            f"payhook shops add {shop}, stores a new one)"
        )
    if not stored.startswith(PREFIX):
        return stored
    if cipher is None:
        raise TokenUnreadable(f"the token of {shop} is encrypted and no PAYHOOK_TOKEN_KEYS")
    try:
        return cipher.open(stored)
    except InvalidToken:
        raise TokenUnreadable(
            f"no key in PAYHOOK_TOKEN_KEYS decrypts the token of {shop}"
        ) from None


class Uninstall(StrEnum):
    """What `ShopTokens.uninstall` did."""

    REMOVED = "removed"  # the shop's token was replaced by a tombstone
    NO_TOKEN = "no_token"  # noqa: S105 - it had none of its own (the fallback served it): tombstone set
    ALREADY = "already"  # a tombstone was there already
    REINSTALLED = "reinstalled"  # its token was stored after the uninstall: kept


@dataclass
class Rotation:
    rotated: list[str] = field(default_factory=list)
    unreadable: list[str] = field(default_factory=list)


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


class ShopTokens:
    def __init__(
        self, redis: Redis, cipher: TokenCipher | None = None, fallback: str | None = None
    ) -> None:
        self._redis = redis
        self._cipher = cipher
        self._fallback = fallback
        self._replace = redis.register_script(_REPLACE_IF_UNCHANGED)

    @classmethod
    def from_settings(cls, redis: Redis, settings: Settings) -> ShopTokens:
        """The registry as whatever reports to Shopify reads it: decrypted with
        `PAYHOOK_TOKEN_KEYS`, with `PAYHOOK_SHOPIFY_ACCESS_TOKEN` for a shop without one."""
        fallback = settings.shopify_access_token
        return cls(
            redis,
            token_cipher(settings.token_key_list),
            fallback.get_secret_value() if fallback else None,
        )

    async def token_for(self, shop: str) -> str | None:
        """The shop's own token, else the fallback; `TokenUnreadable` when the shop's own
        token is stored but cannot be decrypted (the fallback never stands in for it)."""
        return self.opened(shop, await self.stored(shop))

    def opened(self, shop: str, stored: str | None) -> str | None:
        """The token a registry value read elsewhere (a claim) stands for: the shop's own,
        else the fallback; `TokenUnreadable` as for `token_for`."""
        if stored is None:
            return self._fallback
        return open_stored(self._cipher, shop, stored)

    async def stored(self, shop: str) -> str | None:
        """The shop's value in the registry as it is stored (encrypted), or None."""
        value = await self._redis.hget(SHOPS, shop)
        return None if value is None else _text(value)

    async def add(self, shop: str, token: str) -> None:
        if self._cipher is None:
            raise NoTokenKey("set PAYHOOK_TOKEN_KEYS to store tokens (docs/operations.md)")
        await self._redis.hset(SHOPS, shop, self._cipher.seal(token))

    async def remove(self, shop: str) -> bool:
        return bool(await self._redis.hdel(SHOPS, shop))

    async def shops(self) -> list[str]:
        """Shops with a token of their own (uninstalled ones aside)."""
        stored = await self._redis.hgetall(SHOPS)
        return sorted(_text(s) for s, v in stored.items() if uninstalled_at(_text(v)) is None)

    async def uninstalled(self) -> dict[str, float]:
        """Shops that uninstalled the app, and when."""
        stored = await self._redis.hgetall(SHOPS)
        found = {_text(s): uninstalled_at(_text(v)) for s, v in stored.items()}
        return {shop: at for shop, at in sorted(found.items()) if at is not None}

    async def plain_text(self) -> list[str]:
        """Shops whose token was stored before encryption."""
        stored = await self._redis.hgetall(SHOPS)
        return sorted(
            _text(s) for s, v in stored.items() if not _text(v).startswith((PREFIX, UNINSTALLED))
        )

    async def uninstall(self, shop: str, *, triggered_at: float, now: float) -> Uninstall:
        """Delete the shop's token for an uninstall Shopify reported at `triggered_at`,
        leaving a tombstone. A token sealed after that moment came with a re-install (its
        OAuth callback, or `payhook shops add`, can land before a late or retried webhook):
        it is kept. Compare-and-set, so a token stored meanwhile is never deleted unseen."""
        while True:
            stored = await self.stored(shop)
            if uninstalled_at(stored) is not None:
                return Uninstall.ALREADY
            if stored is not None and stored.startswith(PREFIX) and self._cipher is not None:
                sealed = self._cipher.sealed_at(stored)
                if sealed is not None and sealed > triggered_at:
                    return Uninstall.REINSTALLED
            tombstone = f"{UNINSTALLED}{now!r}"
            if await self.replace_if_unchanged(shop, stored or "", tombstone):
                return Uninstall.NO_TOKEN if stored is None else Uninstall.REMOVED

    async def rotate(self) -> Rotation:
        """Re-encrypt every token under the first key (plain-text ones too)."""
        if self._cipher is None:
            raise NoTokenKey("set PAYHOOK_TOKEN_KEYS, the new key first, to rotate")
        report = Rotation()
        for raw_shop, raw_value in (await self._redis.hgetall(SHOPS)).items():
            shop, stored = _text(raw_shop), _text(raw_value)
            if uninstalled_at(stored) is not None:
                continue
            try:
                sealed = self._cipher.reseal(stored)
            except InvalidToken:
                report.unreadable.append(shop)
                continue
            if await self.replace_if_unchanged(shop, stored, sealed):
                report.rotated.append(shop)
        report.rotated.sort()
        report.unreadable.sort()
        return report

    async def replace_if_unchanged(self, shop: str, stored: str, new: str) -> bool:
        return bool(await self._replace(keys=[SHOPS], args=[shop, stored, new]))
