"""perks: first orders claimed, birthday coupons given per year, monthly coupons given per month

Revision ID: perks_0001
Revises:
"""

import sqlalchemy as sa
from alembic import op

revision = "perks_0001"
down_revision = None
branch_labels = ("perks",)
depends_on = "core_0001"


def upgrade() -> None:
    op.create_table(
        "perks_birthday_coupon",
        sa.Column("member_id", sa.String(length=32), nullable=False),
        sa.Column("year", sa.Integer(), nullable=False),
        sa.Column("shop", sa.String(length=64), nullable=False),
        sa.Column("coupon_id", sa.String(length=32), nullable=True),
        sa.Column("issued_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["member_id"], ["core_member.id"]),
        sa.PrimaryKeyConstraint("member_id", "year"),
    )
    op.create_table(
        "perks_first_order",
        sa.Column("member_id", sa.String(length=32), nullable=False),
        sa.Column("shop", sa.String(length=64), nullable=False),
        sa.Column("order_id", sa.String(length=200), nullable=False),
        sa.Column("total", sa.Integer(), nullable=False),
        sa.Column("coupon_id", sa.String(length=32), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["member_id"], ["core_member.id"]),
        sa.PrimaryKeyConstraint("member_id"),
    )
    op.create_index("ix_perks_first_order_shop_order", "perks_first_order", ["shop", "order_id"], unique=False)
    op.create_table(
        "perks_monthly_coupon",
        sa.Column("member_id", sa.String(length=32), nullable=False),
        sa.Column("month", sa.String(length=7), nullable=False),
        sa.Column("shop", sa.String(length=64), nullable=False),
        sa.Column("tier_code", sa.String(length=32), nullable=True),
        sa.Column("coupon_id", sa.String(length=32), nullable=True),
        sa.Column("issued_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["member_id"], ["core_member.id"]),
        sa.PrimaryKeyConstraint("member_id", "month"),
    )


def downgrade() -> None:
    op.drop_table("perks_monthly_coupon")
    op.drop_index("ix_perks_first_order_shop_order", table_name="perks_first_order")
    op.drop_table("perks_first_order")
    op.drop_table("perks_birthday_coupon")
