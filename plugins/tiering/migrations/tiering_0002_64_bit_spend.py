"""tiering_member.spend: lifetime spend in a 64-bit column (BIGINT on PostgreSQL)

Revision ID: tiering_0002
Revises: tiering_0001
"""
from alembic import op
import sqlalchemy as sa


revision = 'tiering_0002'
down_revision = 'tiering_0001'
branch_labels = None
depends_on = None


def upgrade() -> None:
    if op.get_bind().dialect.name == 'postgresql':  # SQLite's INTEGER is 64-bit already
        op.alter_column('tiering_member', 'spend', type_=sa.BigInteger(), existing_type=sa.Integer())


def downgrade() -> None:
    if op.get_bind().dialect.name == 'postgresql':
        op.alter_column('tiering_member', 'spend', type_=sa.Integer(), existing_type=sa.BigInteger())
