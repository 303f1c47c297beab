"""api tokens: scopes and expiry; login throttles per account and source

Revision ID: 0014
Revises: 0013
"""
from __future__ import annotations

from alembic import op
import sqlalchemy as sa

import core.models


revision = '0014'
down_revision = '0013'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('api_tokens') as batch:
        batch.add_column(sa.Column('scopes', sa.JSON(), nullable=True))
        batch.add_column(sa.Column('expires_at', core.models.TZDateTime(timezone=True), nullable=True))
    op.create_table(
        'login_throttles',
        sa.Column('key', sa.String(length=64), nullable=False),
        sa.Column('failures', sa.Integer(), nullable=False),
        sa.Column('blocked_until', core.models.TZDateTime(timezone=True), nullable=True),
        sa.Column('last_failure_at', core.models.TZDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint('key', name='pk_login_throttles'),
    )
    op.create_index('ix_login_throttles_last_failure_at', 'login_throttles', ['last_failure_at'])


def downgrade() -> None:
    op.drop_index('ix_login_throttles_last_failure_at', table_name='login_throttles')
    op.drop_table('login_throttles')
    with op.batch_alter_table('api_tokens') as batch:
        batch.drop_column('expires_at')
        batch.drop_column('scopes')
