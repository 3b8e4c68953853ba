"""core_member.tokens_valid_from: member tokens minted before it no longer work (revokeMemberTokens)

Revision ID: core_0004
Revises: core_0003
"""
from alembic import op
import sqlalchemy as sa


revision = 'core_0004'
down_revision = 'core_0003'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('core_member') as batch:
        batch.add_column(sa.Column('tokens_valid_from', sa.DateTime(timezone=True), nullable=True))
    # every server process reads the recent revocations every few seconds
    op.create_index('ix_core_member_tokens_valid_from', 'core_member', ['tokens_valid_from'])


def downgrade() -> None:
    op.drop_index('ix_core_member_tokens_valid_from', 'core_member')
    with op.batch_alter_table('core_member') as batch:
        batch.drop_column('tokens_valid_from')
