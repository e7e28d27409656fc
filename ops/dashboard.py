"""The ops dashboard at `/ops`: server-rendered pages behind a login with the ops token (or
`Authorization: Bearer <ops token>` for scripts), with charts drawn as SVG on the server. It
reads the same report functions as `/api/ops/*`, so its numbers are the API's.

Filters are dates (the `to` day included), channel, market and merchant; every CSV export
link carries them.
"""

from __future__ import annotations

import hashlib
import hmac
import time
from collections.abc import Callable, Sequence
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from html import escape
from typing import Annotated, Any
from urllib.parse import urlencode

from fastapi import APIRouter, Depends, Form, Query, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response, StreamingResponse
from pydantic import BaseModel
from sqlmodel import Session, select

from catalog.models import Merchant
from core.auth import bearer
from core.db import utcnow
from core.errors import SignatureError
from core.markets import all_markets
from core.money import Money, format_money
from ops import charts
from ops.api import ChannelQuery, MarketQuery, MerchantQuery
from ops.funnel import Funnel, funnel
from ops.reports import (
    Filters,
    FunnelRow,
    catalog_gaps,
    cost_per_sale,
    events_csv,
    funnel_by,
    merchant_visibility,
    rows_csv,
    sponsored_vs_organic,
)

router = APIRouter(prefix="/ops", include_in_schema=False)
COOKIE = "vitrine_ops"
SESSION_S = 12 * 3600
DEFAULT_DAYS = 30
MAX_DAYS = 366
FIRST_DAY, LAST_DAY = date(2000, 1, 1), date(2199, 12, 30)
CHANNELS = {"web": "Web chat", "tg": "Telegram", "wa": "WhatsApp"}
PAGE_HEADERS = {
    # No script at all; styles inline; pictures are the page's own SVG.
    "Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'; "
                               "img-src 'self' data:; form-action 'self'; "
                               "frame-ancestors 'none'",
    "Cache-Control": "no-store", "Referrer-Policy": "no-referrer",
}


# Who may look.

def _signature(token: str, expires: int) -> str:
    return hmac.new(token.encode(), f"ops-session:{expires}".encode(),
                    hashlib.sha256).hexdigest()


def session_value(token: str, now: float | None = None) -> str:
    """A login cookie good for 12 hours; changing the ops token ends every session."""
    expires = int(now if now is not None else time.time()) + SESSION_S
    return f"{expires}.{_signature(token, expires)}"


def session_valid(value: str | None, token: str, now: float | None = None) -> bool:
    expires, _, signature = (value or "").partition(".")
    if not expires.isdigit() or int(expires) < (now if now is not None else time.time()):
        return False
    return hmac.compare_digest(signature, _signature(token, int(expires)))


def _allowed(request: Request) -> bool:
    """A valid login cookie, or the ops token as a bearer token.

    Raises:
        SignatureError: a bearer token was given and is wrong (a script gets 401, not the
            login page).
    """
    token = request.app.state.runtime.settings.ops_token
    given = request.headers.get("authorization")
    if given is not None:
        if hmac.compare_digest((bearer(given) or "").encode(), token.encode()):
            return True
        raise SignatureError("missing or wrong ops token")
    return session_valid(request.cookies.get(COOKIE), token)


def _to_login() -> RedirectResponse:
    return RedirectResponse("/ops/login", status_code=303)


@router.get("/login", response_class=HTMLResponse)
def login_page() -> HTMLResponse:
    return _page("Sign in", LOGIN_FORM.format(error=""))


@router.post("/login")
def login(request: Request, token: Annotated[str, Form(max_length=500)] = "") -> Response:
    expected = request.app.state.runtime.settings.ops_token
    if not hmac.compare_digest(token.encode(), expected.encode()):
        return _page("Sign in", LOGIN_FORM.format(
            error='<p class="error" role="alert">That is not the ops token.</p>'), status=401)
    response = RedirectResponse("/ops", status_code=303)
    response.set_cookie(COOKIE, session_value(expected), max_age=SESSION_S, httponly=True,
                        samesite="strict", path="/ops",
                        secure=request.app.state.runtime.settings.public_url.startswith(
                            "https://"))
    return response


@router.post("/logout")
def logout() -> Response:
    response = _to_login()
    response.delete_cookie(COOKIE, path="/ops")
    return response


# What the page shows.

def page_filters(start: date | None, end: date | None, channel: str | None,
                 market: str | None, merchant: str | None, today: date) -> tuple[Filters, dict]:
    """The report filters for the form's values (the `to` day included), and those values,
    defaulted, for the form and the links."""
    end = end or today
    start = start or end - timedelta(days=DEFAULT_DAYS - 1)
    if start > end:
        start, end = end, start
    # At most a year, within the years events can have: a page, not a data dump.
    end = min(max(end, FIRST_DAY), LAST_DAY)
    start = min(max(start, FIRST_DAY, end - timedelta(days=MAX_DAYS - 1)), end)
    form = {"from": start.isoformat(), "to": end.isoformat(), "channel": channel or "",
            "market": (market or "").upper(), "merchant": merchant or ""}
    return Filters(since=datetime.combine(start, datetime.min.time(), tzinfo=UTC),
                   until=datetime.combine(end + timedelta(days=1), datetime.min.time(),
                                          tzinfo=UTC),
                   channel=channel or None, market=(market or "").upper() or None,
                   merchant=merchant or None), form


def page_scope(start: Annotated[date | None, Query(alias="from")] = None,
               end: Annotated[date | None, Query(alias="to")] = None,
               channel: ChannelQuery = None, market: MarketQuery = None,
               merchant: MerchantQuery = None) -> tuple[Filters, dict]:
    """The page's and the exports' filters, from their query."""
    return page_filters(start, end, channel, market, merchant, utcnow().date())


PageScope = Annotated[tuple[Filters, dict], Depends(page_scope)]


@router.get("", response_class=HTMLResponse)
def dashboard(request: Request, scope: PageScope) -> Response:
    if not _allowed(request):
        return _to_login()
    runtime = request.app.state.runtime
    settings = runtime.settings
    filters, form = scope
    with Session(runtime.engine) as session:
        summary = funnel(session=session, since=filters.since, until=filters.until,
                         market=filters.market, channel=filters.channel,
                         llm_price_in_per_mtok=settings.llm_price_in_per_mtok,
                         llm_price_out_per_mtok=settings.llm_price_out_per_mtok)
        days = funnel_by(session, filters, "day")
        merchants = merchant_visibility(session, filters)
        placements = sponsored_vs_organic(session, filters)
        gaps = catalog_gaps(session, filters, limit=15)
        cost = cost_per_sale(session, filters, price_in=settings.llm_price_in_per_mtok,
                             price_out=settings.llm_price_out_per_mtok,
                             fixed_per_day=settings.ops_fixed_cost_per_day_usd, now=utcnow())
        shops = list(session.exec(select(Merchant.slug, Merchant.name)
                                  .order_by(Merchant.name)).all())
    query = urlencode({k: v for k, v in form.items() if v})
    merchant_note = ('<p class="note">The funnel counts messages, which belong to no '
                     'merchant: with a merchant chosen, its stages start at cards shown.</p>'
                     if filters.merchant else "")
    stages = _stages(summary, days, filters)
    body = "".join([
        _filter_form(form, shops),
        _tiles(stages, _revenue(summary, days, filters),
               None if filters.merchant else cost.cost_per_sale_usd),
        merchant_note,
        '<section><h2>Funnel</h2>', charts.funnel_chart(stages), "</section>",
        '<section><h2>Conversion over time</h2><p class="note">Paid orders per 100 '
        "messages, by day.</p>",
        charts.line_chart(_daily_conversion(days, filters), title="Conversion by day",
                          unit="%"),
        "</section>",
        _merchant_table(merchants, query),
        _placement_table(placements, query),
        _gap_table(gaps, query),
        f'<p class="note">The same numbers as JSON: <code>/api/ops/funnel?'
        f'{escape(_api_query(filters))}</code>. All events: '
        f'<a href="/ops/export/events.csv?{escape(query)}">events.csv</a>.</p>',
    ])
    return _page("Vitrine ops", body, signed_in=True)


def _stages(summary: Funnel, days: list[FunnelRow], filters: Filters) -> list[tuple[str, int]]:
    if filters.merchant:  # the merchant's own stages, from the funnel by merchant
        total = {name: sum(getattr(d, name) for d in days)
                 for name in ("recommendations", "clicks", "checkouts", "paid")}
        return [("Recommendations", total["recommendations"]), ("Clicks", total["clicks"]),
                ("Checkouts", total["checkouts"]), ("Paid", total["paid"])]
    s = summary.stages
    return [("Messages", s.messages), ("Recommendations", s.recommendations),
            ("Clicks", s.clicks), ("Checkouts", s.checkouts), ("Paid", s.paid)]


def _daily_conversion(days: list[FunnelRow], filters: Filters) -> list[tuple[str, float | None]]:
    by_day = {row.key: row for row in days}
    points: list[tuple[str, float | None]] = []
    assert filters.since is not None and filters.until is not None
    day = filters.since.date()
    while day < filters.until.date():
        row = by_day.get(day.isoformat())
        base = (row.messages if not filters.merchant else row.recommendations) if row else None
        points.append((day.isoformat(),
                       round(100 * row.paid / base, 1) if row and base else None))
        day += timedelta(days=1)
    return points


def _api_query(filters: Filters) -> str:
    values = {"from": filters.since.isoformat() if filters.since else None,
              "to": filters.until.isoformat() if filters.until else None,
              "channel": filters.channel, "market": filters.market}
    return urlencode({k: v for k, v in values.items() if v}, safe=":+")


def _money(revenue: dict[str, int]) -> str:
    return ", ".join(format_money(Money(amount, currency), "en_US")
                     for currency, amount in sorted(revenue.items())) or "—"


def _revenue(summary: Funnel, days: list[FunnelRow], filters: Filters) -> dict[str, int]:
    """The range's revenue; with a merchant chosen, that merchant's only."""
    if not filters.merchant:
        return summary.revenue
    revenue: dict[str, int] = {}
    for day in days:
        for currency, amount in day.revenue.items():
            revenue[currency] = revenue.get(currency, 0) + amount
    return revenue


def _tiles(stages: list[tuple[str, int]], revenue: dict[str, int],
           per_sale: Decimal | None) -> str:
    tiles = [(label, f"{count:,}", label.lower()) for label, count in stages]
    tiles.append(("Revenue", _money(revenue), "revenue"))
    tiles.append(("Cost per sale", f"US$ {per_sale:,.2f}" if per_sale is not None else "—",
                  "cost"))
    return '<section class="tiles">' + "".join(
        f'<div class="tile" data-tile="{escape(key)}"><span>{escape(label)}</span>'
        f"<strong>{escape(value)}</strong></div>" for label, value, key in tiles) + "</section>"


def _filter_form(form: dict, shops: list[tuple[str, str]]) -> str:
    def options(choices: list[tuple[str, str]], chosen: str, everything: str) -> str:
        return f'<option value="">{escape(everything)}</option>' + "".join(
            f'<option value="{escape(v)}"{" selected" if v == chosen else ""}>'
            f"{escape(label)}</option>" for v, label in choices)

    markets = [(code, f"{code} · {m.name}") for code, m in sorted(all_markets().items())]
    return (
        '<form class="filters" method="get" action="/ops">'
        f'<label>From <input type="date" name="from" value="{escape(form["from"])}"></label>'
        f'<label>To <input type="date" name="to" value="{escape(form["to"])}"></label>'
        f'<label>Channel <select name="channel">'
        f'{options(list(CHANNELS.items()), form["channel"], "All channels")}</select></label>'
        f'<label>Market <select name="market">'
        f'{options(markets, form["market"], "All markets")}</select></label>'
        f'<label>Merchant <select name="merchant">'
        f'{options(shops, form["merchant"], "All merchants")}</select></label>'
        '<button type="submit">Show</button></form>')


def _table(title: str, head: list[str], rows: list[list[str]], export: str,
           empty: str) -> str:
    cells = "".join("<tr>" + "".join(f"<td>{c}</td>" for c in row) + "</tr>" for row in rows)
    if not rows:
        cells = f'<tr><td colspan="{len(head)}" class="note">{escape(empty)}</td></tr>'
    return (f'<section><h2>{escape(title)} <a class="csv" href="{escape(export)}">CSV</a>'
            f'</h2><div class="scroll"><table><thead><tr>'
            + "".join(f"<th>{escape(h)}</th>" for h in head)
            + f"</tr></thead><tbody>{cells}</tbody></table></div></section>")


def _pct(value: float | None) -> str:
    return f"{value:.1%}" if value is not None else "—"


def _merchant_table(rows: list[Any], query: str) -> str:
    most = max((r.impressions for r in rows), default=0) or 1
    body = [[escape(r.merchant),
             f'{r.impressions:,}<svg class="spark" viewBox="0 0 60 8" width="60" height="8">'
             f'<rect width="{max(1, round(60 * r.impressions / most))}" height="8" '
             f'fill="{charts.BAR}"/></svg>',
             f"{r.mean_position:.2f}" if r.mean_position is not None else "—",
             f"{r.clicks:,}", _pct(r.click_rate), f"{r.checkouts:,}", f"{r.paid_orders:,}",
             escape(_money(r.revenue))] for r in rows]
    return _table("Merchants", ["Merchant", "Impressions", "Mean position", "Clicks", "CTR",
                                "Checkouts", "Paid", "Revenue"], body,
                  f"/ops/export/merchants.csv?{query}", "No cards shown in this range.")


def _placement_table(rows: list[Any], query: str) -> str:
    body = [[escape(r.placement.capitalize()), f"{r.impressions:,}",
             f"{r.mean_position:.2f}" if r.mean_position is not None else "—",
             f"{r.clicks:,}", _pct(r.click_rate), f"{r.paid_orders:,}",
             escape(_money(r.revenue))] for r in rows]
    return _table("Sponsored and organic", ["Placement", "Impressions", "Mean position",
                                            "Clicks", "CTR", "Paid", "Revenue"], body,
                  f"/ops/export/placements.csv?{query}", "")


def _gap_table(rows: list[Any], query: str) -> str:
    body = [[f"{r.requests:,}", f"{r.shoppers:,}",
             escape(r.text) if r.text else '<span class="note">(words not kept)</span>',
             escape(r.understood or "—"), escape(r.last_seen.strftime("%Y-%m-%d %H:%M"))]
            for r in rows]
    return _table("Catalog gaps: requests that found nothing",
                  ["Requests", "Shoppers", "Request", "Understood", "Last seen"], body,
                  f"/ops/export/gaps.csv?{query}", "Every request found something.")


# Exports, with the dashboard's own login.

@router.get("/export/{report}.csv")
def export(request: Request, report: str, scope: PageScope) -> Response:
    if not _allowed(request):
        return _to_login()
    filters, _ = scope
    headers = {"Content-Disposition": f'attachment; filename="vitrine-{report}.csv"'}
    engine = request.app.state.runtime.engine
    if report == "events":
        session = Session(engine)

        def lines() -> Any:
            try:
                yield from events_csv(session, filters)
            finally:
                session.close()

        return StreamingResponse(lines(), media_type="text/csv; charset=utf-8",
                                 headers=headers)
    reports: dict[str, Callable[[Session, Filters], Sequence[BaseModel]]] = {
        "merchants": merchant_visibility, "placements": sponsored_vs_organic,
        "gaps": catalog_gaps, "funnel-by-day": lambda s, f: funnel_by(s, f, "day")}
    if report not in reports:
        return Response("unknown report", status_code=404, media_type="text/plain")
    with Session(engine) as session:
        rows = reports[report](session, filters)
    return Response(rows_csv(rows), media_type="text/csv; charset=utf-8", headers=headers)


# The page around it all.

def _page(title: str, body: str, *, signed_in: bool = False, status: int = 200
          ) -> HTMLResponse:
    logout = ('<form method="post" action="/ops/logout"><button class="link">Sign out'
              "</button></form>") if signed_in else ""
    return HTMLResponse(PAGE.format(title=escape(title), body=body, logout=logout),
                        status_code=status, headers=PAGE_HEADERS)


LOGIN_FORM = """<section class="login"><h1>Vitrine ops</h1>{error}
<form method="post" action="/ops/login"><label>Ops token
<input type="password" name="token" autocomplete="current-password" required autofocus>
</label><button type="submit">Sign in</button></form></section>"""

PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{title}</title>
<style>
body {{ font: 15px/1.45 system-ui, sans-serif; margin: 0; color: #1d1d1f; background: #f6f6f7; }}
header {{ display: flex; justify-content: space-between; align-items: center;
  padding: 12px 20px; background: #fff; border-bottom: 1px solid #e4e4e7; }}
header strong {{ font-size: 17px; }}
main {{ max-width: 1100px; margin: 0 auto; padding: 16px 20px 40px; }}
section {{ background: #fff; border: 1px solid #e4e4e7; border-radius: 8px; padding: 14px 18px;
  margin: 14px 0; }}
h2 {{ font-size: 16px; margin: 0 0 10px; display: flex; justify-content: space-between; }}
.tiles {{ display: grid; grid-template-columns: repeat(auto-fit, minmax(130px, 1fr)); gap: 10px;
  background: none; border: 0; padding: 0; }}
.tile {{ background: #fff; border: 1px solid #e4e4e7; border-radius: 8px; padding: 10px 14px; }}
.tile span {{ display: block; color: #6b6b70; font-size: 13px; }}
.tile strong {{ font-size: 20px; }}
.filters {{ display: flex; flex-wrap: wrap; gap: 10px; align-items: end; }}
.filters label {{ display: flex; flex-direction: column; font-size: 13px; color: #6b6b70; }}
input, select, button {{ font: inherit; padding: 6px 8px; border: 1px solid #c8c8cc;
  border-radius: 6px; background: #fff; }}
button {{ background: #1f6f43; color: #fff; border-color: #1f6f43; cursor: pointer; }}
button.link {{ background: none; color: #1f6f43; border: 0; }}
.scroll {{ overflow-x: auto; }}
svg.chart {{ max-width: 760px; display: block; }}
table {{ border-collapse: collapse; width: 100%; font-variant-numeric: tabular-nums; }}
th, td {{ text-align: left; padding: 6px 8px; border-bottom: 1px solid #eee; white-space: nowrap; }}
td svg.spark {{ margin-left: 8px; vertical-align: middle; }}
.note {{ color: #6b6b70; font-size: 13px; }}
.error {{ color: #b00020; }}
a.csv {{ font-size: 13px; font-weight: normal; color: #1f6f43; }}
.login {{ max-width: 360px; margin: 80px auto; }}
.login form {{ display: flex; flex-direction: column; gap: 12px; }}
.login label {{ display: flex; flex-direction: column; gap: 4px; }}
</style></head>
<body><header><strong>Vitrine ops</strong>{logout}</header>
<main>{body}</main></body></html>"""
