"""scoring_models.domain (the population a model learned from) and artifact_sha256 (checked before loading);
existing artifacts get their digest now

Revision ID: 0022
Revises: 0021
"""
from __future__ import annotations

import hashlib

from alembic import op
import sqlalchemy as sa

import core.models  # noqa: F401


revision = '0022'
down_revision = '0021'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('scoring_models', schema=None) as batch_op:
        batch_op.add_column(sa.Column('domain', sa.JSON(), nullable=True))
        batch_op.add_column(sa.Column('artifact_sha256', sa.String(length=64), nullable=True))
    models = sa.table(
        'scoring_models',
        sa.column('id', sa.Integer()),
        sa.column('artifact', sa.LargeBinary()),
        sa.column('artifact_sha256', sa.String(64)),
    )
    bind = op.get_bind()
    for row_id, artifact in bind.execute(sa.select(models.c.id, models.c.artifact)).all():
        bind.execute(
            models.update()
            .where(models.c.id == row_id)
            .values(artifact_sha256=hashlib.sha256(bytes(artifact)).hexdigest())
        )


def downgrade() -> None:
    with op.batch_alter_table('scoring_models', schema=None) as batch_op:
        batch_op.drop_column('artifact_sha256')
        batch_op.drop_column('domain')
