"""core_member.paid_orders: how many orders each member has paid, so a first order is known without a count

Revision ID: core_0003
Revises: core_0002
"""
from alembic import op
import sqlalchemy as sa


revision = 'core_0003'
down_revision = 'core_0002'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('core_member') as batch:
        batch.add_column(sa.Column('paid_orders', sa.Integer(), server_default='0', nullable=False))
    op.execute("UPDATE core_member SET paid_orders = "
               "(SELECT count(*) FROM core_order WHERE core_order.member_id = core_member.id)")


def downgrade() -> None:
    with op.batch_alter_table('core_member') as batch:
        batch.drop_column('paid_orders')
