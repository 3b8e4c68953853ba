"""tiering: members' standing, counted orders, tier history

Revision ID: tiering_0001
Revises:
"""

import sqlalchemy as sa
from alembic import op

revision = "tiering_0001"
down_revision = None
branch_labels = ("tiering",)
depends_on = "core_0001"


def upgrade() -> None:
    op.create_table(
        "tiering_member",
        sa.Column("member_id", sa.String(length=32), nullable=False),
        sa.Column("shop", sa.String(length=64), nullable=False),
        sa.Column("tier_code", sa.String(length=32), nullable=False),
        sa.Column("spend", sa.Integer(), nullable=False),
        sa.Column("orders", sa.Integer(), nullable=False),
        sa.Column("override_code", sa.String(length=32), nullable=True),
        sa.Column("override_until", sa.DateTime(timezone=True), nullable=True),
        sa.Column("override_reason", sa.String(length=500), nullable=True),
        sa.Column("grace_since", sa.DateTime(timezone=True), nullable=True),
        sa.Column("refund_pending", sa.Boolean(), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["member_id"], ["core_member.id"]),
        sa.PrimaryKeyConstraint("member_id"),
    )
    op.create_index("ix_tiering_member_shop_tier", "tiering_member", ["shop", "tier_code"], unique=False)
    op.create_table(
        "tiering_order",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("shop", sa.String(length=64), nullable=False),
        sa.Column("member_id", sa.String(length=32), nullable=False),
        sa.Column("order_id", sa.String(length=200), nullable=False),
        sa.Column("total", sa.Integer(), nullable=False),
        sa.Column("refunded", sa.Integer(), nullable=False),
        sa.Column("paid_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["member_id"], ["core_member.id"]),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("shop", "order_id", name="uq_tiering_order_shop_order_id"),
    )
    op.create_index("ix_tiering_order_shop_member_paid", "tiering_order", ["shop", "member_id", "paid_at"],
                    unique=False)
    op.create_table(
        "tiering_history",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("shop", sa.String(length=64), nullable=False),
        sa.Column("member_id", sa.String(length=32), nullable=False),
        sa.Column("from_code", sa.String(length=32), nullable=True),
        sa.Column("to_code", sa.String(length=32), nullable=False),
        sa.Column("reason", sa.String(length=20), nullable=False),
        sa.Column("reference", sa.String(length=200), nullable=True),
        sa.Column("note", sa.String(length=500), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["member_id"], ["core_member.id"]),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_tiering_history_shop_member", "tiering_history", ["shop", "member_id", "id"],
                    unique=False)


def downgrade() -> None:
    op.drop_index("ix_tiering_history_shop_member", table_name="tiering_history")
    op.drop_table("tiering_history")
    op.drop_index("ix_tiering_order_shop_member_paid", table_name="tiering_order")
    op.drop_table("tiering_order")
    op.drop_index("ix_tiering_member_shop_tier", table_name="tiering_member")
    op.drop_table("tiering_member")
