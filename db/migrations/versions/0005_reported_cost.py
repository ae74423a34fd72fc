"""usage buckets keep the cost their source reported (LiteLLM's response_cost) beside ours

Revision ID: 0005
Revises: 0009
"""

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # A plain ADD COLUMN (no batch copy): SQLite keeps the table, and with it the dirty-day triggers.
    op.add_column("usage_buckets", sa.Column("reported_cost_nanos", sa.BigInteger(), nullable=True))


def downgrade() -> None:
    op.drop_column("usage_buckets", "reported_cost_nanos")  # SQLite 3.35+ drops a column in place
