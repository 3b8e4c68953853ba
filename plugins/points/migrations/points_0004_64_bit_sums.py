"""points_account: the sums over a member's history in 64-bit columns (BIGINT on PostgreSQL)

Revision ID: points_0004
Revises: points_0003
"""
from alembic import op
import sqlalchemy as sa


revision = 'points_0004'
down_revision = 'points_0003'
branch_labels = None
depends_on = None

COLUMNS = ('balance', 'held', 'pending', 'debt', 'shortfall', 'lifetime_earned', 'lifetime_spend')


def upgrade() -> None:
    if op.get_bind().dialect.name == 'postgresql':  # SQLite's INTEGER is 64-bit already
        for column in COLUMNS:
            op.alter_column('points_account', column, type_=sa.BigInteger(), existing_type=sa.Integer())


def downgrade() -> None:
    if op.get_bind().dialect.name == 'postgresql':
        for column in COLUMNS:
            op.alter_column('points_account', column, type_=sa.Integer(), existing_type=sa.BigInteger())
