"""daily rollups in the budget zone, kept fresh by triggers that mark changed days

Revision ID: 0002
Revises: 0001
"""

import sqlalchemy as sa
from alembic import op

import db.models

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

SQLITE_TRIGGERS = [
    f"""CREATE TRIGGER usage_buckets_dirty_{event.lower()}_{which} AFTER {event} ON usage_buckets BEGIN
        INSERT INTO dirty_days (day, changes) VALUES (substr({which}.bucket_start, 1, 10), 1)
        ON CONFLICT (day) DO UPDATE SET changes = changes + 1;
    END"""
    for event, which in (("INSERT", "new"), ("UPDATE", "new"), ("UPDATE", "old"), ("DELETE", "old"))
]

POSTGRES_FUNCTION = """
CREATE FUNCTION mark_dirty_days() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO dirty_days (day, changes)
    SELECT to_char(bucket_start, 'YYYY-MM-DD'), count(*) FROM changed_rows GROUP BY 1
    ON CONFLICT (day) DO UPDATE SET changes = dirty_days.changes + EXCLUDED.changes;
    RETURN NULL;
END $$"""

POSTGRES_TRIGGERS = [
    "CREATE TRIGGER usage_buckets_dirty_insert AFTER INSERT ON usage_buckets "
    "REFERENCING NEW TABLE AS changed_rows FOR EACH STATEMENT EXECUTE FUNCTION mark_dirty_days()",
    "CREATE TRIGGER usage_buckets_dirty_update_new AFTER UPDATE ON usage_buckets "
    "REFERENCING NEW TABLE AS changed_rows FOR EACH STATEMENT EXECUTE FUNCTION mark_dirty_days()",
    "CREATE TRIGGER usage_buckets_dirty_delete AFTER DELETE ON usage_buckets "
    "REFERENCING OLD TABLE AS changed_rows FOR EACH STATEMENT EXECUTE FUNCTION mark_dirty_days()",
]


def upgrade() -> None:
    op.create_table(
        "daily_usage",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("zone", sa.String(length=64), nullable=False),
        sa.Column("day", sa.Date(), nullable=False),
        sa.Column("model", sa.String(length=200), nullable=False),
        sa.Column("mode", sa.String(length=16), nullable=False),
        sa.Column("project", sa.String(length=128), nullable=False),
        sa.Column("feature", sa.String(length=128), nullable=False),
        sa.Column("api_key", sa.String(length=128), nullable=False),
        sa.Column("tags", sa.String(length=512), nullable=False),
        *[sa.Column(name, sa.BigInteger(), nullable=False) for name in (
            "input_tokens", "cached_input_tokens", "output_tokens", "requests", "uptime_minutes", "cost_nanos",
            "unpriced_tokens", "offhours_tokens", "peak_hour_tokens")],
        sa.Column("active_hours", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_daily_usage")),
    )
    op.create_index("uq_daily_usage_key", "daily_usage",
                    ["zone", "day", "model", "mode", "project", "feature", "api_key", "tags"], unique=True)
    op.create_table(
        "dirty_days",
        sa.Column("day", sa.String(length=10), nullable=False),
        sa.Column("changes", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("day", name=op.f("pk_dirty_days")),
    )
    op.create_table(
        "rollup_zones",
        sa.Column("zone", sa.String(length=64), nullable=False),
        sa.Column("built_at", db.models.UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("zone", name=op.f("pk_rollup_zones")),
    )
    if op.get_bind().dialect.name == "postgresql":
        op.execute(POSTGRES_FUNCTION)
        for statement in POSTGRES_TRIGGERS:
            op.execute(statement)
        # An update that moves a bucket to another day also dirties the day it left.
        op.execute("CREATE TRIGGER usage_buckets_dirty_update_old AFTER UPDATE ON usage_buckets "
                   "REFERENCING OLD TABLE AS changed_rows FOR EACH STATEMENT EXECUTE FUNCTION mark_dirty_days()")
    else:
        for statement in SQLITE_TRIGGERS:
            op.execute(statement)


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        for name in ("insert", "update_new", "update_old", "delete"):
            op.execute(f"DROP TRIGGER IF EXISTS usage_buckets_dirty_{name} ON usage_buckets")
        op.execute("DROP FUNCTION IF EXISTS mark_dirty_days()")
    else:
        for event, which in (("insert", "new"), ("update", "new"), ("update", "old"), ("delete", "old")):
            op.execute(f"DROP TRIGGER IF EXISTS usage_buckets_dirty_{event}_{which}")
    op.drop_table("rollup_zones")
    op.drop_table("dirty_days")
    op.drop_index("uq_daily_usage_key", table_name="daily_usage")
    op.drop_table("daily_usage")
