"""Index the conversion events that kept a shopper's words, by shopper.

A shopper's /forget erases the words they wrote from the conversion log (`bot.erasure`):
`UPDATE conversionevent SET text = NULL WHERE user_hash IN (...) AND text IS NOT NULL`.
Without an index that read the whole event table, the largest there is, inside the
shopper's turn. The index holds only rows that kept their text (none unless the deployment
sets VITRINE_OPS_STORE_TEXT), so event writes do not pay for it.

Building it reads the event table once. On PostgreSQL, event writes wait meanwhile
(`CREATE INDEX` holds a SHARE lock): see docs/production.md, "Database migrations".

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-30
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision: str | None = "0001"
branch_labels: str | None = None
depends_on: str | None = None

_KEPT_TEXT = sa.text("text IS NOT NULL")


def upgrade() -> None:
    """Add ix_conversionevent_erasable."""
    op.create_index("ix_conversionevent_erasable", "conversionevent", ["user_hash"],
                    sqlite_where=_KEPT_TEXT, postgresql_where=_KEPT_TEXT)


def downgrade() -> None:
    """Drop ix_conversionevent_erasable."""
    op.drop_index("ix_conversionevent_erasable", table_name="conversionevent")
