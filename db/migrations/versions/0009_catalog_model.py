"""usage buckets remember the catalog model their name resolved to (NULL: none matched), so
short or provider-style names count under the model budgets and quotes mean

Revision ID: 0009
Revises: 0006
"""

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # A plain ADD COLUMN (no batch copy of the table): SQLite keeps the rollup triggers on it.
    op.add_column("usage_buckets", sa.Column("catalog_model", sa.String(length=200), nullable=True))


def downgrade() -> None:
    op.drop_column("usage_buckets", "catalog_model")
