"""`vitrine db ...`: bring the database's schema to this version, say where it is, check it."""

from __future__ import annotations

import argparse
import sys

from sqlalchemy.engine import Engine
from sqlalchemy.exc import OperationalError

from core import schema
from core.db import engine_url, make_engine
from core.errors import VitrineError
from core.settings import get_settings
from vitrine.runtime import create_tables, model_metadata


def _engine() -> Engine:
    """The settings' database, reached once (a failure is one line, not a traceback)."""
    url = get_settings().database_url
    engine = make_engine(url)
    try:
        engine.connect().close()
    except OperationalError as exc:
        where = engine_url(url).render_as_string(hide_password=True)
        reason = " ".join(str(exc.orig).split())  # the driver's message spans lines
        raise VitrineError(f"cannot reach the database at {where}: {reason}") from None
    return engine


def cmd_upgrade(args: argparse.Namespace) -> int:
    engine = _engine()
    try:
        create_tables(engine)
        print(schema.current(engine))
    finally:
        engine.dispose()
    return 0


def cmd_current(args: argparse.Namespace) -> int:
    engine = _engine()
    try:
        at, head = schema.current(engine), schema.head()
    finally:
        engine.dispose()
    if at is None:
        print(f"none (head is {head}; run `vitrine db upgrade`)")
    else:
        print(at if at == head else f"{at} (head is {head}; run `vitrine db upgrade`)")
    return 0


def cmd_check(args: argparse.Namespace) -> int:
    engine = _engine()
    try:
        reason = schema.check(engine, model_metadata())
        at = schema.current(engine)
    finally:
        engine.dispose()
    if reason is not None:
        print(f"vitrine: db check: {reason}", file=sys.stderr)
        return 1
    print(f"ok: at {at}, the models match")
    return 0


def add_parsers(sub: argparse._SubParsersAction) -> None:
    """Register `vitrine db ...`."""
    db = sub.add_parser("db", help="the database schema: upgrade, current, check")
    dsub = db.add_subparsers(dest="db_command", required=True)
    up = dsub.add_parser("upgrade", help="migrate the database to this version (every start "
                                         "does it too); prints the revision reached")
    up.set_defaults(func=cmd_upgrade)
    cur = dsub.add_parser("current", help="the database's schema revision")
    cur.set_defaults(func=cmd_current)
    chk = dsub.add_parser("check", help="exit non-zero, with the reason, when the database "
                                        "is behind this version or the models drifted from "
                                        "the migrations")
    chk.set_defaults(func=cmd_check)
