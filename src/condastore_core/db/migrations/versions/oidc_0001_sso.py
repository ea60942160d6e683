"""Single sign-on: identities at OpenID providers, and logins in progress.

Revision ID: oidc_0001_sso
Revises: h1_artifact_errors
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "oidc_0001_sso"
down_revision = "h1_artifact_errors"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "sso_identities",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("issuer", sa.String(512), nullable=False),
        sa.Column("subject", sa.String(255), nullable=False),
        sa.Column("user_id", sa.Integer(), sa.ForeignKey("users.id"), nullable=False),
        sa.Column("groups", sa.JSON(), nullable=False),
        sa.Column("last_login_at", sa.DateTime(timezone=True), nullable=False),
        sa.UniqueConstraint("issuer", "subject"),
    )
    op.create_index("ix_sso_identities_user_id", "sso_identities", ["user_id"])
    op.create_table(
        "sso_logins",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("handle_hash", sa.String(64), nullable=False, unique=True),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("nonce", sa.String(128), nullable=True),
        sa.Column("code_verifier", sa.String(128), nullable=True),
        sa.Column("next_path", sa.String(2048), nullable=True),
        sa.Column("client_redirect", sa.String(256), nullable=True),
        sa.Column("client_challenge", sa.String(128), nullable=True),
        sa.Column("client_state", sa.String(128), nullable=True),
        sa.Column("device_code", sa.Text(), nullable=True),
        sa.Column("interval", sa.Integer(), nullable=True),
        sa.Column("user_name", sa.String(64), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_index("ix_sso_logins_expires_at", "sso_logins", ["expires_at"])


def downgrade() -> None:
    op.drop_index("ix_sso_logins_expires_at", "sso_logins")
    op.drop_table("sso_logins")
    op.drop_index("ix_sso_identities_user_id", "sso_identities")
    op.drop_table("sso_identities")
