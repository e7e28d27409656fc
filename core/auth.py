"""Bearer tokens on HTTP APIs, compared in constant time."""

from __future__ import annotations

import hmac

from core.errors import SignatureError


def bearer(authorization: str | None) -> str | None:
    """The token of an `Authorization: Bearer <token>` header, or None."""
    scheme, _, token = (authorization or "").partition(" ")
    return token.strip() or None if scheme.lower() == "bearer" else None


def require_bearer(authorization: str | None, expected: str, *, what: str) -> None:
    """Raise unless the header carries exactly the expected token.

    Raises:
        SignatureError: no bearer token, or a different one (HTTP 401).
    """
    token = bearer(authorization)
    if token is None or not hmac.compare_digest(token.encode(), expected.encode()):
        raise SignatureError(f"missing or wrong {what} bearer token")
