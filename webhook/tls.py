"""TLS for the inbound endpoints, with mutual TLS: Shopify presents a client certificate
issued by its Payments Platform CA, and nothing else may open a session.

The listener asks for a client certificate without requiring one: the PSP's callback,
health, metrics and the admin API serve clients that have none. A certificate that is
presented must verify, or the handshake fails; `webhook.auth` requires one on the session
routes.
"""

from __future__ import annotations

import ssl

from config import Settings


def server_ssl_context(settings: Settings) -> ssl.SSLContext | None:
    """None serves plain HTTP (dev, or TLS terminated by a trusted proxy in front)."""
    if settings.tls_cert_file is None:
        if settings.tls_client_ca_file is not None:
            raise ValueError("PAYHOOK_TLS_CLIENT_CA_FILE needs PAYHOOK_TLS_CERT_FILE as well")
        return None
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.load_cert_chain(settings.tls_cert_file, settings.tls_key_file)
    if settings.tls_client_ca_file is not None:
        context.load_verify_locations(cafile=str(settings.tls_client_ca_file))
        context.verify_mode = ssl.CERT_OPTIONAL
    return context
