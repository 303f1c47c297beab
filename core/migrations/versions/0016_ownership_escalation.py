"""ownership: sales agents linked to users; SLA watch (warned, escalated) on review items; covering queue indexes

Revision ID: 0016
Revises: 0015
"""
from __future__ import annotations

from alembic import op
import sqlalchemy as sa

import core.models


revision = '0016'
down_revision = '0015'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('sales_agents') as batch:
        batch.add_column(sa.Column('user_id', sa.Integer(), nullable=True))
        batch.create_foreign_key(
            batch.f('fk_sales_agents_user_id_users'), 'users', ['user_id'], ['id'], ondelete='SET NULL'
        )
        batch.create_index(batch.f('ix_sales_agents_user_id'), ['user_id'])
    # Routing used to assign agents' names and a user with the same name worked those items: keep that link.
    op.execute(
        "UPDATE sales_agents SET user_id = (SELECT users.id FROM users WHERE users.name = sales_agents.name) "
        "WHERE user_id IS NULL"
    )
    with op.batch_alter_table('review_items') as batch:
        batch.add_column(sa.Column('sla_warned_at', core.models.TZDateTime(timezone=True), nullable=True))
        batch.add_column(sa.Column('escalated_at', core.models.TZDateTime(timezone=True), nullable=True))
        batch.add_column(sa.Column('escalated_from', sa.String(length=200), nullable=True))
    # Queue pages read these indexes alone: the deadline, the snooze filter, the grade/age tie-breaks, escalated.
    queue_order = ['sla_due_at', 'snoozed_until', 'grade', 'created_at', 'escalated_at']
    with op.batch_alter_table('review_items') as batch:
        batch.drop_index('ix_review_items_status_sla_due_at')
        batch.create_index('ix_review_items_status_sla_due_at', ['status', *queue_order])
    op.create_index('ix_review_items_status_queue_sla_due_at', 'review_items', ['status', 'queue', *queue_order])
    op.create_index('ix_review_items_status_assignee_sla_due_at', 'review_items', ['status', 'assignee', *queue_order])
    op.create_index(
        'ix_review_items_status_escalated_at_sla_due_at', 'review_items', ['status', 'escalated_at', 'sla_due_at']
    )


def downgrade() -> None:
    op.drop_index('ix_review_items_status_escalated_at_sla_due_at', table_name='review_items')
    op.drop_index('ix_review_items_status_assignee_sla_due_at', table_name='review_items')
    op.drop_index('ix_review_items_status_queue_sla_due_at', table_name='review_items')
    with op.batch_alter_table('review_items') as batch:
        batch.drop_index('ix_review_items_status_sla_due_at')
        batch.create_index('ix_review_items_status_sla_due_at', ['status', 'sla_due_at'])
    with op.batch_alter_table('review_items') as batch:
        batch.drop_column('escalated_from')
        batch.drop_column('escalated_at')
        batch.drop_column('sla_warned_at')
    with op.batch_alter_table('sales_agents') as batch:
        batch.drop_index(batch.f('ix_sales_agents_user_id'))
        batch.drop_constraint(batch.f('fk_sales_agents_user_id_users'), type_='foreignkey')
        batch.drop_column('user_id')
