"""checkout: the checkout plugin takes over core's checkout table (core_0002) as checkout_session

Revision ID: checkout_0001
Revises:
"""
from alembic import op


revision = 'checkout_0001'
down_revision = None
branch_labels = ('checkout',)
depends_on = 'core_0003'


def upgrade() -> None:
    op.drop_index('ix_core_checkout_shop_status_expiry', table_name='core_checkout')
    op.drop_index('ix_core_checkout_member', table_name='core_checkout')
    op.rename_table('core_checkout', 'checkout_session')
    op.create_index('ix_checkout_session_member', 'checkout_session', ['member_id'], unique=False)
    op.create_index('ix_checkout_session_shop_status_expiry', 'checkout_session', ['shop', 'status', 'expires_at'],
                    unique=False)


def downgrade() -> None:
    op.drop_index('ix_checkout_session_shop_status_expiry', table_name='checkout_session')
    op.drop_index('ix_checkout_session_member', table_name='checkout_session')
    op.rename_table('checkout_session', 'core_checkout')
    op.create_index('ix_core_checkout_member', 'core_checkout', ['member_id'], unique=False)
    op.create_index('ix_core_checkout_shop_status_expiry', 'core_checkout', ['shop', 'status', 'expires_at'],
                    unique=False)
