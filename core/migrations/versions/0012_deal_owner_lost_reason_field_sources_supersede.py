"""deals: owner, lost reason, next step; accounts: field sources; review items: supersede key

Revision ID: 0012
Revises: 0011
"""
from __future__ import annotations

from alembic import op
import sqlalchemy as sa


revision = '0012'
down_revision = '0011'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('deals') as batch:
        batch.add_column(sa.Column('owner', sa.String(length=200), nullable=True))
        batch.add_column(sa.Column('lost_reason', sa.String(length=500), nullable=True))
        batch.add_column(sa.Column('next_step', sa.String(length=300), nullable=True))
        batch.add_column(sa.Column('next_step_due', sa.Date(), nullable=True))
        batch.create_index('ix_deals_owner', ['owner'])
    with op.batch_alter_table('accounts') as batch:
        batch.add_column(sa.Column('field_sources', sa.JSON(), server_default='{}', nullable=False))
    with op.batch_alter_table('review_items') as batch:
        batch.add_column(sa.Column('supersede_key', sa.String(length=100), nullable=True))
        batch.create_index('ix_review_items_supersede_key', ['supersede_key'])


def downgrade() -> None:
    with op.batch_alter_table('review_items') as batch:
        batch.drop_index('ix_review_items_supersede_key')
        batch.drop_column('supersede_key')
    with op.batch_alter_table('accounts') as batch:
        batch.drop_column('field_sources')
    with op.batch_alter_table('deals') as batch:
        batch.drop_index('ix_deals_owner')
        for column in ('next_step_due', 'next_step', 'lost_reason', 'owner'):
            batch.drop_column(column)
