"""Fetching feeds: a real HTTP server on loopback for the happy paths and conditional
requests, `httpx.MockTransport` for error statuses, timeouts and oversized bodies."""

import gzip
import json
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta

import httpx
import pytest

from adapters.feed import read_feed
from adapters.feed_source import FeedFetcher, is_due, parse_refresh
from core.errors import FeedError, InvalidInput
from tests.factories import ucp_product
from tests.feed_server import FeedServer, running_feed_server

pytestmark = pytest.mark.anyio

JSONL = "".join(json.dumps(ucp_product(f"P{i}")) + "\n" for i in range(3)).encode()
TSV = b"id\ttitle\tprice\n1\tCaneca\t10.00 BRL\n"
RSS = (b'<?xml version="1.0"?><rss version="2.0" xmlns:g="http://base.google.com/ns/1.0">'
       b"<channel><item><g:id>X1</g:id><title>Caneca</title><g:price>10.00 BRL</g:price>"
       b"</item></channel></rss>")
ETAG = '"v1"'
LAST_MODIFIED = "Wed, 21 Oct 2026 07:28:00 GMT"


@pytest.fixture
def feed_server() -> Iterator[FeedServer]:
    with running_feed_server() as feeds:
        feeds.publish("/moved", b"", {"Location": "/products.jsonl"}, status=302)
        feeds.publish("/products.jsonl", JSONL, {
            "ETag": ETAG, "Last-Modified": LAST_MODIFIED, "Content-Type": "application/x-ndjson"})
        # gzip as a transfer encoding
        feeds.publish("/products.xml.gz", gzip.compress(RSS), {
            "Content-Encoding": "gzip", "Content-Type": "application/xml"}, etag=False)
        # a real gzip file
        feeds.publish("/catalog.tsv.gz", gzip.compress(TSV),
                      {"Content-Type": "application/gzip"}, etag=False)
        feeds.publish("/export?format=tsv", TSV,
                      {"Content-Type": "text/tab-separated-values; charset=utf-8"}, etag=False)
        feeds.publish("/download", JSONL, {"Content-Type": "application/octet-stream"},
                      etag=False)
        yield feeds


@pytest.fixture
async def http() -> AsyncIterator[httpx.AsyncClient]:
    # trust_env=False: a proxy from the environment must not see loopback traffic.
    async with httpx.AsyncClient(trust_env=False, timeout=5) as client:
        yield client


async def test_a_feed_is_downloaded_then_not_modified_on_the_next_fetch(feed_server, http,
                                                                       tmp_path):
    fetcher = FeedFetcher(http)
    first = await fetcher.fetch(f"{feed_server.base}/products.jsonl", directory=tmp_path)
    assert (first.status, first.etag, first.last_modified, first.bytes) == \
        ("downloaded", ETAG, LAST_MODIFIED, len(JSONL))
    assert first.path and first.path.parent == tmp_path and first.path.suffix == ".jsonl"
    assert first.path.read_bytes() == JSONL
    assert [item.id for _, item in read_feed(first.path)] == ["P0", "P1", "P2"]

    second = await fetcher.fetch(f"{feed_server.base}/products.jsonl", directory=tmp_path,
                                 etag=first.etag, last_modified=first.last_modified)
    assert (second.status, second.path, second.etag, second.bytes) == \
        ("not_modified", None, ETAG, 0)
    assert second.last_modified == LAST_MODIFIED
    assert len(feed_server.requests) == 2
    sent = feed_server.requests[1][1]
    assert sent["If-None-Match"] == ETAG and sent["If-Modified-Since"] == LAST_MODIFIED
    assert "If-None-Match" not in feed_server.requests[0][1]
    assert list(tmp_path.iterdir()) == [first.path]  # a 304 writes nothing


async def test_a_changed_etag_downloads_again(feed_server, http, tmp_path):
    fetch = await FeedFetcher(http).fetch(f"{feed_server.base}/products.jsonl",
                                          directory=tmp_path, etag='"v0"')
    assert fetch.status == "downloaded" and fetch.etag == ETAG


async def test_a_redirect_on_loopback_is_followed(feed_server, http, tmp_path):
    fetch = await FeedFetcher(http).fetch(f"{feed_server.base}/moved", directory=tmp_path)
    assert fetch.status == "downloaded" and fetch.path and fetch.path.suffix == ".jsonl"
    assert [path for path, _ in feed_server.requests] == ["/moved", "/products.jsonl"]


async def test_a_gz_suffix_is_kept_only_when_the_bytes_on_disk_are_gzip(feed_server, http,
                                                                        tmp_path):
    fetcher = FeedFetcher(http)
    decoded = await fetcher.fetch(f"{feed_server.base}/products.xml.gz", directory=tmp_path)
    assert decoded.path and decoded.path.name.endswith(".xml")
    assert decoded.path.read_bytes() == RSS
    assert [item.id for _, item in read_feed(decoded.path)] == ["X1"]

    raw = await fetcher.fetch(f"{feed_server.base}/catalog.tsv.gz", directory=tmp_path)
    assert raw.path and raw.path.name.endswith(".tsv.gz")
    assert [item.id for _, item in read_feed(raw.path)] == ["1"]


async def test_the_format_comes_from_the_content_type_when_the_url_has_none(feed_server, http,
                                                                           tmp_path):
    fetcher = FeedFetcher(http)
    fetch = await fetcher.fetch(f"{feed_server.base}/export?format=tsv", directory=tmp_path)
    assert fetch.path and fetch.path.suffix == ".tsv"
    with pytest.raises(FeedError, match="cannot tell the feed format"):
        await fetcher.fetch(f"{feed_server.base}/download", directory=tmp_path)
    assert [p.suffix for p in tmp_path.iterdir()] == [".tsv"]


async def test_a_missing_feed_on_the_server_is_an_http_error(feed_server, http, tmp_path):
    with pytest.raises(FeedError, match="HTTP 404") as caught:
        await FeedFetcher(http).fetch(f"{feed_server.base}/gone.jsonl", directory=tmp_path)
    assert caught.value.context["status"] == 404


# Errors through httpx.MockTransport

def mock_client(handler) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.MockTransport(handler))


@pytest.mark.parametrize("status, reason", [(403, "HTTP 403 Forbidden"),
                                            (500, "HTTP 500 Internal Server Error"),
                                            (204, "HTTP 204 No Content")])
async def test_an_error_status_is_a_feed_error_with_the_status(tmp_path, status, reason):
    async with mock_client(lambda request: httpx.Response(status)) as client:
        with pytest.raises(FeedError) as caught:
            await FeedFetcher(client).fetch("https://shop.example/feed.jsonl",
                                            directory=tmp_path)
    assert caught.value.reason == f"https://shop.example/feed.jsonl: {reason}"
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("error, reason", [
    (httpx.ReadTimeout, "timed out (ReadTimeout)"),
    (httpx.ConnectTimeout, "timed out (ConnectTimeout)"),
    (httpx.ConnectError, "download failed (ConnectError: boom)"),
])
async def test_a_timeout_or_network_failure_is_a_feed_error(tmp_path, error, reason):
    def handler(request: httpx.Request) -> httpx.Response:
        raise error("boom", request=request)

    async with mock_client(handler) as client:
        with pytest.raises(FeedError) as caught:
            await FeedFetcher(client).fetch("https://shop.example/feed.jsonl",
                                            directory=tmp_path)
    assert caught.value.reason == f"https://shop.example/feed.jsonl: {reason}"


async def test_the_fetcher_sends_its_explicit_timeouts(tmp_path):
    seen: list[dict] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request.extensions["timeout"])
        return httpx.Response(200, content=JSONL)

    async with mock_client(handler) as client:
        await FeedFetcher(client, timeout=httpx.Timeout(7.0, connect=2.0)).fetch(
            "https://shop.example/feed.jsonl", directory=tmp_path)
    assert seen == [{"connect": 2.0, "read": 7.0, "write": 7.0, "pool": 7.0}]


async def _chunks(count: int, size: int) -> AsyncIterator[bytes]:
    for _ in range(count):
        yield b"x" * size


@pytest.mark.parametrize("response", [
    lambda: httpx.Response(200, content=b"x" * 1001),  # announced by Content-Length
    lambda: httpx.Response(200, content=_chunks(20, 100)),  # streamed, no length
    lambda: httpx.Response(200, content=_chunks(1, 5000)),  # a single oversized chunk
], ids=["content-length", "streamed", "one-chunk"])
async def test_a_feed_over_the_size_limit_is_refused_and_nothing_is_left(tmp_path, response):
    async with mock_client(lambda request: response()) as client:
        with pytest.raises(FeedError, match="larger than the 1000 bytes allowed"):
            await FeedFetcher(client, max_bytes=1000).fetch("https://shop.example/f.jsonl",
                                                            directory=tmp_path)
    assert list(tmp_path.iterdir()) == []


async def test_a_feed_of_exactly_the_size_limit_is_downloaded(tmp_path):
    async with mock_client(lambda request: httpx.Response(200, content=_chunks(10, 100))
                           ) as client:
        fetch = await FeedFetcher(client, max_bytes=1000).fetch(
            "https://shop.example/f.jsonl", directory=tmp_path)
    assert fetch.bytes == 1000 and fetch.path and fetch.path.stat().st_size == 1000


async def test_raw_gzip_under_a_plain_name_gets_a_gz_suffix(tmp_path):
    async with mock_client(lambda request: httpx.Response(200, content=gzip.compress(JSONL))
                           ) as client:
        fetch = await FeedFetcher(client).fetch("https://shop.example/f.jsonl",
                                                directory=tmp_path)
    assert fetch.path and fetch.path.name.endswith(".jsonl.gz")
    assert len(list(read_feed(fetch.path))) == 3


@pytest.mark.parametrize("url", [
    "http://shop.example/feed.jsonl",
    "ftp://shop.example/feed.jsonl",
    "file:///etc/passwd",
    "https:///feed.jsonl",
    "http://127.0.0.2.shop.example/feed.jsonl",
])
async def test_only_https_or_loopback_http_urls_are_fetched(tmp_path, url):
    requests: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        requests.append(request)
        return httpx.Response(200, content=JSONL)

    async with mock_client(handler) as client:
        with pytest.raises(FeedError, match=r"must be https:// \(http:// only for loopback"):
            await FeedFetcher(client).fetch(url, directory=tmp_path)
    assert requests == []


@pytest.mark.parametrize("host", ["127.0.0.1:8080", "localhost", "[::1]:9000"])
async def test_http_is_allowed_for_loopback_hosts(tmp_path, host):
    async with mock_client(lambda request: httpx.Response(200, content=JSONL)) as client:
        fetch = await FeedFetcher(client).fetch(f"http://{host}/f.jsonl", directory=tmp_path)
    assert fetch.status == "downloaded"


async def test_a_redirect_to_plain_http_is_refused(tmp_path):
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(301, headers={"Location": "http://shop.example/feed.jsonl"})

    async with mock_client(handler) as client:
        with pytest.raises(FeedError, match="must be https://"):
            await FeedFetcher(client).fetch("https://shop.example/feed.jsonl",
                                            directory=tmp_path)


async def test_a_redirect_loop_is_cut_off(tmp_path):
    calls: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        calls.append(str(request.url))
        return httpx.Response(302, headers={"Location": "/feed.jsonl"})

    async with mock_client(handler) as client:
        with pytest.raises(FeedError, match="more than 5 redirects"):
            await FeedFetcher(client).fetch("https://shop.example/feed.jsonl",
                                            directory=tmp_path)
    assert len(calls) == 6


async def test_error_reasons_do_not_show_the_access_token_in_the_url(tmp_path):
    async with mock_client(lambda request: httpx.Response(401)) as client:
        with pytest.raises(FeedError) as caught:
            await FeedFetcher(client).fetch(
                "https://user:pw@shop.example/feed.jsonl?token=SECRET", directory=tmp_path)
    assert caught.value.reason == "https://shop.example/feed.jsonl: HTTP 401 Unauthorized"
    assert "SECRET" not in repr(caught.value.context)


@pytest.mark.parametrize("content_type, suffix", [
    ("application/x-ndjson", ".jsonl"), ("application/jsonl; charset=utf-8", ".jsonl"),
    ("text/tab-separated-values", ".tsv"), ("application/xml", ".xml"),
    ("text/xml; charset=iso-8859-1", ".xml"), ("application/rss+xml", ".xml"),
])
async def test_content_types_map_to_feed_suffixes(tmp_path, content_type, suffix):
    async with mock_client(lambda request: httpx.Response(
            200, content=b"x", headers={"Content-Type": content_type})) as client:
        fetch = await FeedFetcher(client).fetch("https://shop.example/export",
                                                directory=tmp_path)
    assert fetch.path and fetch.path.suffix == suffix


# The per-merchant refresh interval

@pytest.mark.parametrize("text, interval", [
    ("90s", timedelta(seconds=90)), ("30m", timedelta(minutes=30)), ("1h", timedelta(hours=1)),
    ("1d", timedelta(days=1)), (" 12H ", timedelta(hours=12)), ("365d", timedelta(days=365)),
])
def test_refresh_intervals_are_parsed(text, interval):
    assert parse_refresh(text) == interval


@pytest.mark.parametrize("text", ["", "1", "h", "1.5h", "-1h", "0m", "1w", "1h30m", "366d",
                                  "9999999999d"])
def test_bad_refresh_intervals_are_refused_with_a_reason(text):
    with pytest.raises(InvalidInput, match="refresh interval"):
        parse_refresh(text)


NOW = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)


@pytest.mark.parametrize("last_sync, refresh, due", [
    (None, timedelta(hours=1), True),
    (None, None, False),
    (NOW - timedelta(hours=2), None, False),
    (NOW - timedelta(minutes=59), timedelta(hours=1), False),
    (NOW - timedelta(hours=1), timedelta(hours=1), True),
    (NOW + timedelta(minutes=5), timedelta(minutes=1), False),  # a clock ahead of ours
])
def test_a_feed_is_due_once_its_refresh_interval_has_passed(last_sync, refresh, due):
    assert is_due(last_sync, refresh, NOW) is due
