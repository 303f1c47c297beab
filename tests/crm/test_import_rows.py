"""CSV lead imports: a malformed row is a rejected row with its reason, never a crash; quoted line breaks are
kept; the API's length limits apply to imported rows; nothing is half-written."""

from __future__ import annotations

from sqlalchemy import select

from core.db import session_scope
from core.models import Lead
from crm.imports import import_leads

HEADER = "external_id,email,first_name,company,message,consent_email,consent_call,outcome"


def test_extra_cells_long_fields_and_nul_are_rejected_rows_and_quoted_line_breaks_are_kept(settings, tmp_path):
    path = tmp_path / "webinar.csv"
    long_company = "X" * 201  # LeadCreate.company allows 200
    path.write_text(
        "\n".join(
            [
                HEADER,
                'r1,ana@northwind.example,Ana,Northwind,"First line\nsecond line",yes,no,',
                "r2,bo@cobalt.example,Bo,Cobalt,hello,yes,no,,surplus,cells",  # two cells too many
                f"r3,cy@long.example,Cy,{long_company},hello,yes,no,",
                "r4,di@nul.example,Di,Nul\x00Corp,hello,yes,no,",
                "r5,ed@fine.example,Ed,Fine Co,hello,yes,no,",
            ]
        )
        + "\n",
        encoding="utf-8",
    )
    with session_scope(settings) as session:
        report = import_leads(session, path, "generic")
    reasons = {r["row"]: r["reason"] for r in report.rejected}
    assert set(reasons) == {3, 4, 5}, reasons
    assert "2 more cell(s) than the header has columns" in reasons[3]
    assert "company is longer than 200 characters" in reasons[4]
    assert "company contains a NUL character" in reasons[5]
    with session_scope(settings) as session:
        leads = {lead.email: lead for lead in session.scalars(select(Lead))}
    assert set(leads) == {"ana@northwind.example", "ed@fine.example"}
    assert leads["ana@northwind.example"].message == "First line\nsecond line"
