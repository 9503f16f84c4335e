"""How the simulator PSP signs its callbacks, for payhook to check and the sandbox to sign.

`X-Payhook-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256>` over `<t>\\n<session id>\\n<raw
body>`, keyed with `PAYHOOK_SIMULATOR_WEBHOOK_SECRET`. The session id binds a signature to
one payment (an approval of one payment cannot be replayed to another) and the timestamp
to a short window (`PAYHOOK_CALLBACK_TOLERANCE_SECONDS`). Neither a timestamp nor a session
id can hold a newline, so the signed text is unambiguous.

The secret must be private: the value earlier versions shipped as a default is public, and
a secret shorter than 32 characters is guessable; payhook refuses both.
"""

from __future__ import annotations

import hashlib
import hmac
import re

from pydantic import SecretStr

# Published with earlier versions as the default; anyone can sign with it.
PUBLIC_DEV_SECRET = "payhook-simulator-dev-secret"  # noqa: S105
MIN_SECRET_CHARS = 32

_HEADER = re.compile(r"t=(\d{1,12}),v1=([0-9a-f]{64})")


def simulator_reference(session_id: str) -> str:
    """The simulator PSP's reference for a payment: a callback must carry its own."""
    return f"simpay_{session_id}"


def _digest(secret: str, session_id: str, timestamp: int, body: bytes) -> str:
    signed = f"{timestamp}\n{session_id}\n".encode() + body
    return hmac.new(secret.encode(), signed, hashlib.sha256).hexdigest()


def sign(secret: str, session_id: str, timestamp: int, body: bytes) -> str:
    """The `X-Payhook-Signature` value for a callback about `session_id` sent at `timestamp`."""
    return f"t={timestamp},v1={_digest(secret, session_id, timestamp, body)}"


def signed_at(header: bytes, secret: str, session_id: str, body: bytes) -> int | None:
    """The timestamp of a valid signature, or None when the header does not sign this
    session and body with `secret`."""
    found = _HEADER.fullmatch(header.decode("ascii", "replace"))
    if found is None:
        return None
    timestamp = int(found[1])
    expected = _digest(secret, session_id, timestamp, body)
    return timestamp if hmac.compare_digest(found[2], expected) else None


def secret_problem(secret: SecretStr | None) -> str | None:
    """Why callbacks cannot be trusted with this secret; None when it is fit for use."""
    if secret is None:
        return "PAYHOOK_SIMULATOR_WEBHOOK_SECRET is not set"
    value = secret.get_secret_value()
    if value == PUBLIC_DEV_SECRET:
        return "PAYHOOK_SIMULATOR_WEBHOOK_SECRET is the public development value"
    if len(value) < MIN_SECRET_CHARS:
        return f"PAYHOOK_SIMULATOR_WEBHOOK_SECRET is shorter than {MIN_SECRET_CHARS} characters"
    return None
