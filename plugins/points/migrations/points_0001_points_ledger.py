"""points ledger: accounts, immutable entries, expiring lots, milestones paid, daily action counts

Revision ID: points_0001
Revises: 
"""
from alembic import op
import sqlalchemy as sa


revision = 'points_0001'
down_revision = None
branch_labels = ('points',)
depends_on = 'core_0001'


def upgrade() -> None:
    op.create_table('points_account',
    sa.Column('member_id', sa.String(length=32), nullable=False),
    sa.Column('shop', sa.String(length=64), nullable=False),
    sa.Column('balance', sa.Integer(), nullable=False),
    sa.Column('pending', sa.Integer(), nullable=False),
    sa.Column('debt', sa.Integer(), nullable=False),
    sa.Column('shortfall', sa.Integer(), nullable=False),
    sa.Column('lifetime_earned', sa.Integer(), nullable=False),
    sa.Column('lifetime_spend', sa.Integer(), nullable=False),
    sa.ForeignKeyConstraint(['member_id'], ['core_member.id'], ),
    sa.PrimaryKeyConstraint('member_id')
    )
    op.create_table('points_action_day',
    sa.Column('member_id', sa.String(length=32), nullable=False),
    sa.Column('action', sa.String(length=40), nullable=False),
    sa.Column('day', sa.String(length=10), nullable=False),
    sa.Column('shop', sa.String(length=64), nullable=False),
    sa.Column('count', sa.Integer(), nullable=False),
    sa.ForeignKeyConstraint(['member_id'], ['core_member.id'], ),
    sa.PrimaryKeyConstraint('member_id', 'action', 'day')
    )
    op.create_table('points_entry',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('shop', sa.String(length=64), nullable=False),
    sa.Column('member_id', sa.String(length=32), nullable=False),
    sa.Column('delta', sa.Integer(), nullable=False),
    sa.Column('reason', sa.String(length=24), nullable=False),
    sa.Column('rule', sa.String(length=80), nullable=False),
    sa.Column('order_id', sa.String(length=200), nullable=True),
    sa.Column('event_id', sa.Integer(), nullable=True),
    sa.Column('actor', sa.String(length=32), nullable=True),
    sa.Column('note', sa.String(length=200), nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['member_id'], ['core_member.id'], ),
    sa.PrimaryKeyConstraint('id')
    )
    op.create_index('ix_points_entry_member_id', 'points_entry', ['member_id', 'id'], unique=False)
    op.create_index('ix_points_entry_order', 'points_entry', ['shop', 'order_id'], unique=False)

    op.create_table('points_lot',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('shop', sa.String(length=64), nullable=False),
    sa.Column('member_id', sa.String(length=32), nullable=False),
    sa.Column('entry_id', sa.Integer(), nullable=False),
    sa.Column('order_id', sa.String(length=200), nullable=True),
    sa.Column('amount', sa.Integer(), nullable=False),
    sa.Column('remaining', sa.Integer(), nullable=False),
    sa.Column('state', sa.String(length=8), nullable=False),
    sa.Column('available_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('expires_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['member_id'], ['core_member.id'], ),
    sa.PrimaryKeyConstraint('id')
    )
    op.create_index('ix_points_lot_member_state_expiry', 'points_lot', ['member_id', 'state', 'expires_at'], unique=False)
    op.create_index('ix_points_lot_order', 'points_lot', ['shop', 'order_id'], unique=False)
    op.create_index('ix_points_lot_state_available', 'points_lot', ['shop', 'state', 'available_at'], unique=False)
    op.create_index('ix_points_lot_state_expiry', 'points_lot', ['shop', 'state', 'expires_at'], unique=False)

    op.create_table('points_milestone',
    sa.Column('member_id', sa.String(length=32), nullable=False),
    sa.Column('lifetime_spend', sa.Integer(), nullable=False),
    sa.Column('shop', sa.String(length=64), nullable=False),
    sa.Column('order_id', sa.String(length=200), nullable=False),
    sa.ForeignKeyConstraint(['member_id'], ['core_member.id'], ),
    sa.PrimaryKeyConstraint('member_id', 'lifetime_spend')
    )


def downgrade() -> None:
    op.drop_table('points_milestone')
    op.drop_index('ix_points_lot_state_expiry', table_name='points_lot')
    op.drop_index('ix_points_lot_state_available', table_name='points_lot')
    op.drop_index('ix_points_lot_order', table_name='points_lot')
    op.drop_index('ix_points_lot_member_state_expiry', table_name='points_lot')

    op.drop_table('points_lot')
    op.drop_index('ix_points_entry_order', table_name='points_entry')
    op.drop_index('ix_points_entry_member_id', table_name='points_entry')

    op.drop_table('points_entry')
    op.drop_table('points_action_day')
    op.drop_table('points_account')
