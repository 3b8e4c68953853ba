"""stored value spent at checkout: the holds of checkouts and what each paid order took, lot by lot

Revision ID: stored_value_0002
Revises: stored_value_0001
"""
from alembic import op
import sqlalchemy as sa


revision = 'stored_value_0002'
down_revision = 'stored_value_0001'
branch_labels = None
depends_on = None

BIG = sa.BigInteger().with_variant(sa.Integer(), 'sqlite')


def upgrade() -> None:
    op.create_table('stored_value_hold',
    sa.Column('checkout_id', sa.String(length=64), nullable=False),
    sa.Column('shop', sa.String(length=64), nullable=False),
    sa.Column('member_id', sa.String(length=32), nullable=False),
    sa.Column('amount', BIG, nullable=False),
    sa.Column('status', sa.String(length=10), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('settled_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('order_id', sa.String(length=200), nullable=True),
    sa.ForeignKeyConstraint(['member_id'], ['core_member.id'], ),
    sa.PrimaryKeyConstraint('checkout_id')
    )
    op.create_index('ix_stored_value_hold_member', 'stored_value_hold', ['member_id'], unique=False)
    op.create_table('stored_value_order',
    sa.Column('shop', sa.String(length=64), nullable=False),
    sa.Column('order_id', sa.String(length=200), nullable=False),
    sa.Column('member_id', sa.String(length=32), nullable=False),
    sa.Column('total', BIG, nullable=False),
    sa.Column('principal', BIG, nullable=False),
    sa.Column('bonus', BIG, nullable=False),
    sa.Column('lots', sa.JSON(), nullable=False),
    sa.Column('returned_principal', BIG, nullable=False),
    sa.Column('returned_bonus', BIG, nullable=False),
    sa.ForeignKeyConstraint(['member_id'], ['core_member.id'], ),
    sa.PrimaryKeyConstraint('shop', 'order_id')
    )
    op.create_index('ix_stored_value_order_member', 'stored_value_order', ['member_id'], unique=False)


def downgrade() -> None:
    op.drop_index('ix_stored_value_order_member', table_name='stored_value_order')
    op.drop_table('stored_value_order')
    op.drop_index('ix_stored_value_hold_member', table_name='stored_value_hold')
    op.drop_table('stored_value_hold')
