"""notifications: a dedupe key, the in-app switch, deliveries (email, webhook), preferences, quiet hours,
team channel settings

Revision ID: 0017
Revises: 0016
"""
from __future__ import annotations

from alembic import op
import sqlalchemy as sa

import core.models


revision = '0017'
down_revision = '0016'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('notifications') as batch:
        batch.add_column(sa.Column('dedupe_key', sa.String(length=200), nullable=True))
        batch.add_column(sa.Column('shown', sa.Boolean(), server_default=sa.true(), nullable=False))
        batch.create_unique_constraint('uq_notifications_user_id_dedupe_key', ['user_id', 'dedupe_key'])
    op.create_table(
        'notification_deliveries',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('key', sa.String(length=250), nullable=False),
        sa.Column('channel', sa.String(length=20), nullable=False),
        sa.Column('notification_id', sa.Integer(), nullable=True),
        sa.Column('user_id', sa.Integer(), nullable=True),
        sa.Column('kind', sa.String(length=50), nullable=False),
        sa.Column('subject', sa.String(length=300), nullable=False),
        sa.Column('body', sa.Text(), nullable=False),
        sa.Column('link', sa.String(length=500), nullable=True),
        sa.Column('status', sa.String(length=20), nullable=False),
        sa.Column('attempts', sa.Integer(), nullable=False),
        sa.Column('to_addr', sa.String(length=320), nullable=True),
        sa.Column('location', sa.String(length=500), nullable=True),
        sa.Column('last_error', sa.Text(), nullable=True),
        sa.Column('hold_until', core.models.TZDateTime(timezone=True), nullable=True),
        sa.Column('created_at', core.models.TZDateTime(timezone=True), nullable=False),
        sa.Column('sent_at', core.models.TZDateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ['notification_id'], ['notifications.id'],
            name='fk_notification_deliveries_notification_id_notifications', ondelete='CASCADE',
        ),
        sa.ForeignKeyConstraint(
            ['user_id'], ['users.id'], name='fk_notification_deliveries_user_id_users', ondelete='CASCADE'
        ),
        sa.PrimaryKeyConstraint('id', name='pk_notification_deliveries'),
        sa.UniqueConstraint('key', name='uq_notification_deliveries_key'),
    )
    op.create_index(
        'ix_notification_deliveries_notification_id', 'notification_deliveries', ['notification_id']
    )
    op.create_index('ix_notification_deliveries_status', 'notification_deliveries', ['status'])
    op.create_table(
        'notification_preferences',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('user_id', sa.Integer(), nullable=False),
        sa.Column('kind', sa.String(length=50), nullable=False),
        sa.Column('channel', sa.String(length=20), nullable=False),
        sa.Column('enabled', sa.Boolean(), nullable=False),
        sa.ForeignKeyConstraint(
            ['user_id'], ['users.id'], name='fk_notification_preferences_user_id_users', ondelete='CASCADE'
        ),
        sa.PrimaryKeyConstraint('id', name='pk_notification_preferences'),
        sa.UniqueConstraint('user_id', 'kind', 'channel', name='uq_notification_preferences_choice'),
    )
    op.create_table(
        'quiet_hours',
        sa.Column('user_id', sa.Integer(), nullable=False),
        sa.Column('start', sa.String(length=5), nullable=False),
        sa.Column('end', sa.String(length=5), nullable=False),
        sa.Column('timezone', sa.String(length=64), nullable=False),
        sa.ForeignKeyConstraint(['user_id'], ['users.id'], name='fk_quiet_hours_user_id_users', ondelete='CASCADE'),
        sa.PrimaryKeyConstraint('user_id', name='pk_quiet_hours'),
    )
    op.create_table(
        'team_channel_settings',
        sa.Column('kind', sa.String(length=50), nullable=False),
        sa.Column('webhook', sa.Boolean(), nullable=False),
        sa.PrimaryKeyConstraint('kind', name='pk_team_channel_settings'),
    )


def downgrade() -> None:
    op.drop_table('team_channel_settings')
    op.drop_table('quiet_hours')
    op.drop_table('notification_preferences')
    op.drop_index('ix_notification_deliveries_status', table_name='notification_deliveries')
    op.drop_index('ix_notification_deliveries_notification_id', table_name='notification_deliveries')
    op.drop_table('notification_deliveries')
    with op.batch_alter_table('notifications') as batch:
        batch.drop_constraint('uq_notifications_user_id_dedupe_key', type_='unique')
        batch.drop_column('shown')
        batch.drop_column('dedupe_key')
