"""outbox rows can fail for good (with Slack's reason) and remember their chart's upload;
operator notices, told once per open problem; Slack deliveries already handled (retries dedupe)

Revision ID: 0004
Revises: 0009 (0003 when written; re-chained after main gained 0006 and 0009)
"""

import sqlalchemy as sa
from alembic import op

import db.models

revision = "0004"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("outbox") as batch:
        batch.add_column(sa.Column("failed_reason", sa.String(length=64), nullable=True))
        batch.add_column(sa.Column("file_id", sa.String(length=64), nullable=True))
    op.create_table(
        "operator_notices",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("problem", sa.String(length=200), nullable=False),
        sa.Column("open_key", sa.String(length=200), nullable=True),
        sa.Column("text", sa.Text(), nullable=False),
        sa.Column("created_at", db.models.UTCDateTime(), nullable=False),
        sa.Column("delivered_to", sa.String(length=64), nullable=True),
        sa.Column("delivered_at", db.models.UTCDateTime(), nullable=True),
        sa.Column("resolved_at", db.models.UTCDateTime(), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_operator_notices")),
        sa.UniqueConstraint("open_key", name=op.f("uq_operator_notices_open_key")),
    )
    op.create_table(
        "slack_deliveries",
        sa.Column("key", sa.String(length=200), nullable=False),
        sa.Column("received_at", db.models.UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("key", name=op.f("pk_slack_deliveries")),
    )
    op.create_index(op.f("ix_slack_deliveries_received_at"), "slack_deliveries", ["received_at"], unique=False)


def downgrade() -> None:
    op.drop_index(op.f("ix_slack_deliveries_received_at"), table_name="slack_deliveries")
    op.drop_table("slack_deliveries")
    op.drop_table("operator_notices")
    with op.batch_alter_table("outbox") as batch:
        batch.drop_column("file_id")
        batch.drop_column("failed_reason")
