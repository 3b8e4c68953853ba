"""core_audit_log.event_id indexed: erasing a member and their data export find their staff writes by it

Revision ID: core_0009
Revises: core_0008
"""
from alembic import op


revision = 'core_0009'
down_revision = 'core_0008'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('core_audit_log') as batch:
        batch.create_index('ix_core_audit_log_event_id', ['event_id'], unique=False)


def downgrade() -> None:
    with op.batch_alter_table('core_audit_log') as batch:
        batch.drop_index('ix_core_audit_log_event_id')
