"""Pictures a chat app can show: the app's servers fetch them by URL, so the URL must be
public, and the format one the app renders."""

from __future__ import annotations

import ipaddress
import posixpath
from urllib.parse import urlsplit


def shareable_image(url: str | None, formats: tuple[str, ...]) -> str | None:
    """`url` when a chat app's servers can fetch and show it: http(s), a public host, and a
    file suffix among `formats` (".jpg", ".png"), or none (CDNs often serve pictures
    without one); None otherwise, and the card goes without its picture."""
    if not url:
        return None
    parts = urlsplit(url)
    host = (parts.hostname or "").lower()
    # A single-label name ("localhost", "testserver") resolves only on this network.
    if parts.scheme not in ("http", "https") or "." not in host \
            or host.endswith((".localhost", ".local", ".internal")):
        return None
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        pass
    else:
        if not address.is_global:
            return None
    suffix = posixpath.splitext(parts.path)[1].lower()
    if suffix and suffix not in formats:
        return None
    return url
