"""`vitrine worker`: run the queued jobs and the periodic schedule until stopped."""

from __future__ import annotations

import argparse
import logging
import os
import sys
from datetime import timedelta

from core.errors import InvalidInput
from core.settings import get_settings
from vitrine.worker import (
    ALIVE_FILE,
    LEASE,
    POLL_S,
    JobWorker,
    check_alive,
    run_until_signalled,
)


def cmd_worker(args: argparse.Namespace) -> int:
    from core.logs import configure_logging
    from vitrine.jobs import schedule
    from vitrine.runtime import build_runtime

    if args.check:
        problem = check_alive()
        print(problem or "ok: the worker is running", file=sys.stderr if problem else sys.stdout)
        return 1 if problem else 0
    settings = get_settings()
    concurrency = args.concurrency or settings.worker_concurrency
    grace_s = settings.worker_grace_seconds if args.grace is None else args.grace
    if not 1 <= concurrency <= 32 or grace_s < 0 or args.lease < 1:
        raise InvalidInput("--concurrency must be 1 to 32, --grace at least 0, --lease at "
                           "least 1 second")
    configure_logging(settings.log_format)
    runtime = build_runtime(settings)
    worker = JobWorker(runtime, concurrency=concurrency, lease=timedelta(seconds=args.lease),
                       poll_s=min(POLL_S, args.lease / 3),
                       schedule=[] if args.drain else schedule(runtime))
    if run_until_signalled(worker, grace_s=grace_s, drain=args.drain,
                           alive_file=None if args.drain else ALIVE_FILE):
        return 0
    # A job still runs on one of this process's threads, with connections the runtime would
    # close under it: end the process here; the job is retried when its lease expires.
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)


def add_parsers(sub: argparse._SubParsersAction) -> None:
    worker = sub.add_parser(
        "worker", help="run background jobs (feed syncs, webhooks, reminders, ...) from the "
                       "queue, and queue the periodic ones; SIGTERM stops it gracefully")
    worker.add_argument("--concurrency", type=int,
                        help="jobs run at once (default VITRINE_WORKER_CONCURRENCY, 2)")
    worker.add_argument("--grace", type=float,
                        help="seconds a stopping worker lets jobs under way finish (default "
                             "VITRINE_WORKER_GRACE_SECONDS, 30)")
    worker.add_argument("--lease", type=float, default=LEASE.total_seconds(),
                        help="seconds a claimed job is held without a heartbeat before "
                             "another worker may take it (default %(default)g)")
    worker.add_argument("--drain", action="store_true",
                        help="no schedule: run the jobs queued and exit once none is left")
    worker.add_argument("--check", action="store_true",
                        help="exit 0 if a worker runs on this machine (or container) and all "
                             "its threads are alive, else 1: for a health check")
    worker.set_defaults(func=cmd_worker)
