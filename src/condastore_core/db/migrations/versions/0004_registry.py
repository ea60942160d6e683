"""Registry metadata: manifests, tags, blob links and upload sessions.

Revision ID: 0004
Revises: 0003
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "registry_blobs",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("repository", sa.String(length=255), nullable=False),
        sa.Column("digest", sa.String(length=140), nullable=False),
        sa.Column("size", sa.BigInteger(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_registry_blobs")),
        sa.UniqueConstraint("repository", "digest", name=op.f("uq_registry_blobs_repository")),
    )
    with op.batch_alter_table("registry_blobs", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_registry_blobs_digest"), ["digest"], unique=False)

    op.create_table(
        "registry_manifests",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("repository", sa.String(length=255), nullable=False),
        sa.Column("digest", sa.String(length=140), nullable=False),
        sa.Column("media_type", sa.String(length=255), nullable=False),
        sa.Column("size", sa.BigInteger(), nullable=False),
        sa.Column("artifact_type", sa.String(length=255), nullable=True),
        sa.Column("subject", sa.String(length=140), nullable=True),
        sa.Column("annotations", sa.JSON(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_registry_manifests")),
        sa.UniqueConstraint("repository", "digest", name=op.f("uq_registry_manifests_repository")),
    )
    with op.batch_alter_table("registry_manifests", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_registry_manifests_repository"), ["repository"], unique=False
        )
        batch_op.create_index(
            batch_op.f("ix_registry_manifests_subject"), ["subject"], unique=False
        )

    op.create_table(
        "registry_tags",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("repository", sa.String(length=255), nullable=False),
        sa.Column("name", sa.String(length=128), nullable=False),
        sa.Column("digest", sa.String(length=140), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_registry_tags")),
        sa.UniqueConstraint("repository", "name", name=op.f("uq_registry_tags_repository")),
    )
    op.create_table(
        "registry_uploads",
        sa.Column("id", sa.String(length=64), nullable=False),
        sa.Column("repository", sa.String(length=255), nullable=False),
        sa.Column("size", sa.BigInteger(), nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_registry_uploads")),
    )


def downgrade() -> None:
    op.drop_table("registry_uploads")
    op.drop_table("registry_tags")
    with op.batch_alter_table("registry_manifests", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_registry_manifests_subject"))
        batch_op.drop_index(batch_op.f("ix_registry_manifests_repository"))

    op.drop_table("registry_manifests")
    with op.batch_alter_table("registry_blobs", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_registry_blobs_digest"))

    op.drop_table("registry_blobs")
