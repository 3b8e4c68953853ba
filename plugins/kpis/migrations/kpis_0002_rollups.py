"""kpis_rollup (UTC day and month sums of kpis_hour, kept by the fold) and kpis_hour (shop, bucket)

Revision ID: kpis_0002
Revises: kpis_0001
Create Date: 2026-12-05 15:10:00
"""
from collections import defaultdict
from datetime import UTC

import sqlalchemy as sa
from alembic import op

revision = 'kpis_0002'
down_revision = 'kpis_0001'
branch_labels = None
depends_on = None

BigInt = sa.BigInteger().with_variant(sa.Integer(), 'sqlite')


def upgrade() -> None:
    rollup = op.create_table('kpis_rollup',
    sa.Column('shop', sa.String(length=64), nullable=False),
    sa.Column('span', sa.String(length=1), nullable=False),
    sa.Column('start', sa.DateTime(timezone=True), nullable=False),
    sa.Column('metric', sa.String(length=64), nullable=False),
    sa.Column('value', BigInt, nullable=False),
    sa.PrimaryKeyConstraint('shop', 'span', 'start', 'metric')
    )
    with op.batch_alter_table('kpis_hour', schema=None) as batch_op:
        batch_op.create_index('ix_kpis_hour_shop_bucket', ['shop', 'bucket'], unique=False)
    # The hours folded before this revision, rolled up as the fold now does (naive UTC on SQLite).
    hour = sa.table('kpis_hour', sa.column('shop'), sa.column('metric'), sa.column('bucket', sa.DateTime(True)),
                    sa.column('value'))
    sums: dict[tuple, int] = defaultdict(int)
    for shop, metric, bucket, value in op.get_bind().execute(sa.select(hour.c.shop, hour.c.metric, hour.c.bucket,
                                                                       hour.c.value)):
        day = (bucket if bucket.tzinfo is None else bucket.astimezone(UTC)).replace(hour=0, minute=0, second=0,
                                                                                     microsecond=0)
        sums[shop, 'D', day, metric] += value
        sums[shop, 'M', day.replace(day=1), metric] += value
    rows = [{'shop': k[0], 'span': k[1], 'start': k[2], 'metric': k[3], 'value': v} for k, v in sums.items()]
    for first in range(0, len(rows), 5000):
        op.bulk_insert(rollup, rows[first:first + 5000])


def downgrade() -> None:
    with op.batch_alter_table('kpis_hour', schema=None) as batch_op:
        batch_op.drop_index('ix_kpis_hour_shop_bucket')
    op.drop_table('kpis_rollup')
