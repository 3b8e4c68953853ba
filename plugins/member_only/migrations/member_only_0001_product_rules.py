"""member_only: one rule per product (members-only, minimum tier, launch, member price)

Revision ID: member_only_0001
Revises:
"""

import sqlalchemy as sa
from alembic import op

revision = "member_only_0001"
down_revision = None
branch_labels = ("member_only",)
depends_on = "core_0001"


def upgrade() -> None:
    op.create_table(
        "member_only_product_rule",
        sa.Column("shop", sa.String(length=64), nullable=False),
        sa.Column("sku", sa.String(length=200), nullable=False),
        sa.Column("member_only", sa.Boolean(), nullable=False),
        sa.Column("min_tier", sa.String(length=32), nullable=True),
        sa.Column("launch_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("member_price", sa.Integer(), nullable=True),
        sa.Column("event_id", sa.Integer(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("shop", "sku"),
    )


def downgrade() -> None:
    op.drop_table("member_only_product_rule")
