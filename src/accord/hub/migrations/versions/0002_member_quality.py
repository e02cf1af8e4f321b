"""Each member's latest quality-gate status: per check a status and a percentage.

Revision ID: 0002
Revises: 0001
"""

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "member_quality",
        sa.Column("member_id", sa.String(63), sa.ForeignKey("principals.id"), primary_key=True),
        sa.Column("submission_id", sa.String(64), nullable=False),
        sa.Column("submitted_at", sa.String(40), nullable=False),
        sa.Column("decision", sa.String(32), nullable=False),
        sa.Column("status", sa.Text, nullable=False),
        sa.Column("received_at", sa.String(40), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("member_quality")
