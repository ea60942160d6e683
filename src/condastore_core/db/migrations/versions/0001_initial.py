"""Initial tables: namespaces, specifications, environments, builds, artifacts, logs.

Revision ID: 0001
Revises:
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "namespaces",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=64), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("deleted_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_namespaces")),
        sa.UniqueConstraint("name", name=op.f("uq_namespaces_name")),
    )
    op.create_table(
        "specifications",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("spec_hash", sa.String(length=64), nullable=False),
        sa.Column("name", sa.String(length=128), nullable=False),
        sa.Column("spec", sa.JSON(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_specifications")),
        sa.UniqueConstraint("spec_hash", name=op.f("uq_specifications_spec_hash")),
    )
    op.create_table(
        "environments",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("namespace_id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=128), nullable=False),
        sa.Column("description", sa.Text(), nullable=False),
        sa.Column("current_build_id", sa.Integer(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("deleted_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["namespace_id"],
            ["namespaces.id"],
            name=op.f("fk_environments_namespace_id_namespaces"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_environments")),
        sa.UniqueConstraint("namespace_id", "name", name=op.f("uq_environments_namespace_id")),
    )
    with op.batch_alter_table("environments", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_environments_namespace_id"), ["namespace_id"], unique=False
        )

    op.create_table(
        "builds",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("environment_id", sa.Integer(), nullable=False),
        sa.Column("specification_id", sa.Integer(), nullable=False),
        sa.Column(
            "status",
            sa.Enum(
                "QUEUED",
                "BUILDING",
                "COMPLETED",
                "FAILED",
                "CANCELED",
                name="buildstatus",
                native_enum=False,
                length=16,
            ),
            nullable=False,
        ),
        sa.Column("step", sa.String(length=64), nullable=False),
        sa.Column("platforms", sa.JSON(), nullable=False),
        sa.Column("input_lock", sa.Text(), nullable=True),
        sa.Column("lock_hash", sa.String(length=64), nullable=True),
        sa.Column("build_key", sa.String(length=32), nullable=True),
        sa.Column("size", sa.BigInteger(), nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("cancel_requested", sa.Boolean(), nullable=False),
        sa.Column("reused_build_id", sa.Integer(), nullable=True),
        sa.Column("queued_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("ended_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("deleted_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["environment_id"],
            ["environments.id"],
            name=op.f("fk_builds_environment_id_environments"),
        ),
        sa.ForeignKeyConstraint(
            ["reused_build_id"], ["builds.id"], name=op.f("fk_builds_reused_build_id_builds")
        ),
        sa.ForeignKeyConstraint(
            ["specification_id"],
            ["specifications.id"],
            name=op.f("fk_builds_specification_id_specifications"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_builds")),
    )
    with op.batch_alter_table("builds", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_builds_environment_id"), ["environment_id"], unique=False
        )
        batch_op.create_index("ix_builds_lock_hash_status", ["lock_hash", "status"], unique=False)
        batch_op.create_index(batch_op.f("ix_builds_status"), ["status"], unique=False)

    # environments.current_build_id and builds.environment_id point at each other:
    # the first constraint can only be added once both tables exist.
    with op.batch_alter_table("environments", schema=None) as batch_op:
        batch_op.create_foreign_key(
            batch_op.f("fk_environments_current_build_id_builds"),
            "builds",
            ["current_build_id"],
            ["id"],
            ondelete="SET NULL",
        )

    op.create_table(
        "artifacts",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("build_id", sa.Integer(), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("digest", sa.String(length=140), nullable=False),
        sa.Column("size", sa.BigInteger(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["build_id"], ["builds.id"], name=op.f("fk_artifacts_build_id_builds")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_artifacts")),
        sa.UniqueConstraint("build_id", "kind", name=op.f("uq_artifacts_build_id")),
    )
    with op.batch_alter_table("artifacts", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_artifacts_build_id"), ["build_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_artifacts_digest"), ["digest"], unique=False)

    op.create_table(
        "build_packages",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("build_id", sa.Integer(), nullable=False),
        sa.Column("platform", sa.String(length=32), nullable=False),
        sa.Column("name", sa.String(length=128), nullable=False),
        sa.Column("version", sa.String(length=64), nullable=False),
        sa.Column("build", sa.String(length=128), nullable=False),
        sa.Column("channel", sa.String(length=512), nullable=False),
        sa.Column("sha256", sa.String(length=64), nullable=False),
        sa.ForeignKeyConstraint(
            ["build_id"], ["builds.id"], name=op.f("fk_build_packages_build_id_builds")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_build_packages")),
        sa.UniqueConstraint(
            "build_id", "platform", "name", name=op.f("uq_build_packages_build_id")
        ),
    )
    with op.batch_alter_table("build_packages", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_build_packages_build_id"), ["build_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_build_packages_name"), ["name"], unique=False)

    op.create_table(
        "log_chunks",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("build_id", sa.Integer(), nullable=False),
        sa.Column("start", sa.BigInteger(), nullable=False),
        sa.Column("text", sa.Text(), nullable=False),
        sa.ForeignKeyConstraint(
            ["build_id"], ["builds.id"], name=op.f("fk_log_chunks_build_id_builds")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_log_chunks")),
        sa.UniqueConstraint("build_id", "start", name=op.f("uq_log_chunks_build_id")),
    )
    with op.batch_alter_table("log_chunks", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_log_chunks_build_id"), ["build_id"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("log_chunks", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_log_chunks_build_id"))

    op.drop_table("log_chunks")
    with op.batch_alter_table("build_packages", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_build_packages_name"))
        batch_op.drop_index(batch_op.f("ix_build_packages_build_id"))

    op.drop_table("build_packages")
    with op.batch_alter_table("artifacts", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_artifacts_digest"))
        batch_op.drop_index(batch_op.f("ix_artifacts_build_id"))

    op.drop_table("artifacts")
    with op.batch_alter_table("builds", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_builds_status"))
        batch_op.drop_index("ix_builds_lock_hash_status")
        batch_op.drop_index(batch_op.f("ix_builds_environment_id"))

    with op.batch_alter_table("environments", schema=None) as batch_op:
        batch_op.drop_constraint(
            batch_op.f("fk_environments_current_build_id_builds"), type_="foreignkey"
        )
    op.drop_table("builds")
    with op.batch_alter_table("environments", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_environments_namespace_id"))

    op.drop_table("environments")
    op.drop_table("specifications")
    op.drop_table("namespaces")
