"""points held by checkouts: points_account.held and the points_hold table

Revision ID: points_0002
Revises: points_0001
"""
from alembic import op
import sqlalchemy as sa


revision = 'points_0002'
down_revision = 'points_0001'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('points_account') as batch:
        batch.add_column(sa.Column('held', sa.Integer(), server_default='0', nullable=False))
    op.create_table('points_hold',
    sa.Column('checkout_id', sa.String(length=64), nullable=False),
    sa.Column('shop', sa.String(length=64), nullable=False),
    sa.Column('member_id', sa.String(length=32), nullable=False),
    sa.Column('amount', sa.Integer(), nullable=False),
    sa.Column('status', sa.String(length=10), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('settled_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('order_id', sa.String(length=200), nullable=True),
    sa.ForeignKeyConstraint(['member_id'], ['core_member.id'], ),
    sa.PrimaryKeyConstraint('checkout_id')
    )
    op.create_index('ix_points_hold_member', 'points_hold', ['member_id'], unique=False)


def downgrade() -> None:
    op.drop_index('ix_points_hold_member', table_name='points_hold')
    op.drop_table('points_hold')
    with op.batch_alter_table('points_account') as batch:
        batch.drop_column('held')
