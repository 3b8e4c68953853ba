"""core_job_run: one-off jobs (campaigns, imports, redeliveries), their progress and where they resume

Revision ID: core_0005
Revises: core_0004
"""
from alembic import op
import sqlalchemy as sa


revision = 'core_0005'
down_revision = 'core_0004'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        'core_job_run',
        sa.Column('id', sa.String(length=32), nullable=False),
        sa.Column('shop', sa.String(length=64), nullable=False),
        sa.Column('kind', sa.String(length=120), nullable=False),
        sa.Column('key', sa.String(length=200), nullable=False),
        sa.Column('params', sa.JSON(), nullable=False),
        sa.Column('status', sa.String(length=8), nullable=False),
        sa.Column('total', sa.Integer(), nullable=True),
        sa.Column('done', sa.Integer(), nullable=False),
        sa.Column('cursor', sa.String(length=200), nullable=True),
        sa.Column('owner', sa.String(length=64), nullable=True),
        sa.Column('lease_until', sa.DateTime(timezone=True), nullable=True),
        sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
        sa.Column('started_at', sa.DateTime(timezone=True), nullable=True),
        sa.Column('finished_at', sa.DateTime(timezone=True), nullable=True),
        sa.Column('error', sa.String(length=500), nullable=True),
        sa.PrimaryKeyConstraint('id'),
        sa.UniqueConstraint('shop', 'key', name='uq_core_job_run_shop_key'),
    )


def downgrade() -> None:
    op.drop_table('core_job_run')
