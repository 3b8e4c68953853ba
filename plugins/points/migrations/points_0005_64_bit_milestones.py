"""points_milestone.lifetime_spend in a 64-bit column: lifetime spend passes Int's limit, so may a milestone

Revision ID: points_0005
Revises: points_0004
"""
from alembic import op
import sqlalchemy as sa


revision = 'points_0005'
down_revision = 'points_0004'
branch_labels = None
depends_on = None


def upgrade() -> None:
    if op.get_bind().dialect.name == 'postgresql':  # SQLite's INTEGER is 64-bit already
        op.alter_column('points_milestone', 'lifetime_spend', type_=sa.BigInteger(), existing_type=sa.Integer())


def downgrade() -> None:
    if op.get_bind().dialect.name == 'postgresql':
        op.alter_column('points_milestone', 'lifetime_spend', type_=sa.Integer(), existing_type=sa.BigInteger())
