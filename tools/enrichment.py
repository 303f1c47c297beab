"""Offline enrichment helpers: email domains, free-mail detection, website normalisation."""

from __future__ import annotations

from urllib.parse import urlsplit

from core.names import company_key

# The common consumer mailbox providers; a lead from one of them tells us nothing about a company.
FREE_MAIL_DOMAINS = frozenset(
    [
        "gmail.com",
        "googlemail.com",
        "yahoo.com",
        "yahoo.co.uk",
        "yahoo.fr",
        "ymail.com",
        "hotmail.com",
        "hotmail.co.uk",
        "hotmail.fr",
        "outlook.com",
        "live.com",
        "msn.com",
        "aol.com",
        "icloud.com",
        "me.com",
        "mac.com",
        "proton.me",
        "protonmail.com",
        "gmx.com",
        "gmx.de",
        "gmx.net",
        "web.de",
        "mail.com",
        "yandex.com",
        "yandex.ru",
        "zoho.com",
        "fastmail.com",
        "tutanota.com",
        "hey.com",
        "qq.com",
        "163.com",
        "126.com",
        "rediffmail.com",
    ]
)


def is_disposable(domain: str) -> bool:
    """Throwaway mailbox providers (mailinator & co), from the maintained disposable-email-domains list."""
    from disposable_email_domains import blocklist

    return domain.lower() in blocklist


def email_domain(email: str) -> str:
    return email.rsplit("@", 1)[-1].strip().lower()


def is_free_mail(domain: str) -> bool:
    return domain.lower() in FREE_MAIL_DOMAINS


def normalise_website(website: str | None) -> str | None:
    """'HTTPS://www.Acme.com/about' -> 'acme.com'."""
    if not website or not website.strip():
        return None
    raw = website.strip()
    if "://" not in raw:
        raw = "http://" + raw
    host = (urlsplit(raw).hostname or "").lower().rstrip(".")
    if host.startswith("www."):
        host = host[4:]
    return host or None


def company_domain(email: str, website: str | None) -> str | None:
    """The company's domain: the email's unless it is a free-mail one, else the website's."""
    domain = email_domain(email)
    if not is_free_mail(domain):
        return domain
    return normalise_website(website)


def same_company(a: str | None, b: str | None) -> bool:
    """Whether two company names name the same company (legal suffixes and case aside)."""
    from rapidfuzz import fuzz

    return bool(a and b) and fuzz.token_sort_ratio(company_key(a), company_key(b)) >= 88
