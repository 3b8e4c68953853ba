"""core tables: keys, members and their personal data, events, orders, the coupon wallet, job leases

Revision ID: core_0001
Revises: 
"""
from alembic import op
import sqlalchemy as sa


revision = 'core_0001'
down_revision = None
branch_labels = ('core',)
depends_on = None


def upgrade() -> None:
    op.create_table('core_api_key',
    sa.Column('id', sa.String(length=32), nullable=False),
    sa.Column('shop', sa.String(length=64), nullable=False),
    sa.Column('kind', sa.String(length=16), nullable=False),
    sa.Column('key_hash', sa.String(length=64), nullable=False),
    sa.Column('prefix', sa.String(length=16), nullable=False),
    sa.Column('label', sa.String(length=200), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('revoked_at', sa.DateTime(timezone=True), nullable=True),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('key_hash')
    )
    op.create_index(op.f('ix_core_api_key_shop'), 'core_api_key', ['shop'], unique=False)

    op.create_table('core_event',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('shop', sa.String(length=64), nullable=False),
    sa.Column('kind', sa.String(length=40), nullable=False),
    sa.Column('key', sa.String(length=200), nullable=False),
    sa.Column('payload_hash', sa.String(length=64), nullable=False),
    sa.Column('result', sa.JSON(), nullable=True),
    sa.Column('api_key_id', sa.String(length=32), nullable=True),
    sa.Column('member_id', sa.String(length=32), nullable=True),
    sa.Column('settings_version', sa.String(length=32), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('shop', 'kind', 'key', name='uq_core_event_shop_kind_key')
    )
    op.create_table('core_job_lease',
    sa.Column('shop', sa.String(length=64), nullable=False),
    sa.Column('job', sa.String(length=120), nullable=False),
    sa.Column('owner', sa.String(length=64), nullable=True),
    sa.Column('lease_until', sa.DateTime(timezone=True), nullable=True),
    sa.Column('last_run_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('last_result', sa.String(length=500), nullable=True),
    sa.PrimaryKeyConstraint('shop', 'job')
    )
    op.create_table('core_member',
    sa.Column('id', sa.String(length=32), nullable=False),
    sa.Column('shop', sa.String(length=64), nullable=False),
    sa.Column('external_id', sa.String(length=200), nullable=False),
    sa.Column('joined_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('tags', sa.JSON(), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('shop', 'external_id', name='uq_core_member_shop_external_id')
    )
    op.create_table('core_coupon',
    sa.Column('id', sa.String(length=32), nullable=False),
    sa.Column('shop', sa.String(length=64), nullable=False),
    sa.Column('member_id', sa.String(length=32), nullable=False),
    sa.Column('code', sa.String(length=32), nullable=False),
    sa.Column('template', sa.String(length=64), nullable=False),
    sa.Column('title', sa.String(length=200), nullable=False),
    sa.Column('kind', sa.String(length=8), nullable=False),
    sa.Column('value', sa.Integer(), nullable=False),
    sa.Column('min_spend', sa.Integer(), nullable=False),
    sa.Column('source', sa.String(length=120), nullable=False),
    sa.Column('status', sa.String(length=12), nullable=False),
    sa.Column('issued_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('valid_until', sa.DateTime(timezone=True), nullable=True),
    sa.Column('used_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('used_order_id', sa.String(length=200), nullable=True),
    sa.Column('held_by', sa.String(length=64), nullable=True),
    sa.Column('held_until', sa.DateTime(timezone=True), nullable=True),
    sa.ForeignKeyConstraint(['member_id'], ['core_member.id'], ),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('shop', 'code', name='uq_core_coupon_shop_code')
    )
    op.create_index('ix_core_coupon_member_status', 'core_coupon', ['member_id', 'status'], unique=False)

    op.create_table('core_member_personal',
    sa.Column('member_id', sa.String(length=32), nullable=False),
    sa.Column('shop', sa.String(length=64), nullable=False),
    sa.Column('phone_hash', sa.String(length=64), nullable=True),
    sa.Column('email_hash', sa.String(length=64), nullable=True),
    sa.Column('birthday', sa.Date(), nullable=True),
    sa.Column('birthday_changed_at', sa.DateTime(timezone=True), nullable=True),
    sa.ForeignKeyConstraint(['member_id'], ['core_member.id'], ),
    sa.PrimaryKeyConstraint('member_id')
    )
    op.create_index('ix_core_member_personal_shop_email', 'core_member_personal', ['shop', 'email_hash'], unique=False)
    op.create_index('ix_core_member_personal_shop_phone', 'core_member_personal', ['shop', 'phone_hash'], unique=False)

    op.create_table('core_order',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('shop', sa.String(length=64), nullable=False),
    sa.Column('order_id', sa.String(length=200), nullable=False),
    sa.Column('member_id', sa.String(length=32), nullable=False),
    sa.Column('currency', sa.String(length=3), nullable=False),
    sa.Column('total', sa.Integer(), nullable=False),
    sa.Column('refunded', sa.Integer(), nullable=False),
    sa.Column('paid_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('detail', sa.JSON(), nullable=False),
    sa.ForeignKeyConstraint(['member_id'], ['core_member.id'], ),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('shop', 'order_id', name='uq_core_order_shop_order_id')
    )
    op.create_index('ix_core_order_member', 'core_order', ['member_id'], unique=False)



def downgrade() -> None:
    op.drop_index('ix_core_order_member', table_name='core_order')

    op.drop_table('core_order')
    op.drop_index('ix_core_member_personal_shop_phone', table_name='core_member_personal')
    op.drop_index('ix_core_member_personal_shop_email', table_name='core_member_personal')

    op.drop_table('core_member_personal')
    op.drop_index('ix_core_coupon_member_status', table_name='core_coupon')

    op.drop_table('core_coupon')
    op.drop_table('core_member')
    op.drop_table('core_job_lease')
    op.drop_table('core_event')
    op.drop_index(op.f('ix_core_api_key_shop'), table_name='core_api_key')

    op.drop_table('core_api_key')
