"""The image layer cache, shared by every process of an installation.

Revision ID: 0006
Revises: 0005
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "image_layers",
        sa.Column("key", sa.String(length=128), nullable=False),
        sa.Column("digest", sa.String(length=140), nullable=False),
        sa.Column("diff_id", sa.String(length=140), nullable=False),
        sa.Column("size", sa.BigInteger(), nullable=False),
        sa.Column("media_type", sa.String(length=255), nullable=False),
        sa.Column("packages", sa.JSON(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("key", name=op.f("pk_image_layers")),
    )


def downgrade() -> None:
    op.drop_table("image_layers")
