"""crm connectors: links to external CRM records, sync cursors, write-backs

Revision ID: 0025
Revises: 0024
"""
from __future__ import annotations

from alembic import op
import sqlalchemy as sa

import core.models


revision = '0025'
down_revision = '0024'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        'crm_links',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('source', sa.String(length=20), nullable=False),
        sa.Column('object_type', sa.String(length=20), nullable=False),
        sa.Column('remote_id', sa.String(length=64), nullable=False),
        sa.Column('local_id', sa.Integer(), nullable=False),
        sa.Column('remote_updated_at', core.models.TZDateTime(timezone=True), nullable=True),
        sa.Column('synced_values', sa.JSON(), nullable=False),
        sa.Column('synced_at', core.models.TZDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint('id', name='pk_crm_links'),
        sa.UniqueConstraint('source', 'object_type', 'remote_id', name='uq_crm_links_remote'),
        sa.UniqueConstraint('source', 'object_type', 'local_id', name='uq_crm_links_local'),
    )
    op.create_table(
        'crm_sync_states',
        sa.Column('source', sa.String(length=20), nullable=False),
        sa.Column('cursors', sa.JSON(), nullable=False),
        sa.Column('last_started_at', core.models.TZDateTime(timezone=True), nullable=True),
        sa.Column('last_success_at', core.models.TZDateTime(timezone=True), nullable=True),
        sa.Column('last_error_at', core.models.TZDateTime(timezone=True), nullable=True),
        sa.Column('last_error', sa.Text(), nullable=True),
        sa.Column('last_report', sa.JSON(), nullable=False),
        sa.PrimaryKeyConstraint('source', name='pk_crm_sync_states'),
    )
    op.create_table(
        'crm_writebacks',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('key', sa.String(length=200), nullable=False),
        sa.Column('source', sa.String(length=20), nullable=False),
        sa.Column('action', sa.String(length=30), nullable=False),
        sa.Column('payload', sa.JSON(), nullable=False),
        sa.Column('status', sa.String(length=20), nullable=False),
        sa.Column('remote_id', sa.String(length=64), nullable=True),
        sa.Column('attempts', sa.Integer(), nullable=False),
        sa.Column('last_error', sa.Text(), nullable=True),
        sa.Column('created_at', core.models.TZDateTime(timezone=True), nullable=False),
        sa.Column('done_at', core.models.TZDateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint('id', name='pk_crm_writebacks'),
        sa.UniqueConstraint('key', name='uq_crm_writebacks_key'),
    )


def downgrade() -> None:
    op.drop_table('crm_writebacks')
    op.drop_table('crm_sync_states')
    op.drop_table('crm_links')
