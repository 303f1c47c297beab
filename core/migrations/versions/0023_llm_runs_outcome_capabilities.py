"""llm: unknown usage as NULL, each run's outcome, mode, duration and rejections; llm_capabilities per endpoint+model

Revision ID: 0023
Revises: 0022
"""
from __future__ import annotations

from alembic import op
import sqlalchemy as sa

import core.models  # noqa: F401


revision = '0023'
down_revision = '0022'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('llm_runs', schema=None) as batch_op:
        batch_op.alter_column('prompt_tokens', existing_type=sa.Integer(), nullable=True)
        batch_op.alter_column('completion_tokens', existing_type=sa.Integer(), nullable=True)
        batch_op.alter_column('cost_usd', existing_type=sa.Numeric(precision=12, scale=6), nullable=True)
        batch_op.add_column(sa.Column('outcome', sa.String(length=20), nullable=True))
        batch_op.add_column(sa.Column('mode', sa.String(length=40), nullable=True))
        batch_op.add_column(sa.Column('duration_ms', sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column('rejections', sa.JSON(), nullable=True))

    op.create_table(
        'llm_capabilities',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('base_url', sa.String(length=500), nullable=False),
        sa.Column('model', sa.String(length=200), nullable=False),
        sa.Column('json_schema', sa.Boolean(), nullable=True),
        sa.Column('json_object', sa.Boolean(), nullable=True),
        sa.Column('tools', sa.Boolean(), nullable=True),
        sa.Column('details', sa.JSON(), nullable=True),
        sa.Column('checked_at', core.models.TZDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_llm_capabilities')),
        sa.UniqueConstraint('base_url', 'model', name=op.f('uq_llm_capabilities_base_url')),
    )


def downgrade() -> None:
    op.drop_table('llm_capabilities')
    with op.batch_alter_table('llm_runs', schema=None) as batch_op:
        batch_op.drop_column('rejections')
        batch_op.drop_column('duration_ms')
        batch_op.drop_column('mode')
        batch_op.drop_column('outcome')
    # Unknown usage was NULL: back to the old columns' 0 (they cannot hold unknown).
    op.execute("UPDATE llm_runs SET prompt_tokens = 0 WHERE prompt_tokens IS NULL")
    op.execute("UPDATE llm_runs SET completion_tokens = 0 WHERE completion_tokens IS NULL")
    op.execute("UPDATE llm_runs SET cost_usd = 0 WHERE cost_usd IS NULL")
    with op.batch_alter_table('llm_runs', schema=None) as batch_op:
        batch_op.alter_column('prompt_tokens', existing_type=sa.Integer(), nullable=False)
        batch_op.alter_column('completion_tokens', existing_type=sa.Integer(), nullable=False)
        batch_op.alter_column('cost_usd', existing_type=sa.Numeric(precision=12, scale=6), nullable=False)
