"""channels: SMS and WhatsApp. Contacts get an E.164 number, a time zone and a preferred channel (and an email may
be empty: a contact who first wrote on WhatsApp); per-channel consent; inbound messages; the outbox records the
channel, the provider's message id and its delivery status.

Revision ID: 0024
Revises: 0023
"""
from __future__ import annotations

from alembic import op
import sqlalchemy as sa

import core.models


revision = '0024'
down_revision = '0023'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('contacts') as batch:
        batch.alter_column('email', existing_type=sa.String(length=320), nullable=True)
        batch.add_column(sa.Column('phone_e164', sa.String(length=16), nullable=True))
        batch.add_column(sa.Column('time_zone', sa.String(length=64), nullable=True))
        batch.add_column(sa.Column('preferred_channel', sa.String(length=10), nullable=True))
        batch.create_index('ix_contacts_phone_e164', ['phone_e164'])
    with op.batch_alter_table('outbox_messages') as batch:
        batch.add_column(sa.Column('channel', sa.String(length=10), server_default='email', nullable=False))
        batch.add_column(sa.Column('provider_message_id', sa.String(length=200), nullable=True))
        batch.add_column(sa.Column('delivery_status', sa.String(length=20), nullable=True))
        batch.add_column(sa.Column('delivery_updated_at', core.models.TZDateTime(timezone=True), nullable=True))
        batch.create_index('ix_outbox_messages_provider_message_id', ['provider_message_id'])
    op.create_table(
        'channel_consents',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('contact_id', sa.Integer(), nullable=False),
        sa.Column('channel', sa.String(length=10), nullable=False),
        sa.Column('status', sa.String(length=20), nullable=False),
        sa.Column('source', sa.String(length=200), nullable=False),
        sa.Column('recorded_at', core.models.TZDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(['contact_id'], ['contacts.id'], name='fk_channel_consents_contact_id_contacts'),
        sa.PrimaryKeyConstraint('id', name='pk_channel_consents'),
        sa.UniqueConstraint('contact_id', 'channel', name='uq_channel_consents_contact_channel'),
    )
    op.create_index('ix_channel_consents_contact_id', 'channel_consents', ['contact_id'])
    op.create_table(
        'channel_messages',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('channel', sa.String(length=10), nullable=False),
        sa.Column('provider_message_id', sa.String(length=200), nullable=False),
        sa.Column('from_number', sa.String(length=16), nullable=False),
        sa.Column('body', sa.Text(), nullable=False),
        sa.Column('contact_id', sa.Integer(), nullable=True),
        sa.Column('lead_id', sa.Integer(), nullable=True),
        sa.Column('received_at', core.models.TZDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(['contact_id'], ['contacts.id'], name='fk_channel_messages_contact_id_contacts'),
        sa.ForeignKeyConstraint(['lead_id'], ['leads.id'], name='fk_channel_messages_lead_id_leads'),
        sa.PrimaryKeyConstraint('id', name='pk_channel_messages'),
        sa.UniqueConstraint('channel', 'provider_message_id', name='uq_channel_messages_channel_provider_id'),
    )
    op.create_index('ix_channel_messages_lead_id', 'channel_messages', ['lead_id'])
    op.create_index(
        'ix_channel_messages_contact_id_received_at', 'channel_messages', ['contact_id', 'received_at']
    )


def downgrade() -> None:
    op.drop_table('channel_messages')
    op.drop_table('channel_consents')
    with op.batch_alter_table('outbox_messages') as batch:
        batch.drop_index('ix_outbox_messages_provider_message_id')
        batch.drop_column('delivery_updated_at')
        batch.drop_column('delivery_status')
        batch.drop_column('provider_message_id')
        batch.drop_column('channel')
    with op.batch_alter_table('contacts') as batch:
        batch.drop_index('ix_contacts_phone_e164')
        batch.drop_column('preferred_channel')
        batch.drop_column('time_zone')
        batch.drop_column('phone_e164')
        batch.alter_column('email', existing_type=sa.String(length=320), nullable=False)
