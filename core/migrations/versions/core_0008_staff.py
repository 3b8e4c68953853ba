"""Staff keys and the operator console: core_api_key.role (a staff key's viewer or operator),
core_staff_session (console sessions, ids and CSRF tokens as hashes) and core_audit_log (staff writes)

Revision ID: core_0008
Revises: core_0007
"""
from alembic import op
import sqlalchemy as sa


revision = 'core_0008'
down_revision = 'core_0007'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('core_api_key') as batch:
        batch.add_column(sa.Column('role', sa.String(length=16), nullable=True))
    op.create_table(
        'core_staff_session',
        sa.Column('id_hash', sa.String(length=64), nullable=False),
        sa.Column('csrf_hash', sa.String(length=64), nullable=False),
        sa.Column('key_id', sa.String(length=32), nullable=False),
        sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
        sa.Column('expires_at', sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint('id_hash'),
    )
    op.create_index(op.f('ix_core_staff_session_key_id'), 'core_staff_session', ['key_id'], unique=False)
    op.create_index(op.f('ix_core_staff_session_expires_at'), 'core_staff_session', ['expires_at'], unique=False)
    op.create_table(
        'core_audit_log',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('shop', sa.String(length=64), nullable=False),
        sa.Column('key_id', sa.String(length=32), nullable=False),
        sa.Column('key_label', sa.String(length=200), nullable=False),
        sa.Column('role', sa.String(length=16), nullable=False),
        sa.Column('operation', sa.String(length=64), nullable=False),
        sa.Column('arguments', sa.JSON(), nullable=False),
        sa.Column('reason', sa.String(length=500), nullable=True),
        sa.Column('event_id', sa.Integer(), nullable=True),
        sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint('id'),
    )
    op.create_index('ix_core_audit_log_shop_id', 'core_audit_log', ['shop', 'id'], unique=False)


def downgrade() -> None:
    op.drop_index('ix_core_audit_log_shop_id', table_name='core_audit_log')
    op.drop_table('core_audit_log')
    op.drop_index(op.f('ix_core_staff_session_expires_at'), table_name='core_staff_session')
    op.drop_index(op.f('ix_core_staff_session_key_id'), table_name='core_staff_session')
    op.drop_table('core_staff_session')
    with op.batch_alter_table('core_api_key') as batch:
        batch.drop_column('role')
