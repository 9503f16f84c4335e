"""Only Shopify opens sessions: its client certificate, or a trusted proxy's word for it.

The TLS listener asks every client for a certificate but requires none (`CERT_OPTIONAL`): a
certificate that is presented must chain to `PAYHOOK_TLS_CLIENT_CA_FILE` or the handshake
fails, and a client without one still gets through to the routes that have their own
authentication (the PSP's signed callback, the admin API's bearer token, health and
metrics). Shopify's session routes then need one of:

- a client certificate the listener verified (mTLS terminated by payhook);
- a request from a `PAYHOOK_TRUSTED_PROXIES` address whose `PAYHOOK_PROXY_VERIFY_HEADER`
  says `PAYHOOK_PROXY_VERIFY_VALUE` (mTLS terminated by a load balancer in front).

With `PAYHOOK_TLS_CLIENT_SUBJECT` set, the certificate's subject (or the proxy's subject
header) must also hold every attribute of that name. With neither a client CA nor a trusted
proxy configured (`payhook dev`, tests) the routes are open, and `payhook doctor` says so.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from ipaddress import IPv4Network, IPv6Network, ip_address

from aiohttp import web
from aiohttp.typedefs import Middleware
from cryptography import x509
from cryptography.x509.oid import ObjectIdentifier

from config import Settings
from errors import ApiError
from webhook.errors import Handler

log = logging.getLogger("payhook.webhook")

Attributes = frozenset[tuple[ObjectIdentifier, str]]
Networks = tuple[IPv4Network | IPv6Network, ...]


def _attributes(name: x509.Name) -> Attributes:
    return frozenset((attribute.oid, str(attribute.value)) for attribute in name)


def _parse_name(text: str) -> Attributes | None:
    try:
        return _attributes(x509.Name.from_rfc4514_string(text))
    except ValueError:
        return None


def _refused(code: str, message: str) -> ApiError:
    return ApiError(403, code, message)


@dataclass(frozen=True)
class ShopifyAuth:
    certificates: bool
    proxies: Networks
    verify_header: str
    verify_value: str
    subject_header: str
    subject: Attributes | None

    @classmethod
    def from_settings(cls, settings: Settings) -> ShopifyAuth:
        pinned = settings.tls_client_subject
        return cls(
            certificates=settings.tls_cert_file is not None
            and settings.tls_client_ca_file is not None,
            proxies=settings.trusted_proxies,
            verify_header=settings.proxy_verify_header,
            verify_value=settings.proxy_verify_value,
            subject_header=settings.proxy_subject_header,
            subject=_parse_name(pinned) if pinned is not None else None,
        )

    @property
    def enforced(self) -> bool:
        return self.certificates or bool(self.proxies)

    def check(self, request: web.Request) -> None:
        """Return if the request comes from Shopify; raise a 403 `ApiError` otherwise."""
        if not self.enforced:
            return
        certificate = _peer_certificate(request)
        if certificate is not None:
            # Only a certificate that chains to the client CA gets past the handshake.
            self._pinned(_attributes(certificate.subject))
            return
        if not self.proxies:
            raise _refused(
                "client_certificate_required", "Shopify's client certificate is required"
            )
        if not from_trusted_proxy(request, self.proxies):
            raise _refused("untrusted_proxy", "session requests come through the trusted proxy")
        if _single(request, self.verify_header) != self.verify_value:
            raise _refused(
                "client_certificate_required",
                "the proxy did not verify Shopify's client certificate",
            )
        if self.subject is not None:
            sent = _single(request, self.subject_header)
            self._pinned(_parse_name(sent) if sent is not None else None)

    def _pinned(self, subject: Attributes | None) -> None:
        if self.subject is None:
            return
        if subject is None or not self.subject <= subject:
            raise _refused(
                "client_certificate_not_allowed",
                "the client certificate's subject is not the pinned one",
            )


def from_trusted_proxy(request: web.Request, proxies: Networks) -> bool:
    """The request's socket peer is one of `proxies`: its headers are the proxy's word."""
    # The socket's own peer, never a forwarded-for header anyone could write.
    peer = request.transport.get_extra_info("peername") if request.transport else None
    if not peer:
        return False
    try:
        address = ip_address(peer[0])
    except ValueError:
        return False
    mapped = getattr(address, "ipv4_mapped", None)
    return any((mapped or address) in network for network in proxies)


def over_tls(request: web.Request, settings: Settings) -> bool:
    """The client reached payhook over TLS: payhook's own listener, an https
    `PAYHOOK_PUBLIC_URL`, or a trusted proxy whose `X-Forwarded-Proto` (sent once) says
    https. The header counts from a trusted proxy only: anyone else could write it."""
    if request.secure or settings.public_base_url.startswith("https://"):
        return True
    if not from_trusted_proxy(request, settings.trusted_proxies):
        return False
    proto = _single(request, "X-Forwarded-Proto")
    return proto is not None and proto.strip().lower() == "https"


def _single(request: web.Request, name: str) -> str | None:
    """The header's value when it is there exactly once (two copies are a forgery attempt)."""
    values = request.headers.getall(name, [])
    return values[0] if len(values) == 1 else None


def _peer_certificate(request: web.Request) -> x509.Certificate | None:
    ssl_object = request.transport.get_extra_info("ssl_object") if request.transport else None
    if ssl_object is None:
        return None
    der = ssl_object.getpeercert(binary_form=True)
    return x509.load_der_x509_certificate(der) if der else None


def shopify_only(auth: ShopifyAuth, routes: frozenset[str]) -> Middleware:
    """A middleware that runs `auth.check` for the resources named in `routes`."""

    @web.middleware
    async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        resource = request.match_info.route.resource
        if resource is not None and resource.canonical in routes:
            try:
                auth.check(request)
            except ApiError as refusal:
                log.warning(
                    "session request refused",
                    extra={"path": request.path, "remote": request.remote, "code": refusal.code},
                )
                raise
        return await handler(request)

    return middleware
