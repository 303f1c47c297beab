"""Documents an outbound email carries, read or rendered from their records at send time (never from the
draft's text): a proposal's stored PDF, an invoice rendered from the invoice record.

A review item's draft names them by reference ({"proposal_id": 3, "filename": "P-3-1.pdf"},
{"invoice_id": 7, "filename": "INV-2026-00007.pdf"}); an approved email that names a document nobody can
produce is not sent without it."""

from __future__ import annotations

import io
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from core.models import Deal, Invoice, Milestone, Proposal


def latin1(text: str) -> str:
    # The core Helvetica font needs no font files: characters outside Latin-1 become "?".
    return text.encode("latin-1", "replace").decode("latin-1")


QR_MM = 30  # printed size of the fiscal QR code: 30 mm scans from a phone at arm's length


def qr_png(payload: str) -> io.BytesIO:
    """The fiscal QR code as a PNG (segno: pure Python); error correction M, the usual 4-module quiet zone."""
    import segno

    out = io.BytesIO()
    segno.make_qr(payload, error="m").save(out, kind="png", scale=4, border=4)
    out.seek(0)
    return out


def invoice_pdf(session: Session, invoice: Invoice, seller: str) -> bytes:
    """The invoice as a one-page PDF: every figure from the invoice record (and the milestone it bills)."""
    milestone = session.scalar(select(Milestone).where(Milestone.invoice_id == invoice.id))
    deal = session.get(Deal, invoice.deal_id) if invoice.deal_id else None
    item = deal.name if deal else f"Invoice {invoice.number}"
    if milestone is not None:
        item += f": milestone {milestone.seq} '{milestone.name}' ({milestone.percent}%)"
    amount = f"{invoice.amount:,.2f}"
    from fpdf import FPDF  # 0.6 s to import (numpy, PIL): only when an invoice is rendered, not at API start

    pdf = FPDF()
    pdf.add_page()
    pdf.set_font("Helvetica", "B", 16)
    pdf.cell(0, 10, latin1(f"Invoice {invoice.number}"), new_x="LMARGIN", new_y="NEXT")
    pdf.set_font("Helvetica", size=10)
    for line in (
        f"From: {seller}",
        f"To: {invoice.account.name if invoice.account else ''}",
        f"Issued on: {invoice.issued_on:%d %b %Y}",
        f"Due on: {invoice.due_on:%d %b %Y}",
    ):
        pdf.cell(0, 6, latin1(line), new_x="LMARGIN", new_y="NEXT")
    pdf.ln(4)
    with pdf.table(col_widths=(140, 45), text_align=("LEFT", "RIGHT")) as table:
        table.row(["Item", f"Amount ({invoice.currency})"])
        table.row([latin1(item), amount])
        table.row([f"Total due ({invoice.currency})", amount])
    pdf.ln(4)
    if invoice.fiscal_receipt_number:  # e-invoicing: the control unit's receipt, as the tax authority issued it
        pdf.cell(0, 6, latin1(f"Control unit receipt: {invoice.fiscal_receipt_number}"), new_x="LMARGIN", new_y="NEXT")
        pdf.cell(0, 5, "Verify (scan the QR code):", new_x="LMARGIN", new_y="NEXT")
        if invoice.fiscal_qr:  # the code itself, then its payload as text under it
            pdf.image(qr_png(invoice.fiscal_qr), w=QR_MM, h=QR_MM)
        pdf.set_font("Helvetica", size=7)
        pdf.multi_cell(0, 4, latin1(invoice.fiscal_qr or ""), new_x="LMARGIN", new_y="NEXT")
        pdf.set_font("Helvetica", size=10)
        pdf.ln(2)
    if invoice.payment_link:
        pdf.multi_cell(0, 5, latin1(f"Pay at {invoice.payment_link} (reference {invoice.number})."))
    return bytes(pdf.output())


def attachments(session: Session, refs: list[dict[str, Any]], *, seller: str) -> list[tuple[str, bytes]]:
    """(filename, PDF bytes) for each reference; LookupError when a referenced record is missing or the
    reference is of an unknown kind (the approved email promised that document)."""
    found = []
    for ref in refs:
        if "proposal_id" in ref:
            proposal = session.get(Proposal, int(ref["proposal_id"]))
            if proposal is None:
                raise LookupError(f"attachment {ref.get('filename')}: proposal {ref['proposal_id']} not found")
            found.append((f"{proposal.number}.pdf", proposal.pdf))
        elif "invoice_id" in ref:
            invoice = session.get(Invoice, int(ref["invoice_id"]))
            if invoice is None:
                raise LookupError(f"attachment {ref.get('filename')}: invoice {ref['invoice_id']} not found")
            if invoice.fiscal_status in ("pending", "rejected"):  # billing.fiscal.BLOCKING
                raise LookupError(
                    f"attachment {ref.get('filename')}: invoice {invoice.number} is not accepted by the tax "
                    f"authority ({invoice.fiscal_status})"
                )
            found.append((f"{invoice.number}.pdf", invoice_pdf(session, invoice, seller)))
        else:
            raise LookupError(f"attachment {ref!r}: no proposal_id or invoice_id to read it from")
    return found
