"""prepaid balance entries; dedicated endpoints as last seen; budgets say what exceeding them does;
the budget check's figures kept for /v1/budgets/status

Revision ID: 0008
Revises: 0006
"""

import sqlalchemy as sa
from alembic import op

import db.models

revision = "0008"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "prepaid_entries",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("kind", sa.String(length=8), nullable=False),
        sa.Column("amount", sa.Numeric(precision=20, scale=2), nullable=False),
        sa.Column("effective_at", db.models.UTCDateTime(), nullable=False),
        sa.Column("created_by", sa.String(length=64), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_prepaid_entries")),
    )
    op.create_table(
        "dedicated_endpoints",
        sa.Column("id", sa.String(length=128), nullable=False),
        sa.Column("source", sa.String(length=64), nullable=False),
        sa.Column("name", sa.String(length=256), nullable=False),
        sa.Column("model", sa.String(length=200), nullable=False),
        sa.Column("hardware", sa.String(length=128), nullable=True),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("up_since", db.models.UTCDateTime(), nullable=True),
        sa.Column("last_seen", db.models.UTCDateTime(), nullable=False),
        sa.Column("stopped_by", sa.String(length=128), nullable=True),
        sa.Column("stopped_at", db.models.UTCDateTime(), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_dedicated_endpoints")),
    )
    op.create_table(
        "budget_snapshots",
        sa.Column("name", sa.String(length=64), nullable=False),
        sa.Column("period", sa.String(length=16), nullable=False),
        sa.Column("scope", sa.JSON(), nullable=False),
        sa.Column("amount", sa.Numeric(precision=20, scale=2), nullable=False),
        sa.Column("spent_nanos", sa.BigInteger(), nullable=False),
        sa.Column("forecast_nanos", sa.BigInteger(), nullable=True),
        sa.Column("low_nanos", sa.BigInteger(), nullable=True),
        sa.Column("high_nanos", sa.BigInteger(), nullable=True),
        sa.Column("on_exceed", sa.String(length=32), nullable=False),
        sa.Column("computed_at", db.models.UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("name", name=op.f("pk_budget_snapshots")),
    )
    with op.batch_alter_table("budgets") as batch:
        batch.add_column(sa.Column("on_exceed", sa.String(length=32), nullable=False, server_default="alert"))


def downgrade() -> None:
    with op.batch_alter_table("budgets") as batch:
        batch.drop_column("on_exceed")
    op.drop_table("budget_snapshots")
    op.drop_table("dedicated_endpoints")
    op.drop_table("prepaid_entries")
