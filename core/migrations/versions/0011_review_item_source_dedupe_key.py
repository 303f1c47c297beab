"""review items: a typed source column; interrupt_id becomes dedupe_key

Dispatch reads `source`, never the text of the thread id. Existing rows get their source from the
thread id prefix they were created with.

Revision ID: 0011
Revises: 0010
"""
from __future__ import annotations

from alembic import op
import sqlalchemy as sa


revision = '0011'
down_revision = '0010'
branch_labels = None
depends_on = None

# thread id prefix -> source, as the first wave named threads
PREFIXES = {
    'lead-': 'lead',
    'proposal-': 'proposal',
    'cadence-': 'cadence',
    'dunning-': 'dunning',
    'onboarding-': 'onboarding',
    'update-': 'client_update',
    'invoice-': 'invoice',
}


def upgrade() -> None:
    with op.batch_alter_table('review_items') as batch:
        batch.add_column(sa.Column('source', sa.String(length=20), nullable=True))
        batch.alter_column('interrupt_id', new_column_name='dedupe_key', existing_type=sa.String(length=64),
                           existing_nullable=False)
    items = sa.table('review_items', sa.column('source', sa.String), sa.column('thread_id', sa.String))
    for prefix, source in PREFIXES.items():
        op.execute(items.update().where(items.c.thread_id.like(prefix + '%')).values(source=source))
    op.execute(items.update().where(items.c.source.is_(None)).values(source='lead'))
    with op.batch_alter_table('review_items') as batch:
        batch.alter_column('source', existing_type=sa.String(length=20), nullable=False)
        batch.drop_constraint('uq_review_items_interrupt_id', type_='unique')
        batch.create_unique_constraint('uq_review_items_dedupe_key', ['dedupe_key'])
        batch.create_index('ix_review_items_source', ['source'])


def downgrade() -> None:
    with op.batch_alter_table('review_items') as batch:
        batch.drop_index('ix_review_items_source')
        batch.drop_constraint('uq_review_items_dedupe_key', type_='unique')
        batch.create_unique_constraint('uq_review_items_interrupt_id', ['dedupe_key'])
        batch.alter_column('dedupe_key', new_column_name='interrupt_id', existing_type=sa.String(length=64),
                           existing_nullable=False)
        batch.drop_column('source')
