"""core checkout: a member's held checkout (quote, cart, expiry, the order that completed it)

Revision ID: core_0002
Revises: core_0001
"""
from alembic import op
import sqlalchemy as sa


revision = 'core_0002'
down_revision = 'core_0001'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('core_checkout',
    sa.Column('id', sa.String(length=64), nullable=False),
    sa.Column('shop', sa.String(length=64), nullable=False),
    sa.Column('member_id', sa.String(length=32), nullable=False),
    sa.Column('status', sa.String(length=12), nullable=False),
    sa.Column('cart', sa.JSON(), nullable=False),
    sa.Column('quote', sa.JSON(), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('expires_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('settled_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('order_id', sa.String(length=200), nullable=True),
    sa.ForeignKeyConstraint(['member_id'], ['core_member.id'], ),
    sa.PrimaryKeyConstraint('id')
    )
    op.create_index('ix_core_checkout_member', 'core_checkout', ['member_id'], unique=False)
    op.create_index('ix_core_checkout_shop_status_expiry', 'core_checkout', ['shop', 'status', 'expires_at'],
                    unique=False)


def downgrade() -> None:
    op.drop_index('ix_core_checkout_shop_status_expiry', table_name='core_checkout')
    op.drop_index('ix_core_checkout_member', table_name='core_checkout')
    op.drop_table('core_checkout')
