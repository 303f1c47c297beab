"""notifications: a dedupe key (one notification per user and event)

Revision ID: 0017
Revises: 0016
"""
from __future__ import annotations

from alembic import op
import sqlalchemy as sa


revision = '0017'
down_revision = '0016'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('notifications') as batch:
        batch.add_column(sa.Column('dedupe_key', sa.String(length=200), nullable=True))
        batch.create_unique_constraint('uq_notifications_user_id_dedupe_key', ['user_id', 'dedupe_key'])


def downgrade() -> None:
    with op.batch_alter_table('notifications') as batch:
        batch.drop_constraint('uq_notifications_user_id_dedupe_key', type_='unique')
        batch.drop_column('dedupe_key')
