"""outbox: retry window and hand-off time; notifications; integration states

Revision ID: 0013
Revises: 0012
"""
from __future__ import annotations

from alembic import op
import sqlalchemy as sa

import core.models


revision = '0013'
down_revision = '0012'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('outbox_messages') as batch:
        batch.add_column(sa.Column('retry_window_started_at', core.models.TZDateTime(timezone=True), nullable=True))
        batch.add_column(sa.Column('handed_at', core.models.TZDateTime(timezone=True), nullable=True))
    op.create_table(
        'notifications',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('user_id', sa.Integer(), nullable=False),
        sa.Column('kind', sa.String(length=50), nullable=False),
        sa.Column('severity', sa.String(length=10), nullable=False),
        sa.Column('title', sa.String(length=300), nullable=False),
        sa.Column('body', sa.Text(), nullable=False),
        sa.Column('entity_type', sa.String(length=50), nullable=True),
        sa.Column('entity_id', sa.String(length=64), nullable=True),
        sa.Column('created_at', core.models.TZDateTime(timezone=True), nullable=False),
        sa.Column('read_at', core.models.TZDateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(['user_id'], ['users.id'], name='fk_notifications_user_id_users', ondelete='CASCADE'),
        sa.PrimaryKeyConstraint('id', name='pk_notifications'),
    )
    op.create_index('ix_notifications_created_at', 'notifications', ['created_at'])
    op.create_index('ix_notifications_user_id_read_at', 'notifications', ['user_id', 'read_at'])
    op.create_table(
        'integration_states',
        sa.Column('name', sa.String(length=50), nullable=False),
        sa.Column('healthy', sa.Boolean(), nullable=False),
        sa.Column('detail', sa.Text(), nullable=False),
        sa.Column('checked_at', core.models.TZDateTime(timezone=True), nullable=False),
        sa.Column('changed_at', core.models.TZDateTime(timezone=True), nullable=False),
        sa.Column('last_success_at', core.models.TZDateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint('name', name='pk_integration_states'),
    )


def downgrade() -> None:
    op.drop_table('integration_states')
    op.drop_index('ix_notifications_user_id_read_at', table_name='notifications')
    op.drop_index('ix_notifications_created_at', table_name='notifications')
    op.drop_table('notifications')
    with op.batch_alter_table('outbox_messages') as batch:
        batch.drop_column('handed_at')
        batch.drop_column('retry_window_started_at')
