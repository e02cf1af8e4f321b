"""Tasks disclosed as secure sums: each task's mode and combined result, and its rounds.

Revision ID: 0003
Revises: 0002
"""

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("tasks") as batch:
        batch.add_column(
            sa.Column("disclosure", sa.String(16), nullable=False, server_default="per_member")
        )
        batch.add_column(sa.Column("combined", sa.Text, nullable=True))
    op.create_table(
        "secure_rounds",
        sa.Column("round_id", sa.String(128), primary_key=True),
        sa.Column("task_id", sa.String(36), sa.ForeignKey("tasks.id"), nullable=False),
        sa.Column("seq", sa.Integer, nullable=False),
        sa.Column("members", sa.Text, nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("started_at", sa.String(40), nullable=False),
        sa.Column("ended_at", sa.String(40), nullable=True),
        sa.UniqueConstraint("task_id", "seq", name="uq_secure_rounds_task_seq"),
    )
    op.create_index("ix_secure_rounds_status", "secure_rounds", ["status"])


def downgrade() -> None:
    op.drop_index("ix_secure_rounds_status", table_name="secure_rounds")
    op.drop_table("secure_rounds")
    with op.batch_alter_table("tasks") as batch:
        batch.drop_column("combined")
        batch.drop_column("disclosure")
