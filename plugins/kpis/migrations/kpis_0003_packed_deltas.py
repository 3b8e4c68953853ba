"""kpis_delta: one row per transaction, its figures packed as JSON (an order appends one small row)

Revision ID: kpis_0003
Revises: kpis_0002
Create Date: 2026-12-05 16:40:00
"""
import json
from datetime import UTC, datetime

import sqlalchemy as sa
from alembic import op

revision = 'kpis_0003'
down_revision = 'kpis_0002'
branch_labels = None
depends_on = None

BigInt = sa.BigInteger().with_variant(sa.Integer(), 'sqlite')
OLD = sa.table('kpis_delta', sa.column('shop'), sa.column('metric'), sa.column('bucket', sa.DateTime(True)),
               sa.column('value'), sa.column('member_id'))


def _bucket(moment) -> str:
    return (moment if moment.tzinfo is None else moment.astimezone(UTC)).strftime('%Y-%m-%d %H:%M:%S.%f')


def upgrade() -> None:
    # The rows not folded yet (at most a minute's), packed one per row as the plugin now writes them; on
    # PostgreSQL none may be added between reading them and dropping the table.
    if op.get_bind().dialect.name == 'postgresql':
        op.execute('LOCK TABLE kpis_delta IN EXCLUSIVE MODE')
    kept = op.get_bind().execute(sa.select(OLD.c.shop, OLD.c.metric, OLD.c.bucket, OLD.c.value, OLD.c.member_id)
                                 .order_by(sa.text('id'))).all()
    with op.batch_alter_table('kpis_delta', schema=None) as batch_op:
        batch_op.drop_index('ix_kpis_delta_shop_metric_bucket')
    op.drop_table('kpis_delta')
    packed = op.create_table('kpis_delta',
    sa.Column('id', BigInt, autoincrement=True, nullable=False),
    sa.Column('shop', sa.String(length=64), nullable=False),
    sa.Column('figures', sa.Text(), nullable=False),
    sa.PrimaryKeyConstraint('id')
    )
    rows = [{'shop': shop, 'figures': json.dumps([[metric, _bucket(bucket), value, member_id]])}
            for shop, metric, bucket, value, member_id in kept]
    for first in range(0, len(rows), 5000):
        op.bulk_insert(packed, rows[first:first + 5000])


def downgrade() -> None:
    packed = sa.table('kpis_delta', sa.column('shop'), sa.column('figures'))
    kept = op.get_bind().execute(sa.select(packed.c.shop, packed.c.figures).order_by(sa.text('id'))).all()
    op.drop_table('kpis_delta')
    old = op.create_table('kpis_delta',
    sa.Column('id', BigInt, autoincrement=True, nullable=False),
    sa.Column('shop', sa.String(length=64), nullable=False),
    sa.Column('metric', sa.String(length=64), nullable=False),
    sa.Column('bucket', sa.DateTime(timezone=True), nullable=False),
    sa.Column('value', BigInt, nullable=False),
    sa.Column('member_id', sa.String(length=32), nullable=True),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('kpis_delta', schema=None) as batch_op:
        batch_op.create_index('ix_kpis_delta_shop_metric_bucket', ['shop', 'metric', 'bucket'], unique=False)
    rows = [{'shop': shop, 'metric': m, 'bucket': datetime.fromisoformat(b).replace(tzinfo=UTC), 'value': v,
             'member_id': member} for shop, figures in kept for m, b, v, member in json.loads(figures)]
    for first in range(0, len(rows), 5000):
        op.bulk_insert(old, rows[first:first + 5000])
