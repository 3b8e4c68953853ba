"""flash_sale: sales, reservations, and per-member counters

Revision ID: flash_sale_0001
Revises:
"""

import sqlalchemy as sa
from alembic import op

revision = "flash_sale_0001"
down_revision = None
branch_labels = ("flash_sale",)
depends_on = "core_0001"


def upgrade() -> None:
    op.create_table(
        "flash_sale_sale",
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("shop", sa.String(length=64), nullable=False),
        sa.Column("sku", sa.String(length=200), nullable=False),
        sa.Column("title", sa.String(length=200), nullable=False),
        sa.Column("price", sa.Integer(), nullable=False),
        sa.Column("starts_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("ends_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("stock", sa.Integer(), nullable=False),
        sa.Column("held", sa.Integer(), nullable=False),
        sa.Column("sold", sa.Integer(), nullable=False),
        sa.Column("per_member_limit", sa.Integer(), nullable=False),
        sa.Column("members_only", sa.Boolean(), nullable=False),
        sa.Column("min_tier", sa.String(length=32), nullable=True),
        sa.Column("cancelled_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_flash_sale_sale_shop_starts", "flash_sale_sale", ["shop", "starts_at"], unique=False)
    op.create_table(
        "flash_sale_member",
        sa.Column("sale_id", sa.String(length=32), nullable=False),
        sa.Column("member_id", sa.String(length=32), nullable=False),
        sa.Column("shop", sa.String(length=64), nullable=False),
        sa.Column("held", sa.Integer(), nullable=False),
        sa.Column("bought", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(["member_id"], ["core_member.id"]),
        sa.ForeignKeyConstraint(["sale_id"], ["flash_sale_sale.id"]),
        sa.PrimaryKeyConstraint("sale_id", "member_id"),
    )
    op.create_table(
        "flash_sale_reservation",
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("shop", sa.String(length=64), nullable=False),
        sa.Column("sale_id", sa.String(length=32), nullable=False),
        sa.Column("member_id", sa.String(length=32), nullable=False),
        sa.Column("quantity", sa.Integer(), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("checkout_id", sa.String(length=64), nullable=True),
        sa.Column("order_id", sa.String(length=200), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["member_id"], ["core_member.id"]),
        sa.ForeignKeyConstraint(["sale_id"], ["flash_sale_sale.id"]),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_flash_sale_reservation_due", "flash_sale_reservation", ["shop", "status", "expires_at"],
                    unique=False)
    op.create_index("ix_flash_sale_reservation_sale", "flash_sale_reservation", ["sale_id", "status"], unique=False)
    op.create_index("ix_flash_sale_reservation_checkout", "flash_sale_reservation", ["checkout_id"], unique=False)


def downgrade() -> None:
    op.drop_index("ix_flash_sale_reservation_checkout", table_name="flash_sale_reservation")
    op.drop_index("ix_flash_sale_reservation_sale", table_name="flash_sale_reservation")
    op.drop_index("ix_flash_sale_reservation_due", table_name="flash_sale_reservation")
    op.drop_table("flash_sale_reservation")
    op.drop_table("flash_sale_member")
    op.drop_index("ix_flash_sale_sale_shop_starts", table_name="flash_sale_sale")
    op.drop_table("flash_sale_sale")
