"""referral: members' codes and counters, friends who signed up with a code, rewards per referrer and month

Revision ID: referral_0001
Revises:
"""

import sqlalchemy as sa
from alembic import op

revision = "referral_0001"
down_revision = None
branch_labels = ("referral",)
depends_on = "core_0001"


def upgrade() -> None:
    op.create_table(
        "referral_code",
        sa.Column("member_id", sa.String(length=32), nullable=False),
        sa.Column("shop", sa.String(length=64), nullable=False),
        sa.Column("code", sa.String(length=16), nullable=False),
        sa.Column("invited", sa.Integer(), nullable=False),
        sa.Column("rewarded", sa.Integer(), nullable=False),
        sa.Column("bonuses", sa.Integer(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["member_id"], ["core_member.id"]),
        sa.PrimaryKeyConstraint("member_id"),
        sa.UniqueConstraint("shop", "code", name="uq_referral_code_shop_code"),
    )
    op.create_table(
        "referral_friend",
        sa.Column("friend_id", sa.String(length=32), nullable=False),
        sa.Column("shop", sa.String(length=64), nullable=False),
        sa.Column("referrer_id", sa.String(length=32), nullable=False),
        sa.Column("code", sa.String(length=16), nullable=False),
        sa.Column("status", sa.String(length=12), nullable=False),
        sa.Column("reason", sa.String(length=40), nullable=True),
        sa.Column("order_id", sa.String(length=200), nullable=True),
        sa.Column("friend_coupon_id", sa.String(length=32), nullable=True),
        sa.Column("referrer_coupon_id", sa.String(length=32), nullable=True),
        sa.Column("bonus_coupon_id", sa.String(length=32), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("rewarded_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("withdrawn_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(["friend_id"], ["core_member.id"]),
        sa.ForeignKeyConstraint(["referrer_id"], ["core_member.id"]),
        sa.PrimaryKeyConstraint("friend_id"),
    )
    op.create_index("ix_referral_friend_shop_referrer", "referral_friend", ["shop", "referrer_id"], unique=False)
    op.create_table(
        "referral_month",
        sa.Column("referrer_id", sa.String(length=32), nullable=False),
        sa.Column("month", sa.String(length=7), nullable=False),
        sa.Column("shop", sa.String(length=64), nullable=False),
        sa.Column("rewarded", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(["referrer_id"], ["core_member.id"]),
        sa.PrimaryKeyConstraint("referrer_id", "month"),
    )


def downgrade() -> None:
    op.drop_table("referral_month")
    op.drop_index("ix_referral_friend_shop_referrer", table_name="referral_friend")
    op.drop_table("referral_friend")
    op.drop_table("referral_code")
