"""Webhook signature checks, done on the raw body before anything is parsed."""

from __future__ import annotations

import hashlib
import hmac


def hmac_sha256_hex(secret: str, body: bytes) -> str:
    return hmac.new(secret.encode("utf-8"), body, hashlib.sha256).hexdigest()


def verify_sha256_header(*, secret: str, body: bytes, header: str | None) -> bool:
    """Check a `sha256=<hex HMAC-SHA256(secret, body)>` header in constant time."""
    if not header or not header.startswith("sha256="):
        return False
    expected = hmac_sha256_hex(secret, body)
    given = header.removeprefix("sha256=").strip().lower()
    # Bytes: compare_digest refuses str holding anything but ASCII, and a forged header may.
    return hmac.compare_digest(expected.encode(), given.encode("utf-8", "replace"))
