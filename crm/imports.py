"""CSV imports of real data: leads (X Education or generic) and a CRM (Maven).

Each row is validated on its own; rejected rows are reported with their reasons and the rest is
written in the caller's one transaction (with `strict`, any rejection commits nothing). Imported
records carry (external_source, external_id), so running an import again updates, never duplicates.
Outcomes become closed deals; X Education's Do Not Email / Do Not Call become consent.

Lead files and CRM exports, as the CLI imports them (import_leads_in_batches, import_crm_in_batches): the
whole file is validated first, reading the database in a read-only session (with `strict`, a rejection stops
the import before anything is written); then the rows are written in short transactions of
REVLOOP_IMPORT_BATCH_ROWS rows, so a long import never holds the database's write lock for long. An
interrupted import leaves whole batches; running it again
resumes (rows already written are found by their external id and count as unchanged).
"""

from __future__ import annotations

import csv
import datetime as dt
import functools
import io
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any

from email_validator import EmailNotValidError, validate_email
from sqlalchemy import select
from sqlalchemy.orm import Session

from core import audit
from core.enums import DealOutcome, DealStage, LeadStatus
from core.errors import InvalidInput
from core.models import Account, Company, Deal, Lead, Product, SalesAgent, utcnow
from core.settings import Settings
from crm.records import link_lead_to_crm
from crm.sales_team import link_matching_users
from scoring.features import capture_snapshot
from tools.enrichment import email_domain, is_free_mail

Progress = Callable[[int], None]

LEAD_FORMATS = ("x-education", "generic")
COMPANY_FORMATS = ("fortune1000", "generic")
CRM_FORMATS = ("maven",)


@dataclass
class ImportReport:
    kind: str
    format: str
    path: str
    rows: int = 0
    created: dict[str, int] = field(default_factory=dict)
    updated: dict[str, int] = field(default_factory=dict)
    unchanged: dict[str, int] = field(default_factory=dict)
    rejected: list[dict[str, Any]] = field(default_factory=list)

    def count(self, bucket: str, entity: str) -> None:
        counts = getattr(self, bucket)
        counts[entity] = counts.get(entity, 0) + 1

    def reject(self, file: str, row: int, reason: str) -> None:
        self.rejected.append({"file": file, "row": row, "reason": reason})

    def merge(self, part: ImportReport) -> None:
        """Add the counts and rejections of one written batch."""
        for bucket in ("created", "updated", "unchanged"):
            for entity, n in getattr(part, bucket).items():
                counts = getattr(self, bucket)
                counts[entity] = counts.get(entity, 0) + n
        self.rejected.extend(part.rejected)

    def as_dict(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "format": self.format,
            "path": self.path,
            "rows": self.rows,
            "created": self.created,
            "updated": self.updated,
            "unchanged": self.unchanged,
            "rejected": len(self.rejected),
            "rejections": self.rejected,
        }


LEAD_TEXT_FIELDS = ("email", "first_name", "last_name", "company", "title", "phone", "website", "message", "source")


class RowError(ValueError):
    """A row that cannot be imported; the message is the reason shown in the report."""


def read_csv(path: Path) -> tuple[list[str], list[dict[str, str]]]:
    """Rows as dicts; the dialect (delimiter, quoting) is sniffed from the first lines."""
    try:
        text = path.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as exc:
        raise InvalidInput(f"cannot read {path}: {exc}") from exc
    try:
        dialect: Any = csv.Sniffer().sniff(text[:20_000], delimiters=",;\t|")
    except csv.Error:
        dialect = csv.excel
    # newline="": a quoted field may hold line breaks, and they are kept (splitting the text into lines lost them).
    reader = csv.DictReader(io.StringIO(text, newline=""), dialect=dialect)
    if not reader.fieldnames:
        raise InvalidInput(f"{path} has no header row")
    rows = []
    for row in reader:
        extra = row.pop(None, None)  # cells past the header's columns: the row is rejected, not the file
        cleaned = {(k or "").strip(): (v or "").strip() for k, v in row.items()}
        if extra:
            cleaned[EXTRA_CELLS] = str(len(extra))
        rows.append(cleaned)
    return [h.strip() for h in reader.fieldnames], rows


EXTRA_CELLS = "\x00extra_cells"  # a key no header can have: marks a row with more cells than columns


def check_row_shape(row: dict[str, str]) -> None:
    if EXTRA_CELLS in row:
        raise RowError(f"{row[EXTRA_CELLS]} more cell(s) than the header has columns (a stray delimiter or quote?)")


@functools.cache  # the schema is fixed: read it once, not once per imported row
def _api_limits() -> dict[str, int]:
    """The API's length limit of each lead field (LeadCreate), so an imported row obeys the same rules."""
    from core.schemas import LeadCreate

    limits = {}
    for name, prop in LeadCreate.model_json_schema()["properties"].items():
        found = [prop.get("maxLength"), *(p.get("maxLength") for p in prop.get("anyOf", []))]
        if any(found):
            limits[name] = max(v for v in found if v)
    return limits


def check_lead_fields(fields: dict[str, Any]) -> None:
    """Length limits and NUL characters, as the API refuses them (a 422 there, a rejected row here)."""
    limits = _api_limits()
    for name, value in fields.items():
        if not isinstance(value, str):
            continue
        if "\x00" in value:
            raise RowError(f"{name} contains a NUL character")
        if name in limits and len(value) > limits[name]:
            raise RowError(f"{name} is longer than {limits[name]} characters (the API's limit)")


def count_rows(path: Path) -> int:
    return max(0, sum(1 for _ in path.open(encoding="utf-8-sig", errors="replace")) - 1)


def _require_columns(path: Path, header: list[str], needed: list[str]) -> None:
    missing = [c for c in needed if c not in header]
    if missing:
        raise InvalidInput(f"{path.name} lacks the column(s) {', '.join(missing)}", details={"missing": missing})


def _number(value: str, column: str) -> float | None:
    if value == "":
        return None
    try:
        return float(value)
    except ValueError:
        raise RowError(f"{column} is not a number: {value!r}") from None


def _yes_no(value: str, column: str) -> bool:
    lowered = value.lower()
    if lowered in ("yes", "y", "true", "1"):
        return True
    if lowered in ("no", "n", "false", "0", ""):
        return False
    raise RowError(f"{column} must be Yes or No, got {value!r}")


def _date(value: str, column: str) -> dt.date | None:
    if value == "":
        return None
    try:
        return dt.date.fromisoformat(value)
    except ValueError:
        raise RowError(f"{column} is not a date (YYYY-MM-DD): {value!r}") from None


def _closed_at(day: dt.date | None) -> dt.datetime | None:
    return None if day is None else dt.datetime.combine(day, dt.time(), tzinfo=dt.UTC)


def _each(report: ImportReport, file: str, rows: list[dict[str, str]], progress: Progress | None, handle) -> None:
    for number, row in enumerate(rows, start=2):  # row 1 is the header
        report.rows += 1
        try:
            check_row_shape(row)
            handle(number, row)
        except RowError as exc:
            report.reject(file, number, str(exc))
        if progress:
            progress(1)


def _set_fields(row: Any, values: dict[str, Any]) -> bool:
    changed = False
    for name, value in values.items():
        if getattr(row, name) != value:
            setattr(row, name, value)
            changed = True
    return changed


def _upsert_deal(session: Session, report: ImportReport, existing: Deal | None, values: dict[str, Any]) -> Deal:
    if existing is None:
        deal = Deal(**values)
        session.add(deal)
        report.count("created", "deals")
        return deal
    report.count("updated" if _set_fields(existing, values) else "unchanged", "deals")
    return existing


# --- X Education ----------------------------------------------------------------------------------

XED_SOURCE = "x-education"
XED_NUMERIC = ("TotalVisits", "Total Time Spent on Website", "Page Views Per Visit")
XED_REQUIRED = ("Prospect ID", "Converted", "Lead Source", "Do Not Email", "Do Not Call", *XED_NUMERIC)


def x_education_record(row: dict[str, str], passthrough: list[str]) -> dict[str, Any]:
    """One X Education row -> its fields, consent, attributes and outcome; RowError names what is wrong."""
    pid = row["Prospect ID"]
    if not pid:
        raise RowError("Prospect ID is empty")
    if row["Converted"] not in ("0", "1"):
        raise RowError(f"Converted must be 0 or 1, got {row['Converted']!r}")
    custom: dict[str, Any] = {}
    for column in passthrough:
        value = row.get(column, "")
        if column in XED_NUMERIC:
            custom[column] = _number(value, column)
        else:
            custom[column] = None if value in ("", "Select") else value  # "Select" means not chosen
    return {
        "pid": pid,
        "custom": custom,
        "source": custom.get("Lead Source"),
        "consent_email": not _yes_no(row["Do Not Email"], "Do Not Email"),
        "consent_call": not _yes_no(row["Do Not Call"], "Do Not Call"),
        "won": row["Converted"] == "1",
    }


def _x_education_columns(path: Path) -> tuple[list[str], list[dict[str, str]], list[str]]:
    header, rows = read_csv(path)
    _require_columns(path, header, list(XED_REQUIRED))
    passthrough = [c for c in header if c not in ("Prospect ID", "Converted", "Do Not Email", "Do Not Call")]
    return header, rows, passthrough


def x_education_snapshot(record: dict[str, Any]) -> dict[str, Any]:
    return capture_snapshot(
        source=record["source"],
        consent_email=record["consent_email"],
        consent_call=record["consent_call"],
        free_mail=None,
        phone=None,
        company=None,
        title=None,
        custom=record["custom"],
    )


def read_labelled_records(path: Path, fmt: str) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """A labelled lead file as (records with source, consent, custom and won; rejections), read only."""
    if fmt != "x-education":
        raise InvalidInput(f"--format must be x-education for a labelled dataset, got {fmt!r}")
    _, rows, passthrough = _x_education_columns(path)
    records, rejected = [], []
    for number, row in enumerate(rows, start=2):
        try:
            check_row_shape(row)
            records.append(x_education_record(row, passthrough))
        except RowError as exc:
            rejected.append({"file": path.name, "row": number, "reason": str(exc)})
    return records, rejected


def read_labelled(path: Path, fmt: str) -> tuple[list[dict[str, Any]], list[int], list[dict[str, Any]]]:
    """A labelled lead file as (capture snapshots, won labels, rejections), without touching the database."""
    records, rejected = read_labelled_records(path, fmt)
    return [x_education_snapshot(r) for r in records], [int(r["won"]) for r in records], rejected


def _plan_x_education(path: Path, plan: LeadImportPlan) -> None:
    _, rows, passthrough = _x_education_columns(path)
    seen: dict[str, int] = {}

    def check(number: int, row: dict[str, str]) -> None:
        record = x_education_record(row, passthrough)
        pid = record["pid"]
        if pid in seen:
            raise RowError(f"Prospect ID {pid} repeats row {seen[pid]}")
        seen[pid] = number
        plan.rows.append({**record, "key": pid, "number": number, "lead_number": row.get("Lead Number")})

    _each(plan.report, path.name, rows, None, check)


def _write_x_education(session: Session, plan: LeadImportPlan, batch: list[dict[str, Any]], report: ImportReport):
    keys = [r["key"] for r in batch]
    leads = {
        lead.external_id: lead
        for lead in session.scalars(select(Lead).where(Lead.external_source == XED_SOURCE, Lead.external_id.in_(keys)))
    }
    deals = {
        d.external_id: d
        for d in session.scalars(select(Deal).where(Deal.external_source == XED_SOURCE, Deal.external_id.in_(keys)))
    }
    for record in batch:
        pid, custom, source = record["pid"], record["custom"], record["source"]
        consent_email, consent_call = record["consent_email"], record["consent_call"]
        lead = leads.get(pid)
        if lead is None:
            lead = Lead(
                external_source=XED_SOURCE,
                external_id=pid,
                email=None,
                source=source,
                consent_email=consent_email,
                consent_call=consent_call,
                custom=custom,
                status=LeadStatus.IMPORTED,
                captured_at=plan.imported_at,
                capture_features=x_education_snapshot(record),
            )
            session.add(lead)
            leads[pid] = lead
            report.count("created", "leads")
        else:
            values = {"source": source, "consent_email": consent_email, "consent_call": consent_call, "custom": custom}
            report.count("updated" if _set_fields(lead, values) else "unchanged", "leads")
        won = record["won"]
        _upsert_deal(
            session,
            report,
            deals.get(pid),
            {
                "name": f"X Education enrolment {record['lead_number'] or pid}",
                "lead": lead,
                "stage": DealStage.CLOSED,
                "outcome": DealOutcome.WON if won else DealOutcome.LOST,
                "external_source": XED_SOURCE,
                "external_id": pid,
            },
        )


# --- generic leads --------------------------------------------------------------------------------

GENERIC_FIELDS = (
    "email",
    "first_name",
    "last_name",
    "company",
    "title",
    "phone",
    "website",
    "message",
    "source",
    "consent_email",
    "consent_call",
    "external_id",
    "outcome",
    "captured_at",
)


def parse_mapping(pairs: list[str]) -> dict[str, str]:
    """['E-mail=email', 'Org=company'] -> {'E-mail': 'email', 'Org': 'company'}; unknown targets are errors."""
    mapping: dict[str, str] = {}
    for pair in pairs:
        column, sep, target = pair.partition("=")
        if not sep or not column.strip() or not target.strip():
            raise InvalidInput(f"--map expects column=field, got {pair!r}")
        target = target.strip()
        if target not in GENERIC_FIELDS and not target.startswith("custom."):
            raise InvalidInput(
                f"--map {pair!r}: unknown field {target!r}; use one of {', '.join(GENERIC_FIELDS)} or custom.NAME"
            )
        mapping[column.strip()] = target
    return mapping


def lead_source_key(path: Path, fmt: str) -> str:
    """The external_source an import gives its leads: one per format, and per file for generic files."""
    return XED_SOURCE if fmt == "x-education" else f"generic:{path.stem}"


def _plan_generic(session: Session, path: Path, plan: LeadImportPlan, mapping: dict[str, str]) -> None:
    header, rows = read_csv(path)
    unknown = [c for c in mapping if c not in header]
    if unknown:
        raise InvalidInput(f"--map names column(s) not in {path.name}: {', '.join(unknown)}")
    fields = {
        column: mapping.get(column, column if column in GENERIC_FIELDS else f"custom.{column}") for column in header
    }
    if "email" not in fields.values() and "external_id" not in fields.values():
        raise InvalidInput(f"{path.name} needs an email or an external_id column (use --map COLUMN=email)")
    seen: dict[str, int] = {}
    emails: dict[str, int] = {}
    outcomes = {
        "won": DealOutcome.WON,
        "1": DealOutcome.WON,
        "converted": DealOutcome.WON,
        "lost": DealOutcome.LOST,
        "0": DealOutcome.LOST,
        "": None,
    }

    def check(number: int, row: dict[str, str]) -> None:
        values: dict[str, Any] = {}
        custom: dict[str, Any] = {}
        for column, target in fields.items():
            raw = row.get(column, "")
            if target.startswith("custom."):
                if raw != "":
                    custom[target.removeprefix("custom.")] = raw
            else:
                values[target] = raw
        email = values.get("email") or None
        if email:
            try:
                email = validate_email(email, check_deliverability=False).normalized.lower()
            except EmailNotValidError as exc:
                raise RowError(f"email {email!r} is not valid: {exc}") from None
        key = values.get("external_id") or email
        if not key:
            raise RowError("neither email nor external_id is given")
        if key in seen:
            raise RowError(f"{key} repeats row {seen[key]}")
        seen[key] = number
        outcome = (values.get("outcome") or "").lower()
        if outcome not in outcomes:
            raise RowError(f"outcome must be won or lost, got {values['outcome']!r}")
        consent_email = _yes_no(values.get("consent_email") or "no", "consent_email")
        consent_call = _yes_no(values.get("consent_call") or "no", "consent_call")
        captured_day = _date(values.get("captured_at", ""), "captured_at")
        check_lead_fields({k: v for k, v in values.items() if k in LEAD_TEXT_FIELDS})
        if email and email in emails:
            raise RowError(f"email {email} repeats row {emails[email]}")
        if email:
            emails[email] = number
        plan.rows.append(
            {
                "key": key,
                "number": number,
                "email": email,
                "outcome": outcomes[outcome],
                "captured_day": captured_day,
                "custom": custom,
                "fields": {
                    "email": email,
                    "first_name": values.get("first_name") or None,
                    "last_name": values.get("last_name") or None,
                    "company": values.get("company") or None,
                    "title": values.get("title") or None,
                    "phone": values.get("phone") or None,
                    "website": values.get("website") or None,
                    "message": values.get("message") or None,
                    "source": values.get("source") or None,
                    "consent_email": consent_email,
                    "consent_call": consent_call,
                    "custom": custom,
                },
            }
        )

    _each(plan.report, path.name, rows, None, check)
    # A new lead may not take an email that belongs to another lead (checked for the whole file up front).
    existing: set[str] = set()
    for chunk in _chunks([r["key"] for r in plan.rows]):
        existing.update(
            session.scalars(
                select(Lead.external_id).where(Lead.external_source == plan.source, Lead.external_id.in_(chunk))
            ).all()
        )
    new_emails = [r["email"] for r in plan.rows if r["email"] and r["key"] not in existing]
    owners: dict[str, int] = {}
    for chunk in _chunks(new_emails):
        owners.update(
            {
                email: lead_id
                for email, lead_id in session.execute(select(Lead.email, Lead.id).where(Lead.email.in_(chunk)))
            }
        )
    kept = []
    for r in plan.rows:
        if r["email"] in owners and r["key"] not in existing:
            plan.report.reject(
                path.name, r["number"], f"email {r['email']} already belongs to lead {owners[r['email']]}"
            )
        else:
            kept.append(r)
    plan.rows = kept
    plan.report.rejected.sort(key=lambda x: x["row"])


def _write_generic(session: Session, plan: LeadImportPlan, batch: list[dict[str, Any]], report: ImportReport):
    keys = [r["key"] for r in batch]
    leads = {
        lead.external_id: lead
        for lead in session.scalars(select(Lead).where(Lead.external_source == plan.source, Lead.external_id.in_(keys)))
    }
    deals = {
        d.external_id: d
        for d in session.scalars(select(Deal).where(Deal.external_source == plan.source, Deal.external_id.in_(keys)))
    }
    for record in batch:
        key, email, fields_values = record["key"], record["email"], record["fields"]
        consent_email, consent_call = fields_values["consent_email"], fields_values["consent_call"]
        lead = leads.get(key)
        if lead is None and email:
            other = session.scalar(select(Lead).where(Lead.email == email))
            if other is not None:  # taken since the file was validated
                report.reject(
                    Path(plan.path).name, record["number"], f"email {email} already belongs to lead {other.id}"
                )
                continue
        if lead is None:
            lead = Lead(
                external_source=plan.source,
                external_id=key,
                status=LeadStatus.IMPORTED,
                captured_at=_closed_at(record["captured_day"]) or plan.imported_at,
                capture_features=capture_snapshot(
                    source=fields_values["source"],
                    consent_email=consent_email,
                    consent_call=consent_call,
                    free_mail=is_free_mail(email_domain(email)) if email else None,
                    phone=fields_values["phone"],
                    company=fields_values["company"],
                    title=fields_values["title"],
                    custom=record["custom"],
                ),
                **fields_values,
            )
            session.add(lead)
            session.flush()
            if email:
                link_lead_to_crm(session, lead, actor="import")
            leads[key] = lead
            report.count("created", "leads")
        else:
            report.count("updated" if _set_fields(lead, fields_values) else "unchanged", "leads")
        if record["outcome"]:
            _upsert_deal(
                session,
                report,
                deals.get(key),
                {
                    "name": f"{fields_values['company'] or key} ({Path(plan.path).stem})",
                    "lead": lead,
                    "account_id": lead.account_id,
                    "stage": DealStage.CLOSED,
                    "outcome": record["outcome"],
                    "external_source": plan.source,
                    "external_id": key,
                },
            )


@dataclass
class LeadImportPlan:
    """A lead file, validated: the rows to write (in file order) and the report so far (rows, rejections)."""

    fmt: str
    path: str
    source: str
    report: ImportReport
    imported_at: dt.datetime  # capture time of rows without one: one time for the whole import, not a fake order
    rows: list[dict[str, Any]] = field(default_factory=list)


def plan_lead_import(session: Session, path: Path, fmt: str, mapping: dict[str, str] | None = None) -> LeadImportPlan:
    """Validate a whole lead file; reads the database only (a read-only session will do)."""
    if fmt not in LEAD_FORMATS:
        raise InvalidInput(f"--format must be one of {', '.join(LEAD_FORMATS)}, got {fmt!r}")
    if mapping and fmt != "generic":
        raise InvalidInput("--map applies to --format generic only")
    report = ImportReport(kind="leads", format=fmt, path=str(path))
    plan = LeadImportPlan(fmt, str(path), lead_source_key(path, fmt), report, utcnow())
    if fmt == "x-education":
        _plan_x_education(path, plan)
    else:
        _plan_generic(session, path, plan, mapping or {})
    return plan


def write_lead_batch(session: Session, plan: LeadImportPlan, batch: list[dict[str, Any]]) -> ImportReport:
    """Write validated rows (one batch); the counts of this batch, to merge into the plan's report."""
    part = ImportReport(kind="leads", format=plan.fmt, path=plan.path)
    (_write_x_education if plan.fmt == "x-education" else _write_generic)(session, plan, batch, part)
    session.flush()
    return part


def _chunks(values: list[Any], size: int = 500) -> Iterator[list[Any]]:
    for start in range(0, len(values), size):
        yield values[start : start + size]


# Runs one unit of work: the caller's session (one transaction), or a short retried transaction per call.
UnitOfWork = Callable[[Callable[[Session], Any]], Any]


def _in_batches(settings: Settings) -> UnitOfWork:
    from core.db import run_in_transaction

    return lambda work: run_in_transaction(settings, work)


def _write_leads(
    plan: LeadImportPlan, unit: UnitOfWork, *, strict: bool, progress: Progress | None, size: int, actor: str
) -> ImportReport:
    """Write a validated lead plan batch by batch, each batch one `unit` of work, then audit it."""
    _refuse_rejected(plan.report, strict)
    if progress:
        progress(len(plan.report.rejected))
    for batch in _chunks(plan.rows, size):
        plan.report.merge(unit(lambda session, batch=batch: write_lead_batch(session, plan, batch)))
        if progress:
            progress(len(batch))
    plan.report.rejected.sort(key=lambda x: x["row"])
    # imported_at is the capture time given to rows without a date of their own: KPIs leave those leads out of
    # their window (review/kpis.py), since it is the day of the import, not of the enquiry.
    unit(lambda session: _audit_import(session, plan.report, actor, imported_at=plan.imported_at))
    return plan.report


def import_leads(
    session: Session,
    path: Path,
    fmt: str,
    *,
    mapping: dict[str, str] | None = None,
    strict: bool = False,
    progress: Progress | None = None,
    actor: str = "cli",
) -> ImportReport:
    """Import a lead file in the caller's one unit of work; the caller commits. With strict, any rejected row
    aborts the whole import. (The CLI uses import_leads_in_batches.)"""
    plan = plan_lead_import(session, path, fmt, mapping)
    return _write_leads(plan, lambda work: work(session), strict=strict, progress=progress, size=500, actor=actor)


def import_leads_in_batches(
    settings: Settings,
    path: Path,
    fmt: str,
    *,
    mapping: dict[str, str] | None = None,
    strict: bool = False,
    progress: Progress | None = None,
    actor: str = "cli",
    batch_rows: int | None = None,
) -> ImportReport:
    """Import a lead file without holding the database's write lock for long: validate the whole file (reading
    in a read-only session; with strict, any rejected row stops the import before anything is written), then
    write REVLOOP_IMPORT_BATCH_ROWS rows per short transaction (retried when the database is busy). Safe to
    run again after an interruption: written rows are found by their external id."""
    from core.db import session_scope

    with session_scope(settings, readonly=True) as session:
        plan = plan_lead_import(session, path, fmt, mapping)
    size = batch_rows or settings.import_batch_rows
    return _write_leads(plan, _in_batches(settings), strict=strict, progress=progress, size=size, actor=actor)


# --- Maven CRM ------------------------------------------------------------------------------------

MAVEN_SOURCE = "maven"
MAVEN_FILES = ("accounts.csv", "products.csv", "sales_teams.csv", "sales_pipeline.csv")
MAVEN_STAGES = {
    "Won": (DealStage.CLOSED, DealOutcome.WON),
    "Lost": (DealStage.CLOSED, DealOutcome.LOST),
    "Engaging": (DealStage.ENGAGING, None),
    "Prospecting": (DealStage.PROSPECTING, None),
}
SECTOR_FIXES = {"technolgy": "technology"}  # a typo in the published data


def _product_key(name: str) -> str:
    return name.replace(" ", "").lower()  # the pipeline says "GTXPro", products.csv says "GTX Pro"


def maven_row_count(folder: Path) -> int:
    return sum(count_rows(folder / name) for name in MAVEN_FILES if (folder / name).exists())


@dataclass
class CrmImportPlan:
    """A CRM export, validated: the rows to write per entity (values by column) and the report so far."""

    report: ImportReport
    accounts: list[dict[str, Any]] = field(default_factory=list)
    products: list[dict[str, Any]] = field(default_factory=list)
    agents: list[dict[str, Any]] = field(default_factory=list)
    deals: list[dict[str, Any]] = field(default_factory=list)


def plan_crm_import(session: Session, folder: Path, fmt: str) -> CrmImportPlan:
    """Validate a whole CRM export folder; reads the database only (a read-only session will do)."""
    if fmt not in CRM_FORMATS:
        raise InvalidInput(f"--format must be one of {', '.join(CRM_FORMATS)}, got {fmt!r}")
    missing = [name for name in MAVEN_FILES if not (folder / name).is_file()]
    if missing:
        raise InvalidInput(f"{folder} lacks {', '.join(missing)}")
    plan = CrmImportPlan(ImportReport(kind="crm", format=fmt, path=str(folder)))
    report = plan.report

    account_names = set(
        session.scalars(select(Account.external_id).where(Account.external_source == MAVEN_SOURCE)).all()
    )
    header, rows = read_csv(folder / "accounts.csv")
    _require_columns(folder / "accounts.csv", header, ["account", "sector", "revenue", "employees"])

    def account_row(number: int, row: dict[str, str]) -> None:
        name = row["account"]
        if not name:
            raise RowError("account name is empty")
        employees = _number(row["employees"], "employees")
        revenue = _number(row["revenue"], "revenue")
        year = _number(row.get("year_established", ""), "year_established")
        sector = SECTOR_FIXES.get(row["sector"].lower(), row["sector"].lower()) or None
        account_names.add(name)
        plan.accounts.append(
            {
                "name": name,
                "industry": sector,
                "employees": int(employees) if employees is not None else None,
                "revenue_musd": Decimal(str(revenue)) if revenue is not None else None,
                "year_established": int(year) if year is not None else None,
                "country": row.get("office_location") or None,
                "subsidiary_of": row.get("subsidiary_of") or None,
            }
        )

    _each(report, "accounts.csv", rows, None, account_row)

    product_names = {_product_key(name): name for name in session.scalars(select(Product.name)).all()}
    header, rows = read_csv(folder / "products.csv")
    _require_columns(folder / "products.csv", header, ["product", "sales_price"])

    def product_row(number: int, row: dict[str, str]) -> None:
        if not row["product"]:
            raise RowError("product name is empty")
        try:
            price = Decimal(row["sales_price"])
        except InvalidOperation:
            raise RowError(f"sales_price is not a number: {row['sales_price']!r}") from None
        product_names[_product_key(row["product"])] = row["product"]  # the write renames a matching product
        plan.products.append({"name": row["product"], "series": row.get("series") or None, "price": price})

    _each(report, "products.csv", rows, None, product_row)

    agent_names = set(session.scalars(select(SalesAgent.name)).all())
    header, rows = read_csv(folder / "sales_teams.csv")
    _require_columns(folder / "sales_teams.csv", header, ["sales_agent", "manager", "regional_office"])

    def agent_row(number: int, row: dict[str, str]) -> None:
        if not row["sales_agent"]:
            raise RowError("sales_agent is empty")
        agent_names.add(row["sales_agent"])
        plan.agents.append(
            {
                "name": row["sales_agent"],
                "manager": row["manager"] or None,
                "regional_office": row["regional_office"] or None,
            }
        )

    _each(report, "sales_teams.csv", rows, None, agent_row)

    header, rows = read_csv(folder / "sales_pipeline.csv")
    _require_columns(
        folder / "sales_pipeline.csv",
        header,
        [
            "opportunity_id",
            "sales_agent",
            "product",
            "account",
            "deal_stage",
            "engage_date",
            "close_date",
            "close_value",
        ],
    )
    seen: dict[str, int] = {}

    def deal_row(number: int, row: dict[str, str]) -> None:
        oid = row["opportunity_id"]
        if not oid:
            raise RowError("opportunity_id is empty")
        if oid in seen:
            raise RowError(f"opportunity_id {oid} repeats row {seen[oid]}")
        seen[oid] = number
        if row["deal_stage"] not in MAVEN_STAGES:
            raise RowError(f"deal_stage must be one of {', '.join(MAVEN_STAGES)}, got {row['deal_stage']!r}")
        stage, outcome = MAVEN_STAGES[row["deal_stage"]]
        product = product_names.get(_product_key(row["product"]))
        if product is None:
            raise RowError(f"unknown product {row['product']!r}")
        if row["sales_agent"] not in agent_names:
            raise RowError(f"unknown sales_agent {row['sales_agent']!r}")
        if row["account"] and row["account"] not in account_names:
            raise RowError(f"unknown account {row['account']!r}")
        engaged = _date(row["engage_date"], "engage_date")
        closed = _date(row["close_date"], "close_date")
        if outcome and closed is None:
            raise RowError(f"a {row['deal_stage']} deal needs a close_date")
        value = _number(row["close_value"], "close_value")
        plan.deals.append(
            {
                "oid": oid,
                "product": _product_key(row["product"]),
                "agent": row["sales_agent"],
                "account": row["account"] or None,
                "values": {
                    "name": f"{row['account'] or 'Unassigned'} - {product}",
                    "stage": stage,
                    "outcome": outcome,
                    # close_value is 0 on lost deals: that is no amount, not a zero-price sale.
                    "amount": Decimal(str(value)) if value and outcome != DealOutcome.LOST else None,
                    "engaged_at": engaged,
                    "expected_close": closed,
                    "closed_at": _closed_at(closed) if outcome else None,
                    "external_source": MAVEN_SOURCE,
                    "external_id": oid,
                },
            }
        )

    _each(report, "sales_pipeline.csv", rows, None, deal_row)
    return plan


def write_crm_records(session: Session, plan: CrmImportPlan) -> ImportReport:
    """Write the accounts, products and sales agents of a validated export (few rows: one unit of work)."""
    part = ImportReport(kind="crm", format=plan.report.format, path=plan.report.path)
    accounts = {
        a.external_id: a for a in session.scalars(select(Account).where(Account.external_source == MAVEN_SOURCE))
    }
    for values in plan.accounts:
        existing = accounts.get(values["name"])
        if existing is None:
            accounts[values["name"]] = Account(external_source=MAVEN_SOURCE, external_id=values["name"], **values)
            session.add(accounts[values["name"]])
            part.count("created", "accounts")
        else:
            part.count("updated" if _set_fields(existing, values) else "unchanged", "accounts")
    products = {_product_key(p.name): p for p in session.scalars(select(Product))}
    for values in plan.products:
        existing = products.get(_product_key(values["name"]))
        if existing is None:
            products[_product_key(values["name"])] = product = Product(**values)
            session.add(product)
            part.count("created", "products")
        else:
            part.count("updated" if _set_fields(existing, values) else "unchanged", "products")
    agents = {a.name: a for a in session.scalars(select(SalesAgent))}
    for values in plan.agents:
        existing = agents.get(values["name"])
        if existing is None:
            agents[values["name"]] = agent = SalesAgent(**values)
            session.add(agent)
            part.count("created", "sales_agents")
        else:
            part.count("updated" if _set_fields(existing, values) else "unchanged", "sales_agents")
    session.flush()
    # An agent who is also a closer or manager here (same name or email) works their leads from now on;
    # the others get no leads until someone links them (revloop users link).
    link_matching_users(session, actor="import")
    return part


def write_crm_deals(session: Session, plan: CrmImportPlan, batch: list[dict[str, Any]]) -> ImportReport:
    """Write one batch of a validated export's pipeline (after write_crm_records)."""
    part = ImportReport(kind="crm", format=plan.report.format, path=plan.report.path)
    accounts = {
        a.external_id: a for a in session.scalars(select(Account).where(Account.external_source == MAVEN_SOURCE))
    }
    products = {_product_key(name): pid for pid, name in session.execute(select(Product.id, Product.name))}
    agents = {name: aid for aid, name in session.execute(select(SalesAgent.id, SalesAgent.name))}
    oids = [d["oid"] for d in batch]
    deals = {
        d.external_id: d
        for d in session.scalars(select(Deal).where(Deal.external_source == MAVEN_SOURCE, Deal.external_id.in_(oids)))
    }
    for record in batch:
        _upsert_deal(
            session,
            part,
            deals.get(record["oid"]),
            {
                **record["values"],
                "account": accounts.get(record["account"]) if record["account"] else None,
                "product_id": products[record["product"]],
                "sales_agent_id": agents[record["agent"]],
            },
        )
    session.flush()
    return part


def _write_crm(
    plan: CrmImportPlan, unit: UnitOfWork, *, strict: bool, progress: Progress | None, size: int, actor: str
) -> ImportReport:
    """Write a validated CRM plan: accounts, products and sales team in one unit, the pipeline in batches."""
    _refuse_rejected(plan.report, strict)
    done = len(plan.report.rejected) + len(plan.accounts) + len(plan.products) + len(plan.agents)
    plan.report.merge(unit(lambda session: write_crm_records(session, plan)))
    if progress:
        progress(done)
    for batch in _chunks(plan.deals, size):
        plan.report.merge(unit(lambda session, batch=batch: write_crm_deals(session, plan, batch)))
        if progress:
            progress(len(batch))
    unit(lambda session: _audit_import(session, plan.report, actor))
    return plan.report


def import_crm(
    session: Session,
    folder: Path,
    fmt: str,
    *,
    strict: bool = False,
    progress: Progress | None = None,
    actor: str = "cli",
) -> ImportReport:
    """Import a CRM export folder (accounts, products, sales team, pipeline) in the caller's one unit of work;
    the caller commits. (The CLI uses import_crm_in_batches.)"""
    plan = plan_crm_import(session, folder, fmt)
    return _write_crm(plan, lambda work: work(session), strict=strict, progress=progress, size=500, actor=actor)


def import_crm_in_batches(
    settings: Settings,
    folder: Path,
    fmt: str,
    *,
    strict: bool = False,
    progress: Progress | None = None,
    actor: str = "cli",
    batch_rows: int | None = None,
) -> ImportReport:
    """Import a CRM export without holding the database's write lock for long: validate every file first
    (read-only; with strict, any rejected row stops the import before anything is written), write the
    accounts, products and sales team in one short unit of work, then the pipeline in batches of
    REVLOOP_IMPORT_BATCH_ROWS (each retried when the database is busy). Safe to run again."""
    from core.db import session_scope

    with session_scope(settings, readonly=True) as session:
        plan = plan_crm_import(session, folder, fmt)
    size = batch_rows or settings.import_batch_rows
    return _write_crm(plan, _in_batches(settings), strict=strict, progress=progress, size=size, actor=actor)


def _finish(session: Session, report: ImportReport, strict: bool, actor: str) -> None:
    _refuse_rejected(report, strict)
    _audit_import(session, report, actor)


def _refuse_rejected(report: ImportReport, strict: bool) -> None:
    if strict and report.rejected:
        first = report.rejected[0]
        raise InvalidInput(
            f"{len(report.rejected)} row(s) rejected (first: {first['file']} row {first['row']}: {first['reason']}); "
            "--strict imports nothing",
            details={"rejections": report.rejected[:50]},
        )


def _audit_import(session: Session, report: ImportReport, actor: str, imported_at: dt.datetime | None = None) -> None:
    session.flush()
    after = {k: v for k, v in report.as_dict().items() if k != "rejections"}
    if imported_at is not None:
        after["imported_at"] = imported_at.isoformat()
    audit.record(
        session,
        actor=actor,
        action=f"import.{report.kind}",
        entity_type="import",
        entity_id=report.format,
        after=after,
    )


# --- company directory ----------------------------------------------------------------------------

COMPANY_COLUMNS = {
    "fortune1000": {
        "name": "Company",
        "sector": "Sector",
        "industry": "Industry",
        "employees": "Employees",
        "revenue_musd": "Revenue (M)",
        "region": "State",
    },
    "generic": {
        "name": "name",
        "domain": "domain",
        "sector": "sector",
        "industry": "industry",
        "employees": "employees",
        "revenue_musd": "revenue_musd",
        "region": "region",
    },
}


def import_companies(
    session: Session,
    path: Path,
    fmt: str,
    *,
    strict: bool = False,
    progress: Progress | None = None,
    actor: str = "cli",
) -> ImportReport:
    """Import firmographics into the offline company directory (matched by email domain and fuzzy name)."""
    from tools.enrichment import normalise_website

    if fmt not in COMPANY_FORMATS:
        raise InvalidInput(f"--format must be one of {', '.join(COMPANY_FORMATS)}, got {fmt!r}")
    columns = COMPANY_COLUMNS[fmt]
    header, rows = read_csv(path)
    _require_columns(path, header, [columns["name"]])
    source = "fortune1000" if fmt == "fortune1000" else f"generic:{path.stem}"
    existing = {c.name: c for c in session.scalars(select(Company).where(Company.source == source))}
    report = ImportReport(kind="companies", format=fmt, path=str(path))
    seen: dict[str, int] = {}

    def handle(number: int, row: dict[str, str]) -> None:
        name = row.get(columns["name"], "")
        if not name:
            raise RowError("company name is empty")
        if name in seen:
            raise RowError(f"company {name!r} repeats row {seen[name]}")
        seen[name] = number
        employees = _number(row.get(columns["employees"], ""), columns["employees"])
        revenue = _number(row.get(columns["revenue_musd"], ""), columns["revenue_musd"])
        domain_column = columns.get("domain")
        values = {
            "name": name,
            "domain": normalise_website(row.get(domain_column, "")) if domain_column else None,
            "sector": row.get(columns["sector"]) or None,
            "industry": row.get(columns["industry"]) or None,
            "employees": int(employees) if employees is not None else None,
            "revenue_musd": Decimal(str(revenue)) if revenue is not None else None,
            "region": row.get(columns["region"]) or None,
        }
        company = existing.get(name)
        if company is None:
            existing[name] = Company(source=source, **values)
            session.add(existing[name])
            report.count("created", "companies")
        else:
            report.count("updated" if _set_fields(company, values) else "unchanged", "companies")

    _each(report, path.name, rows, progress, handle)
    _finish(session, report, strict, actor)
    return report
