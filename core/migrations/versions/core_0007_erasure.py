"""Erasure: core_member.erased_at, and core_fraud_hash, the erased members' phone and email hashes under
their own key, linked to no member, kept for a stated retention so erasure cannot farm sign-up rewards

Revision ID: core_0007
Revises: core_0006
"""
from alembic import op
import sqlalchemy as sa


revision = 'core_0007'
down_revision = 'core_0006'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('core_member') as batch:
        batch.add_column(sa.Column('erased_at', sa.DateTime(timezone=True), nullable=True))
    op.create_table(
        'core_fraud_hash',
        sa.Column('shop', sa.String(length=64), nullable=False),
        sa.Column('hash', sa.String(length=64), nullable=False),
        sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
        sa.Column('expires_at', sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint('shop', 'hash'),
    )


def downgrade() -> None:
    op.drop_table('core_fraud_hash')
    with op.batch_alter_table('core_member') as batch:
        batch.drop_column('erased_at')
