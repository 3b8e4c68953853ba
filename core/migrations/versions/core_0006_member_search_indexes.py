"""core_member indexed for the member search: (shop, id), so a shop's page walks its own members in id
order beside other shops', and on PostgreSQL a GIN index over CAST(tags AS JSONB) for the tag filters
(and the statistics that let the planner combine them with other filters)

Revision ID: core_0006
Revises: core_0005
"""
from alembic import op
import sqlalchemy as sa


revision = 'core_0006'
down_revision = 'core_0005'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index('ix_core_member_shop_id', 'core_member', ['shop', 'id'])
    if op.get_bind().dialect.name == 'postgresql':
        op.create_index('ix_core_member_tags', 'core_member', [sa.text('(CAST(tags AS JSONB))')],
                        postgresql_using='gin')


def downgrade() -> None:
    if op.get_bind().dialect.name == 'postgresql':
        op.drop_index('ix_core_member_tags', 'core_member')
    op.drop_index('ix_core_member_shop_id', 'core_member')
