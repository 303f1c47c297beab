"""payments and fiscal: payment_events (Stripe / M-Pesa notices, held payments), invoices' fiscal receipt,
accounts' Stripe customer id

Revision ID: 0026
Revises: 0025
"""

from __future__ import annotations

from alembic import op
import sqlalchemy as sa

import core.models


revision = "0026"
down_revision = "0025"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "payment_events",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("provider", sa.String(length=20), nullable=False),
        sa.Column("event_id", sa.String(length=200), nullable=False),
        sa.Column("kind", sa.String(length=60), nullable=False),
        sa.Column("status", sa.String(length=20), nullable=False),
        sa.Column("invoice_id", sa.Integer(), nullable=True),
        sa.Column("payment_id", sa.Integer(), nullable=True),
        sa.Column("amount", sa.Numeric(precision=14, scale=2), nullable=True),
        sa.Column("currency", sa.String(length=3), nullable=True),
        sa.Column("reference", sa.String(length=200), nullable=True),
        sa.Column("detail", sa.JSON(), nullable=False),
        sa.Column("received_at", core.models.TZDateTime(timezone=True), nullable=False),
        sa.Column("resolved_at", core.models.TZDateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(["invoice_id"], ["invoices.id"], name="fk_payment_events_invoice_id_invoices"),
        sa.ForeignKeyConstraint(["payment_id"], ["payments.id"], name="fk_payment_events_payment_id_payments"),
        sa.PrimaryKeyConstraint("id", name="pk_payment_events"),
        sa.UniqueConstraint("provider", "event_id", name="uq_payment_events_provider_event"),
    )
    op.create_index("ix_payment_events_invoice_id", "payment_events", ["invoice_id"])
    op.create_index("ix_payment_events_received_at", "payment_events", ["received_at"])
    op.create_index("ix_payment_events_status", "payment_events", ["status"])
    with op.batch_alter_table("invoices", schema=None) as batch_op:
        batch_op.add_column(sa.Column("fiscal_status", sa.String(length=20), nullable=True))
        batch_op.add_column(sa.Column("fiscal_receipt_number", sa.String(length=100), nullable=True))
        batch_op.add_column(sa.Column("fiscal_qr", sa.String(length=1000), nullable=True))
        batch_op.add_column(sa.Column("fiscal_error", sa.String(length=1000), nullable=True))
        batch_op.add_column(sa.Column("fiscal_attempts", sa.Integer(), server_default="0", nullable=False))
        batch_op.create_index("ix_invoices_fiscal_status", ["fiscal_status"])
    with op.batch_alter_table("accounts", schema=None) as batch_op:
        batch_op.add_column(sa.Column("stripe_customer_id", sa.String(length=100), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("accounts", schema=None) as batch_op:
        batch_op.drop_column("stripe_customer_id")
    with op.batch_alter_table("invoices", schema=None) as batch_op:
        batch_op.drop_index("ix_invoices_fiscal_status")
        for column in ("fiscal_attempts", "fiscal_error", "fiscal_qr", "fiscal_receipt_number", "fiscal_status"):
            batch_op.drop_column(column)
    op.drop_index("ix_payment_events_status", table_name="payment_events")
    op.drop_index("ix_payment_events_received_at", table_name="payment_events")
    op.drop_index("ix_payment_events_invoice_id", table_name="payment_events")
    op.drop_table("payment_events")
