"""E-invoicing: an issued invoice may have to be submitted to the tax authority before it is sent.

REVLOOP_FISCAL_BACKEND picks the `FiscalBackend`: `none` (the default: no fiscal step) or `etims`, a reference
adapter for a KRA eTIMS-style control unit API (OSCU/VSCU "trnsSales/saveSales": the seller's PIN, branch id and
the device's communication key in headers; `resultCd` "000" is success; `data` carries the control unit's
receipt). The control unit's receipt number and the QR payload are stored on the invoice and printed on its PDF
(the QR code as an image, review/documents.py).

Outcomes: `FiscalReceipt` (accepted), `FiscalRejected` (the authority refused it: a person must fix the record;
the invoice is not sent) or `FiscalUnavailable` (timeout, connection error, 5xx: the submission job retries it).
A failed submission is never skipped: the invoice stays `pending` (retrying) or `rejected` (shown to managers).
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from typing import Any, Protocol

import httpx

from core.models import Invoice
from core.settings import Settings

PENDING, ACCEPTED, REJECTED = "pending", "accepted", "rejected"
BLOCKING = (PENDING, REJECTED)  # an invoice in one of these states is not sent, and not chased
VAT_RATE = Decimal("0.16")  # the reference adapter bills every line in tax type B (16 % VAT, amounts VAT-inclusive)


@dataclass(frozen=True)
class FiscalReceipt:
    receipt_number: str
    qr_payload: str
    raw: dict[str, Any]


class FiscalRejected(Exception):
    """The authority answered and refused the invoice (retrying the same data cannot help)."""


class FiscalUnavailable(Exception):
    """No answer we can act on (timeout, connection error, 5xx): the same submission is retried later."""


class FiscalBackend(Protocol):
    name: str

    def submit(self, invoice: Invoice, *, customer: str) -> FiscalReceipt: ...

    def probe(self) -> str: ...


class NoFiscal:
    name = "none"

    def submit(self, invoice: Invoice, *, customer: str) -> FiscalReceipt:  # pragma: no cover - never called
        raise RuntimeError("no fiscal backend is configured")

    def probe(self) -> str:
        return "not used"


class EtimsBackend:
    """A KRA eTIMS-style control unit API (the OSCU/VSCU sales endpoint and its documented answer shape)."""

    name = "etims"
    PATH = "/trnsSales/saveSales"

    def __init__(self, settings: Settings):
        missing = [
            f"REVLOOP_{n.upper()}"
            for n in ("fiscal_base_url", "fiscal_tin", "fiscal_device_key")
            if not getattr(settings, n)
        ]
        if missing:
            raise ValueError(f"REVLOOP_FISCAL_BACKEND=etims needs {', '.join(missing)}")
        self.base = settings.fiscal_base_url.rstrip("/")
        self.tin, self.branch, self.key = settings.fiscal_tin, settings.fiscal_branch_id, settings.fiscal_device_key
        self.timeout = settings.fiscal_timeout_seconds
        self.qr_base = settings.fiscal_qr_base_url

    def _headers(self) -> dict[str, str]:
        return {"tin": self.tin, "bhfId": self.branch, "cmcKey": self.key}

    def body(self, invoice: Invoice, customer: str) -> dict[str, Any]:
        """Every figure from the invoice record; the same invoice always gives the same body (a retry after a
        timeout is the same submission, keyed by the invoice number)."""
        total = invoice.amount.quantize(Decimal("0.01"))
        tax = (total * VAT_RATE / (1 + VAT_RATE)).quantize(Decimal("0.01"))
        issued = invoice.issued_on
        return {
            "tin": self.tin,
            "bhfId": self.branch,
            "invcNo": invoice.id,
            "trdInvcNo": invoice.number,
            "orgInvcNo": 0,
            "custNm": customer[:60],
            "salesTyCd": "N",
            "rcptTyCd": "S",
            "pmtTyCd": "01",
            "salesSttsCd": "02",
            "cfmDt": f"{issued:%Y%m%d}000000",
            "salesDt": f"{issued:%Y%m%d}",
            "totItemCnt": 1,
            "taxblAmtB": str(total),
            "taxRtB": str(int(VAT_RATE * 100)),
            "taxAmtB": str(tax),
            "totTaxblAmt": str(total),
            "totTaxAmt": str(tax),
            "totAmt": str(total),
            "currency": invoice.currency,
            "itemList": [
                {
                    "itemSeq": 1,
                    "itemNm": f"Invoice {invoice.number}",
                    "qty": 1,
                    "prc": str(total),
                    "splyAmt": str(total),
                    "taxTyCd": "B",
                    "taxblAmt": str(total),
                    "taxAmt": str(tax),
                    "totAmt": str(total),
                }
            ],
        }

    def submit(self, invoice: Invoice, *, customer: str) -> FiscalReceipt:
        try:
            response = httpx.post(
                self.base + self.PATH, json=self.body(invoice, customer), headers=self._headers(), timeout=self.timeout
            )
        except httpx.TimeoutException as exc:
            raise FiscalUnavailable(f"the fiscal API did not answer within {self.timeout:g}s") from exc
        except httpx.HTTPError as exc:
            raise FiscalUnavailable(f"the fiscal API is unreachable: {type(exc).__name__}: {exc}") from exc
        if response.status_code >= 500 or response.status_code == 429:
            raise FiscalUnavailable(f"the fiscal API answered HTTP {response.status_code}")
        if response.status_code >= 400:
            raise FiscalRejected(
                f"the fiscal API refused the request: HTTP {response.status_code} {response.text[:200]}"
            )
        try:
            answer = response.json()
        except ValueError as exc:
            raise FiscalUnavailable("the fiscal API answered with something that is not JSON") from exc
        code, message = str(answer.get("resultCd", "")), str(answer.get("resultMsg") or "")
        if code != "000":
            raise FiscalRejected(f"resultCd {code}: {message}".strip())
        data = answer.get("data") or {}
        if not data.get("rcptNo") or not data.get("sdcId"):
            raise FiscalUnavailable("the fiscal API accepted the invoice but sent no control unit receipt")
        receipt = f"{data['sdcId']}/{data['rcptNo']}"
        qr = f"{self.qr_base}{self.tin}{self.branch}{data.get('rcptSign', '')}"
        return FiscalReceipt(receipt_number=receipt, qr_payload=qr, raw=data)

    def probe(self) -> str:
        """Reachability only (any HTTP answer): submissions are never sent to check health."""
        response = httpx.get(self.base + "/", timeout=min(self.timeout, 5))
        return f"{self.base} answers (HTTP {response.status_code})"


def backend(settings: Settings) -> FiscalBackend:
    return EtimsBackend(settings) if settings.fiscal_backend == "etims" else NoFiscal()


def retry_delay(settings: Settings, attempts: int) -> float:
    """Seconds before the next try after `attempts` failed ones: doubles, at most an hour."""
    return min(settings.fiscal_retry_seconds * 2 ** max(0, attempts - 1), 3600.0)
