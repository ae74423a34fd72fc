"""sources keep the last thing a pull had to say (broken batch lines skipped, a lower-bound
replica count) and when

Revision ID: 0006
Revises: 0003
"""

import sqlalchemy as sa
from alembic import op

import db.models

revision = "0006"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("source_state") as batch:
        batch.add_column(sa.Column("last_note", sa.Text(), nullable=True))
        batch.add_column(sa.Column("last_note_at", db.models.UTCDateTime(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("source_state") as batch:
        batch.drop_column("last_note_at")
        batch.drop_column("last_note")
