"""points_account.next_due_at: no lot matures or expires before it, so writes skip looking for due lots

Revision ID: points_0003
Revises: points_0002
"""
from alembic import op
import sqlalchemy as sa


revision = 'points_0003'
down_revision = 'points_0002'
branch_labels = None
depends_on = None


def upgrade() -> None:
    # NULL (not known) on existing accounts: their next write looks for due lots once and sets it.
    with op.batch_alter_table('points_account') as batch:
        batch.add_column(sa.Column('next_due_at', sa.DateTime(timezone=True), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('points_account') as batch:
        batch.drop_column('next_due_at')
