"""Company names compared without legal suffixes, case or punctuation noise. In core because the Account model
keeps an indexed key of its name (accounts.name_key) and models may import nothing above core."""

from __future__ import annotations

import re

LEGAL_SUFFIXES = re.compile(
    r"\b(inc|incorporated|corp|corporation|co|company|llc|ltd|limited|plc|gmbh|group|holdings)\b\.?", re.IGNORECASE
)


def company_key(name: str | None) -> str:
    """A company name without legal suffixes, case or punctuation noise: "ACME Corporation Ltd" -> "acme"."""
    if not name:
        return ""
    return re.sub(r"\s+", " ", LEGAL_SUFFIXES.sub(" ", name.replace("&", " and ")).lower()).strip(" ,.")
