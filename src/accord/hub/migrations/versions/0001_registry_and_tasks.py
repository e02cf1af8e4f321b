"""Member registry, tasks and per-member assignments.

Revision ID: 0001
Revises:
"""

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "principals",
        sa.Column("id", sa.String(63), primary_key=True),
        sa.Column("role", sa.String(16), nullable=False),
        sa.Column("kind", sa.String(32), nullable=True),
        sa.Column("display_name", sa.String(200), nullable=False),
        sa.Column("verify_key", sa.String(64), nullable=False, unique=True),
        sa.Column("encryption_key", sa.String(64), nullable=False),
        sa.Column("registered_at", sa.String(40), nullable=False),
    )
    op.create_table(
        "tasks",
        sa.Column("id", sa.String(36), primary_key=True),
        sa.Column("created_by", sa.String(63), sa.ForeignKey("principals.id"), nullable=False),
        sa.Column("created_at", sa.String(40), nullable=False),
        sa.Column("analysis", sa.Text, nullable=False),
        sa.Column("analysis_sha256", sa.String(64), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
    )
    op.create_table(
        "assignments",
        sa.Column("task_id", sa.String(36), sa.ForeignKey("tasks.id"), primary_key=True),
        sa.Column("member_id", sa.String(63), sa.ForeignKey("principals.id"), primary_key=True),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("result", sa.Text, nullable=True),
        sa.Column("reason", sa.Text, nullable=True),
        sa.Column("updated_at", sa.String(40), nullable=False),
    )
    op.create_index("ix_assignments_member_status", "assignments", ["member_id", "status"])


def downgrade() -> None:
    op.drop_index("ix_assignments_member_status", table_name="assignments")
    op.drop_table("assignments")
    op.drop_table("tasks")
    op.drop_table("principals")
