"""Mark queued messages a push is sending, so a push that dies loses none.

`notification.sending_until`: set with `delivered_at` when a push takes a shopper's
messages, cleared once the channel took them. A process killed in between (SIGKILL, a lost
machine) leaves it set, and past it the messages are pending again
(`core.outbox.requeue_abandoned`). The partial index holds only those rows, which every push
run looks for.

Adding a nullable column rewrites no row on either database; the index starts empty.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-30
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision: str | None = "0002"
branch_labels: str | None = None
depends_on: str | None = None

_SENDING = sa.text("sending_until IS NOT NULL")


def upgrade() -> None:
    """Add notification.sending_until and ix_notification_sending."""
    with op.batch_alter_table("notification") as batch_op:
        batch_op.add_column(sa.Column("sending_until", sa.DateTime(timezone=True),
                                      nullable=True))
    op.create_index("ix_notification_sending", "notification", ["sending_until"],
                    sqlite_where=_SENDING, postgresql_where=_SENDING)


def downgrade() -> None:
    """Drop them."""
    op.drop_index("ix_notification_sending", table_name="notification")
    with op.batch_alter_table("notification") as batch_op:
        batch_op.drop_column("sending_until")
