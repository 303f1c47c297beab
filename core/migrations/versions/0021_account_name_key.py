"""accounts.name_key: the company name without legal suffixes, case and punctuation, indexed, so capture and
imports find an existing account by name when the domain does not match (fuzzy company dedupe, issue 17)

Revision ID: 0021
Revises: 0020
"""
from __future__ import annotations

from alembic import op
import sqlalchemy as sa

import core.models  # noqa: F401


revision = '0021'
down_revision = '0020'
branch_labels = None
depends_on = None


def upgrade() -> None:
    from core.names import company_key

    with op.batch_alter_table('accounts', schema=None) as batch_op:
        batch_op.add_column(sa.Column('name_key', sa.String(length=200), nullable=True))
        batch_op.create_index(batch_op.f('ix_accounts_name_key'), ['name_key'], unique=False)
    accounts = sa.table('accounts', sa.column('id', sa.Integer), sa.column('name', sa.String), sa.column('name_key'))
    bind = op.get_bind()
    rows = bind.execute(sa.select(accounts.c.id, accounts.c.name)).all()
    keys = [{'row_id': i, 'key': company_key(name)[:200] or None} for i, name in rows]
    for start in range(0, len(keys), 1000):
        bind.execute(
            accounts.update().where(accounts.c.id == sa.bindparam('row_id')).values(name_key=sa.bindparam('key')),
            keys[start : start + 1000],
        )


def downgrade() -> None:
    with op.batch_alter_table('accounts', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_accounts_name_key'))
        batch_op.drop_column('name_key')
