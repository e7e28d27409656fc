"""Fetching a merchant's feed from a URL, conditionally, into a file `adapters.feed` can read.

The body is streamed to a temporary file (never held in memory) whose name keeps the feed's
format suffix (`.jsonl`, `.tsv`, `.xml`, plus `.gz` only when the bytes on disk are gzip), and
the server's ETag / Last-Modified are handed back so the next fetch can be conditional.
"""

from __future__ import annotations

import os
import re
import tempfile
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Literal
from urllib.parse import urljoin, urlparse

import httpx

from adapters.feed import feed_format
from core.errors import FeedError

MAX_FEED_BYTES = 2 * 1024**3
MAX_REDIRECTS = 5
DEFAULT_TIMEOUT = httpx.Timeout(30.0, connect=10.0)
LOOPBACK_HOSTS = frozenset({"127.0.0.1", "localhost", "::1"})
GZIP_MAGIC = b"\x1f\x8b"
FORMAT_SUFFIXES = {"jsonl": ".jsonl", "tsv": ".tsv", "xml": ".xml"}
CONTENT_TYPE_SUFFIXES = {
    "application/x-ndjson": ".jsonl",
    "application/jsonl": ".jsonl",
    "text/tab-separated-values": ".tsv",
    "application/xml": ".xml",
    "text/xml": ".xml",
    "application/rss+xml": ".xml",
    "application/atom+xml": ".xml",
}
REFRESH_RE = re.compile(r"^\s*(\d{1,9})\s*([smhd])\s*$", re.IGNORECASE)
REFRESH_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days"}
MAX_REFRESH = timedelta(days=365)


@dataclass(frozen=True)
class FeedFetch:
    """What a fetch did: a new file downloaded, or the merchant's feed unchanged since last time.

    `path` is the downloaded file (the caller owns it and deletes it after the import);
    `etag` and `last_modified` are what to send on the next fetch; `bytes` is the size on disk.
    """

    status: Literal["downloaded", "not_modified"]
    path: Path | None
    etag: str | None
    last_modified: str | None
    bytes: int


class FeedFetcher:
    """Downloads feeds over HTTP(S) with one injected client.

    Only `https://` URLs are fetched, and `http://` only for loopback hosts (127.0.0.1,
    localhost, ::1) so that tests and a merchant's local development server work; the same rule
    holds for every redirect, which is followed here rather than by the client.
    """

    def __init__(self, client: httpx.AsyncClient, *, max_bytes: int = MAX_FEED_BYTES,
                 timeout: httpx.Timeout = DEFAULT_TIMEOUT) -> None:
        self.client = client
        self.max_bytes = max_bytes
        self.timeout = timeout

    async def fetch(self, url: str, *, directory: Path, etag: str | None = None,
                    last_modified: str | None = None) -> FeedFetch:
        """Fetch a feed unless it is unchanged since `etag` / `last_modified`.

        Args:
            url: the feed's `https://` URL (see the class docstring for `http://`).
            directory: where the downloaded file is created.
            etag: the ETag of the last download, sent as `If-None-Match`.
            last_modified: the Last-Modified of the last download, sent as
                `If-Modified-Since`.

        Returns:
            `not_modified` (no file) on 304, else `downloaded` with the file's path.

        Raises:
            FeedError: a URL that is not allowed, an HTTP error status, a timeout or network
                failure, a body over `max_bytes`, or a format that neither the URL nor the
                Content-Type tells; no file is left behind.
        """
        headers = {}
        if etag:
            headers["If-None-Match"] = etag
        if last_modified:
            headers["If-Modified-Since"] = last_modified
        for _ in range(MAX_REDIRECTS + 1):
            _check_url(url)
            shown = _shown(url)
            try:
                async with self.client.stream("GET", url, headers=headers, timeout=self.timeout,
                                              follow_redirects=False) as response:
                    if response.has_redirect_location:
                        url = urljoin(url, response.headers["location"])
                        continue
                    if response.status_code == 304:
                        return FeedFetch(
                            status="not_modified", path=None,
                            etag=response.headers.get("etag") or etag,
                            last_modified=response.headers.get("last-modified") or last_modified,
                            bytes=0)
                    if response.status_code != 200:
                        raise FeedError(f"{shown}: HTTP {response.status_code} "
                                        f"{response.reason_phrase}".rstrip(),
                                        url=shown, status=response.status_code)
                    return await self._download(shown, response, directory)
            except httpx.TimeoutException as exc:
                raise FeedError(f"{shown}: timed out ({type(exc).__name__})", url=shown) from None
            except httpx.HTTPError as exc:
                raise FeedError(f"{shown}: download failed ({type(exc).__name__}: {exc})",
                                url=shown) from None
        raise FeedError(f"{_shown(url)}: more than {MAX_REDIRECTS} redirects", url=_shown(url))

    async def _download(self, shown: str, response: httpx.Response, directory: Path
                        ) -> FeedFetch:
        suffix = _format_suffix(shown, response)
        declared = response.headers.get("content-length", "")
        if declared.isdigit() and int(declared) > self.max_bytes:
            raise self._too_large(shown)
        chunks = response.aiter_bytes()  # decoded: a Content-Encoding never reaches the disk
        head = b""
        async for chunk in chunks:
            head += chunk
            if len(head) >= len(GZIP_MAGIC):
                break
        if len(head) > self.max_bytes:
            raise self._too_large(shown)
        # Only the bytes say whether the file is gzip: a `.gz` URL served with
        # `Content-Encoding: gzip` arrives decoded, and a `.jsonl` URL may be raw gzip.
        if head.startswith(GZIP_MAGIC):
            suffix += ".gz"
        fd, name = tempfile.mkstemp(prefix="feed-", suffix=suffix, dir=directory)
        path = Path(name)
        size = len(head)
        try:
            with os.fdopen(fd, "wb") as out:
                out.write(head)
                async for chunk in chunks:
                    size += len(chunk)
                    if size > self.max_bytes:
                        raise self._too_large(shown)
                    out.write(chunk)
        except BaseException:
            path.unlink(missing_ok=True)
            raise
        return FeedFetch(status="downloaded", path=path, etag=response.headers.get("etag"),
                         last_modified=response.headers.get("last-modified"), bytes=size)

    def _too_large(self, shown: str) -> FeedError:
        return FeedError(f"{shown}: feed larger than the {self.max_bytes} bytes allowed",
                         url=shown, max_bytes=self.max_bytes)


def _shown(url: str) -> str:
    """The URL without credentials or query: feed URLs often carry an access token there."""
    parsed = urlparse(url)
    host = parsed.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    port = f":{parsed.port}" if parsed.port else ""
    return f"{parsed.scheme}://{host}{port}{parsed.path}"


def _check_url(url: str) -> None:
    parsed = urlparse(url)
    try:
        parsed.port  # noqa: B018 -- raises on a port that is not a number in range
    except ValueError:
        raise FeedError("feed URL has an invalid port") from None
    if parsed.scheme == "https" and parsed.hostname:
        return
    if parsed.scheme == "http" and parsed.hostname in LOOPBACK_HOSTS:
        return
    raise FeedError(f"{_shown(url)}: feed URLs must be https:// (http:// only for loopback "
                    f"hosts)", url=_shown(url))


def _format_suffix(shown: str, response: httpx.Response) -> str:
    """`.jsonl`, `.tsv` or `.xml`, from the URL's file name, else from the Content-Type."""
    name = urlparse(shown).path.rsplit("/", 1)[-1]
    try:
        return FORMAT_SUFFIXES[feed_format(Path(name or "feed"))]
    except FeedError:
        pass
    media_type = response.headers.get("content-type", "").split(";")[0].strip().lower()
    if media_type in CONTENT_TYPE_SUFFIXES:
        return CONTENT_TYPE_SUFFIXES[media_type]
    raise FeedError(f"{shown}: cannot tell the feed format from the URL or the Content-Type "
                    f"{media_type or '(none)'!r}", url=shown)


def parse_refresh(text: str) -> timedelta:
    """A refresh interval like `90s`, `30m`, `1h` or `1d` (one number, one unit).

    Raises:
        FeedError: not of that form, zero, or longer than a year.
    """
    match = REFRESH_RE.match(text)
    if not match:
        raise FeedError(f"refresh interval {text!r} is not like 90s, 30m, 1h or 1d")
    interval = timedelta(**{REFRESH_UNITS[match.group(2).lower()]: int(match.group(1))})
    if not timedelta(0) < interval <= MAX_REFRESH:
        raise FeedError(f"refresh interval {text!r} must be above zero and at most 365d")
    return interval


def is_due(last_sync: datetime | None, refresh: timedelta | None, now: datetime) -> bool:
    """Whether a feed with this refresh interval should be fetched again at `now`.

    A feed without an interval is only fetched on demand (never due); one never synced is due.
    `last_sync` and `now` must both be timezone-aware or both naive (UTC).
    """
    if refresh is None:
        return False
    return last_sync is None or now >= last_sync + refresh
