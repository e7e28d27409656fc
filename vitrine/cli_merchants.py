"""`vitrine merchants ...`: register, list, sync, check and remove merchants."""

from __future__ import annotations

import argparse
import json
import sys
import time

import anyio
import httpx
from sqlmodel import Session

from adapters.feed import FeedReport
from catalog.merchants import remove_merchant
from catalog.models import MerchantKind
from catalog.onboarding import ConformanceFailed
from catalog.store import get_merchant, list_merchants
from catalog.sync import sync_due, sync_merchant
from core.db import session_scope
from core.errors import InvalidInput
from vitrine.runtime import build_runtime


class RowProgress:
    """A one-line progress report on stderr for long imports."""

    def __init__(self, label: str) -> None:
        self.label = label
        self.started = time.monotonic()
        self.shown = False

    def __call__(self, rows: int) -> None:
        elapsed = max(time.monotonic() - self.started, 1e-6)
        bar = "#" * min(30, rows // 50_000 + 1)
        print(f"\r{self.label} [{bar:<30}] {rows:>10,} rows  {rows / elapsed:>8,.0f} rows/s",
              end="", file=sys.stderr, flush=True)
        self.shown = True

    def done(self) -> None:
        if self.shown:
            print(file=sys.stderr)


def _print_report(slug: str, report: FeedReport, as_json: bool, **extra: object) -> None:
    if as_json:
        print(json.dumps({"merchant": slug, **extra, **report.as_dict()}, ensure_ascii=False))
        return
    print(f"{slug}: imported {report.imported} products, rejected {report.rejected} rows")
    for error in report.errors[:20]:
        print(f"  line {error.line}: {error.reason}")
    if report.rejected > 20:
        print(f"  ... and {report.rejected - 20} more")


def _http_client() -> httpx.AsyncClient:
    return httpx.AsyncClient(timeout=httpx.Timeout(30.0, connect=10.0))


def cmd_add(args: argparse.Namespace) -> int:
    runtime = build_runtime()
    if args.mcp:
        try:
            done = runtime.onboarding.mcp(name=args.name, market=args.market, url=args.mcp,
                                          slug=args.slug, force=args.force)
        except ConformanceFailed as exc:
            print(exc.report.as_text(), file=sys.stderr)
            raise InvalidInput(f"{exc.reason} (see above; --force registers it anyway)") from None
        if args.json:
            print(json.dumps({"merchant": done.merchant.slug, "market": done.merchant.market,
                              "kind": "mcp", "api_key": done.api_key,
                              "conformance_ok": bool(done.conformance and done.conformance.ok)}))
        else:
            print(done.conformance.as_text() if done.conformance else "")
            print(f"{done.merchant.slug}: registered, searched live at {args.mcp}")
            print(f"API key (shown once): {done.api_key}")
        return 0
    if not args.feed:
        raise InvalidInput("give --feed PATH_OR_URL or --mcp URL")
    progress = RowProgress(args.name)
    try:
        done = runtime.onboarding.feed(name=args.name, market=args.market, source=args.feed,
                                       slug=args.slug, refresh=args.refresh,
                                       base_url=args.base_url, replace=args.replace,
                                       on_rows=progress)
    finally:
        progress.done()
    assert done.feed_report is not None
    _print_report(done.merchant.slug, done.feed_report, args.json,
                  market=done.merchant.market, kind="feed", api_key=done.api_key)
    if not args.json:
        print(f"API key (shown once): {done.api_key}")
    return 0


def cmd_list(args: argparse.Namespace) -> int:
    runtime = build_runtime()
    with Session(runtime.engine) as session:
        merchants = list_merchants(session=session, market=args.market)
    rows = [{"id": m.slug, "name": m.name, "market": m.market, "kind": m.kind.value,
             "products": m.product_count, "feed": m.feed_source, "mcp_url": m.mcp_url,
             "refresh_seconds": m.refresh_seconds, "last_error": m.last_error,
             "synced_at": m.synced_at.isoformat() if m.synced_at else None}
            for m in merchants]
    if args.json:
        print(json.dumps(rows, ensure_ascii=False))
    else:
        for row in rows:
            print(f"{row['id']:24} {row['market']}  {row['kind']:4} {row['products']:>7} "
                  f"products  {row['name']}")
    return 0


def cmd_sync(args: argparse.Namespace) -> int:
    runtime = build_runtime()
    with Session(runtime.engine) as session:
        if args.all or args.due:
            targets = [m.slug for m in list_merchants(session=session)
                       if m.kind == MerchantKind.FEED and (not args.due or sync_due(m))]
        elif args.name:
            targets = [get_merchant(session=session, slug=args.name).slug]
        else:
            raise InvalidInput("give a merchant id, --all or --due")

    async def run_all():
        results = []
        async with _http_client() as client:
            for slug in targets:
                progress = RowProgress(slug)
                try:
                    results.append(await sync_merchant(engine=runtime.engine, slug=slug,
                                                       client=client, on_rows=progress))
                finally:
                    progress.done()
        return results

    failed = 0
    for result in anyio.run(run_all):
        if result.status == "failed":
            failed += 1
            print(f"{result.merchant}: sync failed: {result.error}", file=sys.stderr)
        elif result.report is not None:
            _print_report(result.merchant, result.report, args.json, status=result.status)
        elif args.json:
            print(json.dumps({"merchant": result.merchant, "status": result.status}))
        else:
            print(f"{result.merchant}: not modified since the last sync")
    return 1 if failed else 0


def cmd_check(args: argparse.Namespace) -> int:
    runtime = build_runtime()
    with Session(runtime.engine) as session:
        merchant = get_merchant(session=session, slug=args.name)
    if merchant.kind == MerchantKind.MCP:
        report = runtime.onboarding.conformance(merchant.slug, merchant.mcp_url or "",
                                                market=merchant.market)
        print(report.as_text())
        return 0 if report.ok else 1
    from catalog.health import merchant_health

    with Session(runtime.engine) as session:
        health = merchant_health(session=session, merchant=merchant)
    print(health.model_dump_json(indent=2))
    return 0 if health.status in ("ok", "never_synced") else 1


def cmd_remove(args: argparse.Namespace) -> int:
    runtime = build_runtime()
    with session_scope(runtime.engine) as session:
        merchant = get_merchant(session=session, slug=args.name)
        count = remove_merchant(session=session, merchant=merchant)
    print(f"{args.name}: removed, with {count} products")
    return 0


def add_parsers(sub: argparse._SubParsersAction) -> None:
    merchants = sub.add_parser("merchants", help="register, list, sync, check, remove")
    msub = merchants.add_subparsers(dest="merchants_command", required=True)
    add = msub.add_parser("add", help="register a merchant: a feed (file or URL) or an MCP server")
    add.add_argument("name")
    add.add_argument("--market", required=True)
    source = add.add_mutually_exclusive_group()
    source.add_argument("--feed", help="a .jsonl/.tsv/.xml file (optionally .gz) or https URL")
    source.add_argument("--mcp", help="the URL of the merchant's UCP MCP server")
    add.add_argument("--refresh", help="fetch a feed URL again this often: 90s, 30m, 1h, 1d")
    add.add_argument("--slug")
    add.add_argument("--base-url", help="resolve site-relative links in the feed against it")
    add.add_argument("--replace", action="store_true", help="re-import an existing merchant")
    add.add_argument("--force", action="store_true",
                     help="register an MCP server even if the conformance check fails")
    add.add_argument("--json", action="store_true")
    add.set_defaults(func=cmd_add)

    lst = msub.add_parser("list", help="list merchants")
    lst.add_argument("--market")
    lst.add_argument("--json", action="store_true")
    lst.set_defaults(func=cmd_list)

    sync = msub.add_parser("sync", help="fetch and import feeds")
    sync.add_argument("name", nargs="?")
    sync.add_argument("--all", action="store_true", help="every feed merchant")
    sync.add_argument("--due", action="store_true", help="feeds whose refresh interval passed")
    sync.add_argument("--json", action="store_true")
    sync.set_defaults(func=cmd_sync)

    check = msub.add_parser("check", help="conformance (MCP) or health report")
    check.add_argument("name")
    check.set_defaults(func=cmd_check)

    remove = msub.add_parser("remove", help="remove a merchant and its products")
    remove.add_argument("name")
    remove.set_defaults(func=cmd_remove)

