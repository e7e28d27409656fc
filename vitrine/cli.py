"""The `vitrine` command: serve, chat, recommend, merchants, memory, reminders, telegram,
notifications, sandbox."""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from core.errors import VitrineError
from core.markets import get_market
from core.settings import get_settings
from vitrine.cli_db import add_parsers as add_db_parsers
from vitrine.cli_merchants import add_parsers as add_merchant_parsers
from vitrine.cli_worker import add_parsers as add_worker_parsers
from vitrine.runtime import Runtime, close_all

# How long a stopping server lets requests under way finish.
GRACEFUL_SHUTDOWN_S = 30
# How long an API process may take to start before its supervisor restarts it.
WORKER_START_S = 60


def _runtime() -> Runtime:
    from vitrine.runtime import build_runtime

    return build_runtime()


def prepare_serve(*, host: str, port: int, demo: bool) -> Runtime:
    """The runtime `serve` runs: demo merchants seeded into an empty database if asked."""
    from vitrine.runtime import build_runtime, has_merchants, seed_demo

    settings = get_settings()
    if "public_url" not in settings.model_fields_set:
        # Links to media served by this process must point at where it listens.
        settings = settings.model_copy(update={"public_url": f"http://{host}:{port}"})
    runtime = build_runtime(settings)
    if demo and not has_merchants(runtime.engine):
        for merchant, report in seed_demo(runtime):
            print(f"demo merchant {merchant.slug} ({merchant.market}): "
                  f"{report.imported} products", file=sys.stderr)
    return runtime


def cmd_serve(args: argparse.Namespace) -> int:
    import uvicorn

    from core.logs import configure_logging
    from vitrine import serving
    from vitrine.app import create_app

    settings = get_settings()
    configure_logging(settings.log_format)
    workers = args.workers or settings.api_workers
    runtime = prepare_serve(host=args.host, port=args.port, demo=not args.no_demo)
    print(f"Vitrine on http://{args.host}:{args.port}  (chat API: POST /api/chat)",
          file=sys.stderr)
    # No log config of uvicorn's own: its loggers propagate to the root handler set above,
    # so its access and error lines come out in the same format, with the request id.
    # On SIGTERM uvicorn stops accepting, lets requests under way finish (a webhook is
    # answered only after its effect is committed), then the lifespan closes the runtime.
    common = {"host": args.host, "port": args.port, "log_level": "info", "log_config": None,
              "http": serving.PROTOCOL,
              "timeout_graceful_shutdown": GRACEFUL_SHUTDOWN_S}
    if workers == 1:
        app = create_app(runtime, channel_workers=settings.serve_runs_jobs)
        serving.settle_heap()
        uvicorn.run(app, **common)
        return 0
    # Several processes: each builds its own runtime (connections are not shared across a
    # fork); background jobs are left to `vitrine worker`, so none runs twice.
    runtime.close()
    os.environ.setdefault("VITRINE_PUBLIC_URL", runtime.settings.public_url)
    print(f"{workers} API processes; background jobs run in `vitrine worker`",
          file=sys.stderr)
    # uvicorn restarts a worker that has not answered its supervisor within the health-check
    # timeout (5 s by default); importing Vitrine and building a runtime on a busy machine
    # takes longer than that, and the workers would be restarted in a loop.
    uvicorn.run("vitrine.app:create_worker_app", factory=True, workers=workers,
                timeout_worker_healthcheck=WORKER_START_S, **common)
    return 0


def cmd_recommend(args: argparse.Namespace) -> int:
    market = get_market(args.market)
    runtime = _runtime()
    user_key = f"cli:{args.user}" if args.user else None
    if args.batch:
        try:
            lines = Path(args.batch).read_text("utf-8").splitlines()
        except (OSError, UnicodeDecodeError) as exc:
            raise VitrineError(f"cannot read {args.batch}: {exc}") from None
        queries = [line.strip() for line in lines if line.strip()]
    elif args.text is not None:
        queries = [args.text]
    else:
        raise VitrineError("give a request text or --batch FILE")
    for query in queries:
        rec = runtime.assistant.recommend(query, market=market, user_key=user_key,
                                          limit=args.limit)
        if args.json:
            print(json.dumps(rec.as_dict(), ensure_ascii=False), flush=True)
        else:
            for note in rec.notes:
                print(note)
            print(rec.reply)
            for card in rec.cards:
                print(f"  {card.position}. {card.title} — {card.price_text} ({card.merchant})")
                print(f"     {card.reason}")
    return 0


def cmd_sandbox_pay(args: argparse.Namespace) -> int:
    import httpx

    from checkout.webhooks import sandbox_event

    settings = get_settings()
    body, headers = sandbox_event(secret=settings.sandbox_secret, txid=args.txid,
                                  status=args.status, event_id=args.event_id)
    url = (args.url or settings.public_url).rstrip("/") + "/api/payments/sandbox/webhook"
    try:
        response = httpx.post(url, content=body, timeout=10.0, headers=headers)
    except httpx.HTTPError as exc:
        raise VitrineError(f"cannot reach {url}: {exc}") from None
    print(f"{response.status_code} {response.text}")
    return 0 if response.is_success else 1


def pay_latest_order(runtime: Runtime, user_key: str) -> str:
    """Play the sandbox provider: a signed webhook for the shopper's latest unpaid order,
    sent through the real HTTP route in process."""
    import anyio
    import httpx
    from sqlmodel import Session, col, select

    from checkout.models import Order, OrderStatus
    from checkout.webhooks import sandbox_event
    from vitrine.app import create_app

    with Session(runtime.engine) as session:
        order = session.exec(
            select(Order).where(Order.user_key == user_key,
                                Order.status == OrderStatus.AWAITING_PAYMENT)
            .order_by(col(Order.created_at).desc())
        ).first()
    if order is None or not order.txid:
        return "(no order is awaiting payment)"
    body, headers = sandbox_event(secret=runtime.settings.sandbox_secret, txid=order.txid,
                                  status="paid")
    transport = httpx.ASGITransport(app=create_app(runtime))

    async def send() -> httpx.Response:
        async with httpx.AsyncClient(transport=transport, base_url="http://vitrine") as client:
            return await client.post("/api/payments/sandbox/webhook", content=body,
                                     headers=headers)

    response = anyio.run(send)
    return f"(sandbox provider: webhook for {order.txid} -> {response.status_code})"


def cmd_eval(args: argparse.Namespace) -> int:
    import tempfile

    from catalog.evaluation import evaluate, load_judgments
    from catalog.merchants import add_merchant_from_feed
    from core.settings import Settings
    from vitrine.runtime import build_runtime

    if sum(bool(x) for x in (args.gifts, args.dialogues,
                             args.feed or args.market or args.judgments)) > 1:
        raise VitrineError("give one of --gifts FILE, --dialogues FILE or "
                           "--feed/--market/--judgments")
    if args.gifts:
        return eval_gifts(Path(args.gifts), as_json=args.json)
    if args.dialogues:
        from vitrine.dialogues import run_file

        report = run_file(Path(args.dialogues))
        print(json.dumps(report.as_dict(), ensure_ascii=False) if args.json
              else report.as_text(verbose=args.verbose))
        return 0
    if not (args.feed and args.market and args.judgments):
        raise VitrineError("give --gifts FILE, --dialogues FILE, or --feed FILE --market M "
                           "--judgments FILE")
    market = get_market(args.market)
    judgments = load_judgments(Path(args.judgments))
    with tempfile.TemporaryDirectory(prefix="vitrine-eval-") as tmp:
        # A throwaway database: evaluation never touches the real catalog.
        runtime = build_runtime(Settings(env="test", database_url=f"sqlite:///{tmp}/eval.db"))
        add_merchant_from_feed(engine=runtime.engine, name="Evaluated", market=market.code,
                               feed=Path(args.feed), base_url=args.base_url)
        depth = max(args.k, 100)  # deep lists: nDCG counts judged results only
        runtime.assistant.recommend("warm up", market=market, limit=depth)
        result = evaluate(lambda q: [c.product_id for c in runtime.assistant.recommend(
            q, market=market, limit=depth).cards], judgments, k=args.k)
        runtime.close()
    print(json.dumps(result.as_dict()))
    return 0


def eval_gifts(path: Path, *, as_json: bool) -> int:
    """Run the multilingual gift set on the demo catalog; nonzero if a hard rule broke."""
    import tempfile

    from bot.evaluation import load_gift_set, run_gift_set
    from core.settings import Settings
    from vitrine.runtime import build_runtime, seed_demo

    requests = load_gift_set(path)
    with tempfile.TemporaryDirectory(prefix="vitrine-gifts-") as tmp:
        # A throwaway database with only the demo merchants: the labels are about them.
        runtime = build_runtime(Settings(env="test", database_url=f"sqlite:///{tmp}/gifts.db"))
        try:
            seed_demo(runtime)
            report = run_gift_set(runtime.assistant, requests)
        finally:
            runtime.close()
    print(json.dumps(report.as_dict(), ensure_ascii=False) if as_json else report.as_text())
    return 1 if report.violations else 0


def cmd_chat(args: argparse.Namespace) -> int:
    from bot.channels.terminal import run_terminal_chat

    runtime = _runtime()
    return run_terminal_chat(runtime.assistant, user=args.user, market=args.market,
                             locale=args.locale,
                             pay=lambda user_key: pay_latest_order(runtime, user_key))


def cmd_memory_purge(args: argparse.Namespace) -> int:
    from bot import erasure
    from core.db import session_scope

    runtime = _runtime()
    days = args.days if args.days is not None else runtime.settings.memory_retention_days
    if not 1 <= days <= 36500:
        raise VitrineError("--days must be between 1 and 36500")
    with session_scope(runtime.engine) as session:
        deleted = erasure.purge(session=session, retention_days=days)
    print(json.dumps({"retention_days": days, "deleted": deleted}))
    return 0


def cmd_reminders_run(args: argparse.Namespace) -> int:
    from datetime import date

    from bot.reminders import run_reminders

    try:
        today = date.fromisoformat(args.today) if args.today else None
    except ValueError:
        raise VitrineError(f"--today must be a date like 2026-03-01, not {args.today!r}") \
            from None
    if not 0 <= args.days <= 366:
        raise VitrineError("--days must be between 0 and 366")
    runtime = _runtime()
    report = run_reminders(runtime.assistant, today=today, window_days=args.days)
    print(json.dumps(report.as_dict()))
    return 0


def cmd_orders_deliver(args: argparse.Namespace) -> int:
    import httpx

    from checkout.merchant_notices import deliver_due

    runtime = _runtime()
    with httpx.Client(follow_redirects=False) as client:
        counts = deliver_due(engine=runtime.engine, client=client)
    print(json.dumps(counts))
    return 0


def cmd_payments_sweep(args: argparse.Namespace) -> int:
    from checkout.sweep import sweep

    runtime = _runtime()
    print(json.dumps(sweep(engine=runtime.engine, rails=runtime.rails)))
    return 0


def cmd_telegram_poll(args: argparse.Namespace) -> int:
    from bot.channels.telegram import TelegramPolling

    runtime = prepare_serve(host="127.0.0.1", port=8000, demo=not args.no_demo)
    channel = runtime.telegram_channel()
    if channel is None:
        raise VitrineError("set VITRINE_TELEGRAM_TOKEN to the bot's token")
    if runtime.settings.telegram_mode != "polling":
        # Polling deletes the webhook: never by accident on a deployment that uses one.
        raise VitrineError("set VITRINE_TELEGRAM_MODE=polling to poll (this deletes the "
                           "bot's webhook)")
    polling = TelegramPolling(channel)
    print("polling Telegram for updates (Ctrl-C stops)", file=sys.stderr)
    try:
        runtime.call_live(polling.run)
    except KeyboardInterrupt:
        runtime.call_live(polling.stop)
    return 0


def cmd_telegram_webhook(args: argparse.Namespace) -> int:
    import functools

    from aiogram.exceptions import TelegramAPIError

    from bot.channels.telegram import publish_commands, register_webhook

    runtime = _runtime()
    bot = runtime.telegram
    if bot is None:
        raise VitrineError("set VITRINE_TELEGRAM_TOKEN to the bot's token")
    try:
        if args.delete:
            runtime.call_live(bot.delete_webhook)
            print(json.dumps({"webhook": None}))
            return 0
        if not args.info:
            settings = runtime.settings
            runtime.call_live(functools.partial(
                register_webhook, bot, public_url=settings.public_url,
                secret=settings.telegram_webhook_secret))
            runtime.call_live(publish_commands, bot)
        info = runtime.call_live(bot.get_webhook_info)
    except TelegramAPIError as exc:
        raise VitrineError(f"Telegram refused: {exc.message}") from None
    print(json.dumps({"webhook": info.url or None,
                      "pending_updates": info.pending_update_count,
                      "last_error": info.last_error_message}, ensure_ascii=False))
    return 0


def cmd_notifications_push(args: argparse.Namespace) -> int:
    from bot.channels.push import push_pending

    runtime = _runtime()
    channels = runtime.push_channels()
    if not channels:
        raise VitrineError("no channel to push to: configure Telegram or WhatsApp")
    report = push_pending(runtime.engine, runtime.assistant, channels)
    print(json.dumps(report.as_dict()))
    return 0


def cmd_ops_rollup(args: argparse.Namespace) -> int:
    from ops.tally import roll_up

    runtime = _runtime()
    print(json.dumps({"days_rolled_up": roll_up(runtime.engine)}))
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="vitrine", description="Conversational commerce.")
    sub = parser.add_subparsers(dest="command", required=True)

    serve = sub.add_parser("serve", help="run the HTTP API (seeds demo merchants if empty)")
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=8000)
    serve.add_argument("--no-demo", action="store_true", help="do not seed demo merchants")
    serve.add_argument("--workers", type=int, default=None,
                       help="API processes (default VITRINE_API_WORKERS, 1); with more than "
                            "one, run the background jobs with `vitrine worker`")
    serve.set_defaults(func=cmd_serve)

    chat = sub.add_parser("chat", help="a conversation in the terminal")
    chat.add_argument("--user", default="me")
    chat.add_argument("--market", default=None)
    chat.add_argument("--locale", default=None)
    chat.set_defaults(func=cmd_chat)

    rec = sub.add_parser("recommend", help="rank cards for a request")
    rec.add_argument("text", nargs="?")
    rec.add_argument("--batch", help="a file with one request per line")
    rec.add_argument("--market", required=True)
    rec.add_argument("--user")
    rec.add_argument("--limit", type=int, default=3)
    rec.add_argument("--json", action="store_true")
    rec.set_defaults(func=cmd_recommend)

    add_merchant_parsers(sub)
    add_db_parsers(sub)
    add_worker_parsers(sub)

    ev = sub.add_parser("eval", help="precision@3 and nDCG@k of a feed against judgments, "
                                     "or of the demo catalog against a gift set or dialogues")
    ev.add_argument("--feed")
    ev.add_argument("--market")
    ev.add_argument("--judgments", help="CSV with query,product_id,rating")
    ev.add_argument("--k", type=int, default=10)
    ev.add_argument("--base-url", help="resolve site-relative links in the feed against it")
    ev.add_argument("--gifts", help="a labelled gift set (JSONL), run on the demo catalog")
    ev.add_argument("--dialogues", help="scripted multi-turn dialogues (JSONL), played "
                                        "through the chat API on the demo catalog")
    ev.add_argument("--verbose", action="store_true",
                    help="with --dialogues: every failure and its transcript")
    ev.add_argument("--json", action="store_true", help="the gift or dialogue report as JSON")
    ev.set_defaults(func=cmd_eval)

    mem = sub.add_parser("memory", help="shoppers' memory: retention")
    msub = mem.add_subparsers(dest="memory_command", required=True)
    purge = msub.add_parser("purge", help="delete memory older than the retention period "
                                          "(VITRINE_MEMORY_RETENTION_DAYS, default 365)")
    purge.add_argument("--days", type=int, help="override the retention period")
    purge.set_defaults(func=cmd_memory_purge)

    rem = sub.add_parser("reminders", help="proactive gift reminders")
    rsub = rem.add_subparsers(dest="reminders_command", required=True)
    run_rem = rsub.add_parser("run", help="queue the reminders due (run daily from a "
                                          "scheduler); prints what was sent and skipped")
    run_rem.add_argument("--days", type=int, default=14,
                         help="how many days ahead an occasion is near (default 14)")
    run_rem.add_argument("--today", help="the date to run for (default: today, UTC)")
    run_rem.set_defaults(func=cmd_reminders_run)

    orders = sub.add_parser("orders", help="merchants' orders")
    osub = orders.add_subparsers(dest="orders_command", required=True)
    deliver = osub.add_parser("deliver", help="post due order news to merchants' webhooks "
                                              "(run every minute from a scheduler)")
    deliver.set_defaults(func=cmd_orders_deliver)

    payments = sub.add_parser("payments", help="payments awaiting their provider")
    psub = payments.add_subparsers(dest="payments_command", required=True)
    sweep = psub.add_parser("sweep", help="ask providers about overdue payments and expire "
                                          "those that ran out (run every few minutes)")
    sweep.set_defaults(func=cmd_payments_sweep)

    tg = sub.add_parser("telegram", help="the Telegram channel")
    tsub = tg.add_subparsers(dest="telegram_command", required=True)
    poll = tsub.add_parser("poll", help="answer the bot's chats by long polling (development)")
    poll.add_argument("--no-demo", action="store_true", help="do not seed demo merchants")
    poll.set_defaults(func=cmd_telegram_poll)
    hook = tsub.add_parser("webhook", help="register the bot's webhook at VITRINE_PUBLIC_URL")
    what = hook.add_mutually_exclusive_group()
    what.add_argument("--info", action="store_true", help="only show what Telegram has")
    what.add_argument("--delete", action="store_true", help="remove the webhook")
    hook.set_defaults(func=cmd_telegram_webhook)

    ops = sub.add_parser("ops", help="the conversion log")
    osub = ops.add_subparsers(dest="ops_command", required=True)
    rollup = osub.add_parser("rollup", help="roll up the closed days for the reports "
                                            "(serve does it hourly)")
    rollup.set_defaults(func=cmd_ops_rollup)

    notes = sub.add_parser("notifications", help="queued messages for shoppers")
    nsub = notes.add_subparsers(dest="notifications_command", required=True)
    push = nsub.add_parser("push", help="push queued messages to Telegram and WhatsApp once")
    push.set_defaults(func=cmd_notifications_push)

    sandbox = sub.add_parser("sandbox", help="the development payment provider")
    ssub = sandbox.add_subparsers(dest="sandbox_command", required=True)
    pay = ssub.add_parser("pay", help="send a signed payment webhook to a running server")
    pay.add_argument("txid")
    pay.add_argument("--status", choices=("paid", "failed"), default="paid")
    pay.add_argument("--event-id")
    pay.add_argument("--url", help="server base URL (default VITRINE_PUBLIC_URL)")
    pay.set_defaults(func=cmd_sandbox_pay)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if getattr(args, "limit", 1) is not None and getattr(args, "limit", 1) < 1:
        print("vitrine: error: --limit must be at least 1", file=sys.stderr)
        return 2
    try:
        return args.func(args)
    except VitrineError as exc:
        print(f"vitrine: error: {exc.reason}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        # The reader went away (`vitrine recommend ... | head`): not an error of ours.
        # Point stdout at nothing so the interpreter's final flush cannot fail again.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    finally:
        close_all()


if __name__ == "__main__":
    sys.exit(main())
