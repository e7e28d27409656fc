"""Vitrine's Alembic migrations: `env.py`, the revision template and `versions/`.

Run them with `vitrine db upgrade` (or any start of Vitrine, which upgrades first); write a new
one with `alembic revision --autogenerate` (see docs/production.md, "Database migrations").
"""
