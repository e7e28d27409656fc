"""Fixtures of the core tests: the job queue's databases, a SQLite file and, when
VITRINE_TEST_DATABASE_URL is set, a PostgreSQL database too (see tests/queue_databases.py)."""

from tests.queue_databases import job_engine, jobs_database_url  # noqa: F401
