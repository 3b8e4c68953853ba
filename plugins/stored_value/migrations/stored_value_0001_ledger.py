"""stored value ledger: accounts, top-ups, immutable entries, principal and bonus lots

Revision ID: stored_value_0001
Revises:
"""
from alembic import op
import sqlalchemy as sa


revision = 'stored_value_0001'
down_revision = None
branch_labels = ('stored_value',)
depends_on = 'core_0001'

BIG = sa.BigInteger().with_variant(sa.Integer(), 'sqlite')  # 64-bit sums (SQLite's INTEGER is already)


def upgrade() -> None:
    op.create_table('stored_value_account',
    sa.Column('member_id', sa.String(length=32), nullable=False),
    sa.Column('shop', sa.String(length=64), nullable=False),
    sa.Column('principal', BIG, nullable=False),
    sa.Column('bonus', BIG, nullable=False),
    sa.Column('held', BIG, nullable=False),
    sa.ForeignKeyConstraint(['member_id'], ['core_member.id'], ),
    sa.PrimaryKeyConstraint('member_id')
    )
    op.create_table('stored_value_top_up',
    sa.Column('shop', sa.String(length=64), nullable=False),
    sa.Column('top_up_id', sa.String(length=200), nullable=False),
    sa.Column('member_id', sa.String(length=32), nullable=False),
    sa.Column('amount', BIG, nullable=False),
    sa.Column('bonus', BIG, nullable=False),
    sa.Column('rule', sa.String(length=40), nullable=False),
    sa.Column('refunded', BIG, nullable=False),
    sa.Column('bonus_taken_back', BIG, nullable=False),
    sa.Column('bonus_from_lot', BIG, nullable=False),
    sa.Column('bonus_charged', BIG, nullable=False),
    sa.Column('paid_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['member_id'], ['core_member.id'], ),
    sa.PrimaryKeyConstraint('shop', 'top_up_id')
    )
    op.create_index('ix_stored_value_top_up_member', 'stored_value_top_up', ['member_id'], unique=False)
    op.create_table('stored_value_entry',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('shop', sa.String(length=64), nullable=False),
    sa.Column('member_id', sa.String(length=32), nullable=False),
    sa.Column('principal', BIG, nullable=False),
    sa.Column('bonus', BIG, nullable=False),
    sa.Column('reason', sa.String(length=24), nullable=False),
    sa.Column('rule', sa.String(length=80), nullable=False),
    sa.Column('reference', sa.String(length=200), nullable=True),
    sa.Column('event_id', sa.Integer(), nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['member_id'], ['core_member.id'], ),
    sa.PrimaryKeyConstraint('id')
    )
    op.create_index('ix_stored_value_entry_member_id', 'stored_value_entry', ['member_id', 'id'], unique=False)
    op.create_table('stored_value_lot',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('shop', sa.String(length=64), nullable=False),
    sa.Column('member_id', sa.String(length=32), nullable=False),
    sa.Column('top_up_id', sa.String(length=200), nullable=False),
    sa.Column('kind', sa.String(length=10), nullable=False),
    sa.Column('amount', BIG, nullable=False),
    sa.Column('remaining', BIG, nullable=False),
    sa.Column('expired', BIG, nullable=False),
    sa.Column('state', sa.String(length=8), nullable=False),
    sa.Column('expires_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['member_id'], ['core_member.id'], ),
    sa.PrimaryKeyConstraint('id')
    )
    op.create_index('ix_stored_value_lot_member', 'stored_value_lot',
                    ['member_id', 'state', 'kind', 'expires_at'], unique=False)
    op.create_index('ix_stored_value_lot_due', 'stored_value_lot', ['shop', 'state', 'kind', 'expires_at'],
                    unique=False)


def downgrade() -> None:
    op.drop_index('ix_stored_value_lot_due', table_name='stored_value_lot')
    op.drop_index('ix_stored_value_lot_member', table_name='stored_value_lot')
    op.drop_table('stored_value_lot')
    op.drop_index('ix_stored_value_entry_member_id', table_name='stored_value_entry')
    op.drop_table('stored_value_entry')
    op.drop_index('ix_stored_value_top_up_member', table_name='stored_value_top_up')
    op.drop_table('stored_value_top_up')
    op.drop_table('stored_value_account')
