"""outbox rows remember a post that may have reached Slack and carry the chart's alt text;
sources remember since when they fail and when they last returned usage

Revision ID: 0003
Revises: 0002
"""

import sqlalchemy as sa
from alembic import op

import db.models

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("outbox") as batch:
        batch.add_column(sa.Column("uncertain", sa.Boolean(), nullable=False, server_default=sa.false()))
        batch.add_column(sa.Column("attachment_alt", sa.Text(), nullable=True))
    with op.batch_alter_table("source_state") as batch:
        batch.add_column(sa.Column("failing_since", db.models.UTCDateTime(), nullable=True))
        batch.add_column(sa.Column("last_data_at", db.models.UTCDateTime(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("source_state") as batch:
        batch.drop_column("last_data_at")
        batch.drop_column("failing_since")
    with op.batch_alter_table("outbox") as batch:
        batch.drop_column("attachment_alt")
        batch.drop_column("uncertain")
