"""Load: chat messages and payment webhooks against `vitrine serve --workers 2`, on SQLite and
on PostgreSQL, in one run.

    .venv/bin/python bench/load.py [--databases sqlite,postgresql] [--requests 6000]
        [--seconds 60] [--concurrency 8] [--pg-url postgresql+psycopg://.../bench_load]

For each database the bench starts the real server itself on loopback (`vitrine serve
--workers 2`, which seeds the demo catalog into the empty database through the ordinary
feed import), warms every worker up, then plays shoppers until `--requests` chat messages
were answered or `--seconds` passed, whichever comes first, and stops the server.

Shoppers play the scripted dialogues of `tests/data/dialogues/dialogues.jsonl` (pt-BR, es-AR
and en-US requests, follow-ups, refinements, "more like this", "not for me", commands), each
under a user of its own, then some press "More like this" once more, and one in ten Brazilian
shoppers buys: "Buy" -> "Confirm" -> a Pix code -> the sandbox provider's signed webhook
(`X-Vitrine-Signature: sha256=HMAC(secret, body)`), half of them delivered twice, then a
message that must carry the payment's confirmation. The per-shopper rate limit is raised
(`VITRINE_RATE_LIMIT_MESSAGES`) so it does not answer "slow down" to a bench that plays many
shoppers from one address; a shopper sends fewer than 20 messages anyway.

An error is any answer that is not 2xx, not JSON of the expected shape, or wrong for its
turn: a dialogue turn that expects cards and has none, a "Buy" with no "Confirm", a
"Confirm" with no Pix code, a webhook not `applied` (or `duplicate` the second time), a
paid shopper's next message without the confirmation.

The load generator is one asyncio process with a small HTTP/1.1 keep-alive client (no HTTP
library: it must not take the CPU it measures); the shoppers and the client are in
`bench/load_shoppers.py`. Its connections are spread evenly over the workers, each traced to
the worker that accepted it: opened all at once, they would all land on one. CPU is read
from /proc: the server's processes (the uvicorn supervisor and its workers), the generator
itself, PostgreSQL's backends serving the bench database, and the whole machine, so
"messages per server core" divides by the CPU seconds the server really used, whatever else
the shared machine ran.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from load_shoppers import ROOT, SECRET, HttpConnection, Player, load_dialogues, shoppers

LOOP_HELD = "held the event loop"  # core/turns.py's warning

DEFAULT_PG = "postgresql+psycopg://vitrine:vitrine@127.0.0.1:5432/bench_load"
TICK = os.sysconf("SC_CLK_TCK")


# -- measuring -------------------------------------------------------------------------------


def _cpu_ticks(pid: int) -> int:
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0
    return int(fields[11]) + int(fields[12])  # utime + stime


def _descendants(pid: int) -> list[int]:
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError):
                continue
            children.setdefault(ppid, []).append(int(entry.name))
    found, todo = [], [pid]
    while todo:
        p = todo.pop()
        found.append(p)
        todo += children.get(p, [])
    return found


def _machine_ticks() -> tuple[int, int]:
    """(busy, total) CPU ticks of the whole machine since boot."""
    values = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = values[3] + values[4]
    return sum(values[:8]) - idle, sum(values[:8])


class PgBackends:
    """The PostgreSQL server processes serving one database (found by pg_stat_activity)."""

    def __init__(self, url: str | None) -> None:
        self.url = url

    def pids(self) -> list[int]:
        if self.url is None:
            return []
        import psycopg

        dsn, database = _pg_dsn(self.url)
        with psycopg.connect(dsn, autocommit=True) as conn:
            return [r[0] for r in conn.execute(
                "SELECT pid FROM pg_stat_activity WHERE datname = %s AND pid <> "
                "pg_backend_pid()", (database,))]

    def totals(self) -> tuple[int, float]:
        """(sessions opened, ms spent executing statements) in the database so far, from
        pg_stat_database: it also counts connections that opened and closed meanwhile,
        whose CPU no snapshot of processes can see."""
        if self.url is None:
            return 0, 0.0
        import psycopg

        dsn, database = _pg_dsn(self.url)
        with psycopg.connect(dsn, autocommit=True) as conn:
            conn.execute("SELECT pg_stat_clear_snapshot()")
            row = conn.execute("SELECT sessions, active_time FROM pg_stat_database "
                               "WHERE datname = %s", (database,)).fetchone()
        return (int(row[0]), float(row[1])) if row else (0, 0.0)


@dataclass
class CpuSnapshot:
    wall: float
    server: dict[int, int]
    pg: dict[int, int]
    generator: float
    machine: tuple[int, int]

    @classmethod
    def take(cls, server_pid: int, pg: PgBackends) -> CpuSnapshot:
        return cls(wall=time.perf_counter(),
                   server={p: _cpu_ticks(p) for p in _descendants(server_pid)},
                   pg={p: _cpu_ticks(p) for p in pg.pids()},
                   generator=time.process_time(), machine=_machine_ticks())


def _spent(before: dict[int, int], after: dict[int, int]) -> float:
    """CPU seconds spent between two snapshots by the processes alive at the second."""
    return sum(t - before.get(p, 0) for p, t in after.items()) / TICK


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))]


# -- the server ------------------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _pg_dsn(url: str) -> tuple[str, str]:
    """A SQLAlchemy PostgreSQL URL as a libpq URL of the server's `postgres` database, and
    the database named in it."""
    plain = re.sub(r"^postgresql\+\w+://", "postgresql://", url)
    base, _, database = plain.rpartition("/")
    return f"{base}/postgres", database.split("?")[0]


def fresh_pg_database(url: str, *, create: bool = True) -> None:
    """Drop the bench's own database and create it anew (empty: the server seeds it), or
    only drop it (after the run)."""
    import psycopg

    dsn, database = _pg_dsn(url)
    if not re.fullmatch(r"bench_\w+", database):
        raise SystemExit(f"refusing to drop {database!r}: the bench's database must be "
                         "named bench_something")
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')
        if create:
            conn.execute(f'CREATE DATABASE "{database}"')


class Server:
    """`vitrine serve --workers N` on loopback, started and stopped by the bench."""

    def __init__(self, *, database_url: str, workers: int, log: Path,
                 settings: dict[str, str] | None = None) -> None:
        self.port = _free_port()
        env = {k: v for k, v in os.environ.items() if not k.startswith("VITRINE_")}
        env.update(VITRINE_DATABASE_URL=database_url, VITRINE_ENV="development",
                   VITRINE_SANDBOX_SECRET=SECRET, VITRINE_RATE_LIMIT_MESSAGES="1000000",
                   VITRINE_PUBLIC_URL=f"http://127.0.0.1:{self.port}", **(settings or {}))
        self.log = log.open("w")
        # Seeds the demo catalog into the empty database, then starts the workers.
        self.process = subprocess.Popen(
            [sys.executable, "-m", "vitrine.cli", "serve", "--workers", str(workers),
             "--host", "127.0.0.1", "--port", str(self.port)],
            cwd=ROOT, env=env, stdout=self.log, stderr=subprocess.STDOUT,
            start_new_session=True)

    async def wait_ready(self, timeout: float = 180) -> None:
        """Until /healthz answers."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise SystemExit(f"the server stopped; see {self.log.name}")
            try:
                status, _ = await HttpConnection("127.0.0.1", self.port).request(
                    "GET", "/healthz")
                if status == 200:
                    return
            except OSError:
                pass
            await asyncio.sleep(0.25)
        raise SystemExit(f"the server did not start in {timeout} s; see {self.log.name}")

    def stop(self) -> None:
        """SIGTERM, then SIGKILL if it does not stop within 20 s; its own group only."""
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(20)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait()
        self.log.close()


def worker_pids(server_pid: int) -> list[int]:
    """The processes serving requests: the API workers under uvicorn's supervisor (spawned
    processes), or the server itself with `--workers 1`."""
    return [p for p in _descendants(server_pid) if p != server_pid
            and b"spawn_main" in Path(f"/proc/{p}/cmdline").read_bytes()] or [server_pid]


def _socket_owners(pids: list[int]) -> dict[str, int]:
    """Socket inode -> the process among `pids` holding it."""
    owners = {}
    for pid in pids:
        for fd in Path(f"/proc/{pid}/fd").iterdir():
            try:
                target = os.readlink(fd)
            except OSError:
                continue
            if target.startswith("socket:["):
                owners[target[8:-1]] = pid
    return owners


def _accepted_inode(server_port: int, client_port: int) -> str | None:
    """The inode of the server's side of a loopback connection from `client_port`."""
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        if (int(fields[1].rsplit(":", 1)[1], 16) == server_port
                and int(fields[2].rsplit(":", 1)[1], 16) == client_port):
            return fields[9]
    return None


async def spread_connections(port: int, count: int,
                             pids: list[int]) -> tuple[list[HttpConnection], dict[int, int]]:
    """`count` keep-alive connections, as evenly spread over the workers `pids` as can be.

    The workers share one listening socket, and whichever is awake first accepts: 8
    connections opened at once all land on one worker, and "2 workers" would measure one.
    So connections open one at a time, each is traced to the worker that accepted it
    (/proc/net/tcp and the workers' file descriptors), and one that lands on a worker that
    has its share already is closed and tried again.

    Returns:
        The connections, and how many each worker holds.
    """
    share = -(-count // len(pids))
    held: dict[int, int] = dict.fromkeys(pids, 0)
    kept: list[HttpConnection] = []
    for _ in range(count * 20):
        if len(kept) == count:
            break
        conn = HttpConnection("127.0.0.1", port)
        await conn.request("GET", "/healthz")
        assert conn.writer is not None
        inode = _accepted_inode(port, conn.writer.get_extra_info("sockname")[1])
        owner = _socket_owners(pids).get(inode or "")
        if owner is not None and held[owner] < share:
            held[owner] += 1
            kept.append(conn)
        else:
            conn.close()
    while len(kept) < count:  # the kernel kept choosing the same worker: go on unevenly
        conn = HttpConnection("127.0.0.1", port)
        await conn.request("GET", "/healthz")
        kept.append(conn)
    return kept, held


def _start_profilers(server_pid: int, args: argparse.Namespace,
                     name: str) -> list[subprocess.Popen]:
    """With `--profile DIR`: py-spy on every API worker while the load runs, sampling only
    the threads that hold the GIL (Python's CPU, not the threads waiting for work)."""
    if not args.profile:
        return []
    spy = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
    out = Path(args.profile)
    out.mkdir(parents=True, exist_ok=True)
    return [subprocess.Popen([spy, "record", "--gil", "-r", "200", "-f", "raw", "-p", str(p),
                              "-o", str(out / f"{name}-{p}.txt")],
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            for p in worker_pids(server_pid)]


# -- one database ----------------------------------------------------------------------------


async def run_one(name: str, url: str, args: argparse.Namespace, workdir: Path) -> dict:
    """Start the server on `url`, warm it up, load it, stop it; the figures."""
    pg = PgBackends(url if url.startswith("postgresql") else None)
    if pg.url:
        fresh_pg_database(url)
    log = workdir / f"server-{name}.log"
    server = Server(database_url=url, workers=args.workers, log=log,
                    settings=dict(item.split("=", 1) for item in args.setting))
    started = time.perf_counter()
    try:
        await server.wait_ready()
        ready_s = time.perf_counter() - started
        dialogues = load_dialogues()
        # Warm-up: every worker builds each market's index and fills its caches.
        workers = worker_pids(server.process.pid)
        warm = Player(port=server.port, stream=shoppers(
            dialogues, prefix=f"warm-{name}", seed=args.seed + 1, buy_share=args.buy_share,
            more_share=args.more_share), requests=args.warmup, seconds=60,
            connections=(await spread_connections(server.port, args.concurrency, workers))[0])
        warm_tally = await warm.run()
        await asyncio.sleep(2 if pg.url else 0)  # idle backends report their statistics
        pg_before = pg.totals()
        before = CpuSnapshot.take(server.process.pid, pg)
        connections, per_worker = await spread_connections(server.port, args.concurrency,
                                                           workers)
        profilers = _start_profilers(server.process.pid, args, name)
        load = Player(port=server.port, stream=shoppers(
            dialogues, prefix=f"load-{name}", seed=args.seed, buy_share=args.buy_share,
            more_share=args.more_share), requests=args.requests, seconds=args.seconds,
            connections=connections)
        tally = await load.run()
        after = CpuSnapshot.take(server.process.pid, pg)
        for profiler in profilers:
            profiler.send_signal(signal.SIGINT)  # py-spy writes what it has and exits
            profiler.wait(60)
    finally:
        server.stop()
    # A turn that held a worker's event loop too long sent its turns to threads for a while
    # (`core/turns.py`): the figures are then partly the threads'.
    loop_back_offs = log.read_text(errors="replace").count(LOOP_HELD)
    # Every session has ended and reported by now.
    pg_after = pg.totals()
    if pg.url and not args.keep:
        fresh_pg_database(url, create=False)
    wall = after.wall - before.wall
    server_cpu = _spent(before.server, after.server)
    pg_cpu = _spent(before.pg, after.pg)
    busy = (after.machine[0] - before.machine[0]) / TICK
    total = (after.machine[1] - before.machine[1]) / TICK
    gen_cpu = after.generator - before.generator
    chats = len(tally.chat_ms)
    errors = sum(tally.errors.values())
    return {
        "database": name, "ready_s": round(ready_s, 1), "wall_s": round(wall, 2),
        "chat_messages": chats, "webhooks": len(tally.webhook_ms),
        "purchases": tally.purchases, "errors": errors, "error_kinds": tally.errors,
        "error_samples": tally.error_samples, "warmup_errors": sum(warm_tally.errors.values()),
        "chat_per_s": round(chats / wall, 1), "loop_back_offs": loop_back_offs,
        "server_cpu_s": round(server_cpu, 2), "server_cores": round(server_cpu / wall, 2),
        "connections_per_worker": sorted(per_worker.values(), reverse=True),
        "worker_cpu_s": sorted((round((after.server.get(p, 0) - before.server.get(p, 0))
                                      / TICK, 2) for p in workers), reverse=True),
        "chat_per_server_core_s": round(chats / server_cpu, 1) if server_cpu else None,
        "pg_cpu_s": round(pg_cpu, 2),
        "pg_sessions_opened": pg_after[0] - pg_before[0],
        "pg_active_s": round((pg_after[1] - pg_before[1]) / 1000, 2),
        "chat_per_core_with_pg": round(chats / (server_cpu + pg_cpu), 1)
        if server_cpu + pg_cpu else None,
        "generator_cpu_s": round(gen_cpu, 2),
        "generator_share_of_machine": round(gen_cpu / total, 3) if total else None,
        "machine_busy_share": round(busy / total, 3) if total else None,
        "other_cpu_s": round(busy - server_cpu - pg_cpu - gen_cpu, 2),
        "chat_ms": {"p50": round(percentile(tally.chat_ms, 0.50), 1),
                    "p95": round(percentile(tally.chat_ms, 0.95), 1),
                    "p99": round(percentile(tally.chat_ms, 0.99), 1),
                    "mean": round(statistics.fmean(tally.chat_ms), 1) if chats else None},
        "chat_ms_by_kind": {kind: {"n": len(ms), "p50": round(percentile(ms, 0.50), 1),
                                   "p99": round(percentile(ms, 0.99), 1)}
                            for kind, ms in sorted(tally.chat_ms_by_kind.items())},
        "webhook_ms": {"p50": round(percentile(tally.webhook_ms, 0.50), 1),
                       "p99": round(percentile(tally.webhook_ms, 0.99), 1)},
        "load_average": os.getloadavg(),
    }


def _table(results: list[dict]) -> str:
    rows = [
        ("chat messages (webhooks, paid purchases)",
         lambda r: f"{r['chat_messages']} ({r['webhooks']}, {r['purchases']})"),
        ("wall s", lambda r: r["wall_s"]),
        ("chat msgs/s", lambda r: r["chat_per_s"]),
        ("server CPU (cores busy)", lambda r: f"{r['server_cpu_s']} s ({r['server_cores']})"),
        ("workers: connections; CPU s",
         lambda r: f"{r['connections_per_worker']}; {r['worker_cpu_s']}"),
        ("chat msgs/s per server core", lambda r: r["chat_per_server_core_s"]),
        ("PostgreSQL: backends' CPU s; statements' active s; sessions opened",
         lambda r: f"{r['pg_cpu_s']}; {r['pg_active_s']}; {r['pg_sessions_opened']}"),
        ("chat msgs/s per core, server + PostgreSQL", lambda r: r["chat_per_core_with_pg"]),
        ("chat p50 / p95 / p99 ms",
         lambda r: f"{r['chat_ms']['p50']} / {r['chat_ms']['p95']} / {r['chat_ms']['p99']}"),
        ("webhook p50 / p99 ms",
         lambda r: f"{r['webhook_ms']['p50']} / {r['webhook_ms']['p99']}"),
        ("errors", lambda r: f"{r['errors']} {r['error_kinds'] or ''}".strip()),
        ("generator CPU s (share of the machine)",
         lambda r: f"{r['generator_cpu_s']} ({r['generator_share_of_machine']:.0%})"),
        ("machine busy; others' CPU s",
         lambda r: f"{r['machine_busy_share']:.0%}; {r['other_cpu_s']}"),
    ]
    lines = ["| | " + " | ".join(r["database"] for r in results) + " |",
             "|---|" + "---:|" * len(results)]
    for label, get in rows:
        lines.append(f"| {label} | " + " | ".join(str(get(r)) for r in results) + " |")
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--databases", default="sqlite,postgresql")
    parser.add_argument("--pg-url", default=DEFAULT_PG,
                        help="a PostgreSQL database of the bench's own (dropped and made anew)")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--requests", type=int, default=6000,
                        help="chat messages to send per database (the bound in count)")
    parser.add_argument("--seconds", type=float, default=60,
                        help="longest load per database (the bound in time)")
    parser.add_argument("--warmup", type=int, default=400, help="chat messages first")
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--buy-share", type=float, default=0.1)
    parser.add_argument("--more-share", type=float, default=0.3)
    parser.add_argument("--seed", type=int, default=20261201)
    parser.add_argument("--setting", action="append", default=[], metavar="VITRINE_X=VALUE",
                        help="a setting for the server (repeatable), e.g. "
                             "VITRINE_DB_POOL_SIZE=16")
    parser.add_argument("--json", help="also write the figures to this file")
    parser.add_argument("--keep", action="store_true",
                        help="keep the temporary folder and the PostgreSQL database")
    parser.add_argument("--profile", help="write py-spy profiles of the workers (collapsed "
                                          "stacks) to this folder; slows the server down")
    args = parser.parse_args()

    workdir = Path(tempfile.mkdtemp(prefix="vitrine-load-"))
    results = []
    try:
        for name in args.databases.split(","):
            url = f"sqlite:///{workdir / 'vitrine.db'}" if name == "sqlite" else args.pg_url
            print(f"{name}: starting {args.workers} workers...", file=sys.stderr)
            result = asyncio.run(run_one(name, url, args, workdir))
            print(json.dumps(result), file=sys.stderr)
            results.append(result)
    finally:
        if args.keep:
            print(f"kept {workdir}", file=sys.stderr)
        else:
            shutil.rmtree(workdir, ignore_errors=True)
    print(f"{os.cpu_count()} cores; load average at the end {os.getloadavg()}; "
          f"{args.concurrency} connections, {args.workers} workers")
    print(_table(results))
    for r in results:
        for sample in r["error_samples"]:
            print(f"{r['database']}: {sample}")
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
