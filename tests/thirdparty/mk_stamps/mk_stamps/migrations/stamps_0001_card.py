"""stamps: the stamps_card table

Revision ID: stamps_0001
Revises:
"""

import sqlalchemy as sa
from alembic import op

revision = "stamps_0001"
down_revision = None
branch_labels = ("stamps",)
depends_on = "core_0001"


def upgrade() -> None:
    op.create_table(
        "stamps_card",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("shop", sa.String(length=64), nullable=False),
        sa.Column("member_id", sa.String(length=32), nullable=False),
        sa.Column("order_id", sa.String(length=200), nullable=False),
        sa.Column("stamps", sa.Integer(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["member_id"], ["core_member.id"]),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("shop", "order_id", name="uq_stamps_card_shop_order_id"),
    )
    op.create_index("ix_stamps_card_shop_member_id", "stamps_card", ["shop", "member_id"], unique=False)


def downgrade() -> None:
    op.drop_index("ix_stamps_card_shop_member_id", table_name="stamps_card")
    op.drop_table("stamps_card")
