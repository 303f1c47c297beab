"""Safety checks on every text that leaves and on every lead.

Grounding guard: every fact in a text a customer reads (URLs, email addresses, phone numbers, dates, amounts,
numbers and percentages, discounts, names, places, claims such as a funding round or an award) must be
supported by what the text was built from: the records, the facts the draft used, the approved template's own
words. `unsupported(text, grounding)` lists the facts nothing supports; a draft's become its guard flags (a
flagged item cannot be approved in one click) and a reviewer's edit must name each one to approve it.
`discounts_over_cap` finds discounts above the cap, which no acknowledgement can send.

Case does not matter. Capitalisation still marks most names, but a lowercase invention ("congratulations on
your recent series b funding round ... in berlin") is caught by three other signals: patterns for claims
(funding, acquisitions, awards, "our ceo <name>", "<name> inc"), a gazetteer of places (GeoNames cities of
15,000 people or more, countries, US states; shipped by the `geotext` package) and an English vocabulary
with word frequencies (shipped by `pyspellchecker`): a word that is neither in the grounding nor ordinary
English is named too. Both data sets are read from the installed packages, never downloaded.

The injection screen (lead text is data, never instructions) is `review/injection.py`.
"""

from __future__ import annotations

import gzip
import json
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from functools import cached_property, lru_cache
from importlib import resources
from typing import Any

URL = re.compile(r"\bhttps?://[^\s<>\"')]*[^\s<>\"').,;:!?]", re.IGNORECASE)
EMAIL = re.compile(r"\b[\w.+-]+@[\w-]+(?:\.[\w-]+)+\b")
AMOUNT = re.compile(
    r"[$€£]\s?\d[\d,]*(?:\.\d+)?(?:\s?(?:[kKmM]|bn|BN)\b)?|\b\d[\d,]*(?:\.\d+)?\s?%|\b\d[\d,]*(?:\.\d+)?\b"
)
MONTHS = (
    r"(?:jan(?:uary)?|feb(?:ruary)?|mar(?:ch)?|apr(?:il)?|may|june?|july?|aug(?:ust)?|sept?(?:ember)?|"
    r"oct(?:ober)?|nov(?:ember)?|dec(?:ember)?)(?![a-z])\.?"
)
_DAY = r"\d{1,2}(?:st|nd|rd|th)?"
DATE = re.compile(
    rf"\b{_DAY}\s(?:of\s)?{MONTHS}(?:,?\s\d{{4}})?(?!\w)"
    rf"|\b{MONTHS}\s{_DAY}(?:,?\s\d{{4}})?\b"
    rf"|\b{MONTHS}\s\d{{4}}\b"
    r"|\b\d{4}-\d{2}-\d{2}\b|\b\d{1,2}[/.]\d{1,2}[/.](?:\d{4}|\d{2})\b",
    re.IGNORECASE,
)
# A time of day proposes a meeting; it is not a fact about anyone.
TIME = re.compile(r"\b\d{1,2}(?::\d{2})?\s?(?:am|pm|a\.m\.|p\.m\.)(?!\w)|\b\d{1,2}:\d{2}\b", re.IGNORECASE)
# "+1 415 555 0199", "(030) 1234-567", "555-0199", "+14155550199"; which runs count is decided in _phones().
PHONE = re.compile(
    r"(?<![\w+/.,-])(?:\+\d{1,3}[ .-]?)?(?:\(\d{1,5}\)[ .-]?)?\d{2,6}(?:[ .-]\d{2,6}){0,5}(?![\w/]|[.,-]\d)"
)
NAME = re.compile(r"\b[A-Z][a-zA-Z'’&-]+(?:[ \t]+[A-Z][a-zA-Z'’&-]+)*\b")
WORD = re.compile(r"(?<![\w'’-])[a-z]+(?:['’-][a-z]+)*(?![\w'’-])")

_PCT = r"(?P<pct>\d{1,3}(?:[.,]\d{1,2})?)\s?(?:%|percent\b|per\s?cent\b|pct\b)"
# What a discount cuts (not "your costs": "cut your costs by 30%" is a saving, not a price cut).
_PRICE_NOUN = r"(?:price|prices|pricing|fee|fees|invoice|total|subscription|licen[cs]e|plan|quote|rate)"
DISCOUNTS = (
    re.compile(
        rf"(?<![\d.,]){_PCT}\s*(?:price\s+)?(?:off\b|discount(?:ed)?\b|reduction\b|rebate\b|markdown\b|"
        rf"cheaper\b|price\s+cut\b|(?:lower|reduced)\s+{_PRICE_NOUN}\b)",
        re.IGNORECASE,
    ),
    re.compile(
        rf"\b(?:discount(?:ed)?|reduction|rebate|markdown|price\s+cut|reduce[ds]?|reducing|lower(?:ed|ing|s)?|"
        rf"cut(?:ting|s)?)\s+(?:(?:the|your|our|its|their)\s+{_PRICE_NOUN}\s+)?(?:of\s+|by\s+|at\s+)?"
        rf"(?:up\s+to\s+|about\s+|around\s+|nearly\s+|almost\s+|a\s+full\s+|fully\s+)?{_PCT}",
        re.IGNORECASE,
    ),
    re.compile(rf"\bdiscount\s*[:=]\s*{_PCT}", re.IGNORECASE),
)
PERCENTAGE = re.compile(_PCT, re.IGNORECASE)
HALF_PRICE = re.compile(r"\bhalf[- ](?:price|off)\b|\b(?:at|for)\s+half\s+the\s+price\b", re.IGNORECASE)

_ROLE = (
    r"(?:ceo|cto|cfo|coo|cmo|cio|cro|founder|co-?founder|president|chairman|chairwoman|chair|owner|vp|svp|evp|"
    r"director|manager|head\s+of\s+[a-z]+|mr|mrs|ms|mx|dr|prof)"
)
# Claims about the customer or an offer that only a record (or the approved template) may make.
CLAIMS = (
    re.compile(
        r"\bseries\s+(?:[b-h]|a(?=\s+(?:funding|financing|investment|round|raise|extension|investors?)\b))"
        r"(?:\s+(?:funding|financing|investment|round|raise|extension))*\b",
        re.IGNORECASE,
    ),
    re.compile(r"\b(?:pre-?seed|seed)\s+(?:funding|financing|investment|round|raise)(?:\s+round)?\b", re.IGNORECASE),
    re.compile(r"\b(?:funding|financing|investment)\s+round\b", re.IGNORECASE),
    re.compile(
        r"\b(?:raised|raising|raises|closed|closing|secured|securing|landed)\s+(?:a|an|your|their|its|the)?\s*"
        r"(?:new\s+|recent\s+|big\s+|large\s+|fresh\s+)?(?:round|funding|financing|investment|capital)\b",
        re.IGNORECASE,
    ),
    re.compile(
        r"\b(?:acquired|bought)\s+by\b|\b(?:acquisition|merger)\s+(?:of|with|by)\b|\b(?:went|going)\s+public\b"
        r"|\bipo\b|\b(?:recent(?:ly)?|just|new)\s+(?:acquired|acquisition|merger|merged)\b",
        re.IGNORECASE,
    ),
    re.compile(
        r"\baward[- ]winning\b|\b(?:won|winning|winner\s+of|awarded|received|receiving)\s+(?:the\s+|an?\s+)?"
        r"(?:[a-z'-]+\s+){0,4}?awards?\b|\bnamed\s+(?:one\s+of\s+)?(?:the\s+)?(?:best|top|fastest|leading)\b",
        re.IGNORECASE,
    ),
    re.compile(
        r"\b(?:recent(?:ly)?|just)\s+(?:launched|opened|expanded|hired|announced|raised|appointed|partnered)\b"
        r"|\bnew\s+(?:ceo|cto|cfo|coo|cmo|office|offices|headquarters|hq|plant|factory|location|store|branch)\b",
        re.IGNORECASE,
    ),
    re.compile(
        r"\bfree\s+of\s+charge\b|\b(?:for|at)\s+no\s+(?:extra\s+|additional\s+)?(?:cost|charge)\b|\bno\s+charge\b"
        r"|\bfor\s+free\b|\bwaive[ds]?\s+(?:(?:the|your|all|any)\s+)?(?:[a-z-]+\s+)?fees?\b|\bmoney[- ]back\b"
        r"|\bguarantee[sd]?\b|\brisk[- ]free\b|\bprice\s+match\b"
        r"|\bfree\s+(?:trial|month|months|year|pilot|setup|set-up|onboarding|upgrade|licen[cs]es?|seats?)\b"
        r"|\b(?:month|months|year|weeks?)\s+(?:for\s+)?free\b",
        re.IGNORECASE,
    ),
)
# Any claim at all: one scan instead of one per pattern for the many texts that make none (a text this does not
# match, no claim pattern matches).
ANY_CLAIM = re.compile("|".join(f"(?:{claim.pattern})" for claim in CLAIMS), re.IGNORECASE)
ROLE_NAME = re.compile(rf"\b{_ROLE}\.?,?\s+(?P<name>[a-z][a-z'’-]+(?:\s+[a-z][a-z'’-]+)?)", re.IGNORECASE)
ORG = re.compile(
    r"\b(?P<name>(?:[a-z][a-z0-9&'’-]*\s+){1,2})(?:inc|corp|corporation|ltd|llc|gmbh|plc|limited|pty)\b\.?"
)

# Ordinary words that start sentences in business email; capitalised there, they are not names.
SENTENCE_STARTERS = frozenset(
    """a about after again all also an and any as at based before best but by can congratulations could dear do
    does every few first for from glad good great happy have having he hello her here hi his hope hoping how
    i if in is it its just kind let looking lovely many may more most much my nice no not now of on once one
    our perhaps please quick quite really regards she since sincerely so some sounds sure thank thanks that
    the their then there these they this those to today together unfortunately we welcome well what when
    where whether which while who why will with would yes yet you your""".split()
)
# Capitalised words that are grammar, calendar, roles or common abbreviations, not names, wherever they stand.
ORDINARY_CAPS = frozenset(
    """i i'm i'll i've i'd i’m i’ll i’ve i’d ok okay re fwd fw ps hi dear thanks monday tuesday wednesday
    thursday friday saturday sunday january february march april may june july august september october
    november december jan feb mar apr jun jul aug sep sept oct nov dec ceo cto cfo coo cmo cio cro vp svp evp
    mr mrs ms mx dr prof pdf faq crm erp api roi kpi kpis saas b2b hr it q&a eod asap fyi utc gmt cet est pst
    am pm ai ml usd eur gbp""".split()
)
# Business words an English vocabulary built from everyday language does not know.
JARGON = frozenset(
    """onboarding offboarding onboard saas paas crm erp api apis roi kpi kpis okr okrs b2b b2c fintech proptech
    insurtech healthtech edtech martech ecommerce e-commerce webinar webinars workflow workflows dashboard
    dashboards analytics scalable scalability integrations integration stakeholder stakeholders upsell upselling
    cross-sell roadmap roadmaps deliverable deliverables timeline timelines rollout rollouts go-live usecase
    usecases automations automate automated signup signups walkthrough walkthroughs touchpoint touchpoints
    unsubscribe invoicing invoiced dunning follow-up follow-ups kickoff kick-off pipeline pipelines quarterly
    headcount bandwidth subscription subscriptions renewal renewals procurement gdpr login logins email emails
    emailed e-sign esign e-signature cadence cadences enquiry enquiries inbox inboxes""".split()
)
# Capitalised or not, these are places (the GeoNames lists have no US states).
US_STATES = frozenset(
    """alabama alaska arizona arkansas california colorado connecticut delaware florida georgia hawaii idaho
    illinois indiana iowa kansas kentucky louisiana maine maryland massachusetts michigan minnesota mississippi
    missouri montana nebraska nevada ohio oklahoma oregon pennsylvania tennessee texas utah vermont virginia
    washington wisconsin wyoming""".split()
) | {
    "new hampshire",
    "new jersey",
    "new mexico",
    "new york",
    "north carolina",
    "north dakota",
    "rhode island",
    "south carolina",
    "south dakota",
    "west virginia",
}
# A place written in lower case counts only where it reads as one: after these words, or before the second list.
LOCATIVE_BEFORE = frozenset("in at from near across around throughout outside inside".split())
LOCATIVE_AFTER = frozenset("office offices headquarters hq branch site team teams area region market campus".split())
COMMON_RANK = 8000  # the 8,000 most frequent English words are ordinary wherever they stand
RARE_RANK = 30000  # a place name rarer than this is a place wherever it stands ("munich", "germany")
STARTER_RANK = 10000  # a capitalised first word of a sentence this frequent is grammar ("Apologies", "Attached")
NAME_RANK = 3000  # after a role ("our ceo ..."), a word rarer than this reads as a name ("jane", "smith")
# What follows a role without being a name ("vp marketing", "head of sales", "director of operations").
DEPARTMENTS = frozenset(
    """sales marketing engineering operations finance financial product products growth revenue partnerships
    partner partners procurement people hr it customer customers success support security legal business
    development strategy technology tech design data analytics digital commercial accounts account purchasing
    engineering research innovation communications brand content demand field channel enterprise platform
    infrastructure compliance risk treasury payroll talent recruiting logistics supply chain quality services""".split()
)


@lru_cache(maxsize=1)
def vocabulary() -> dict[str, int]:
    """English words by frequency rank (0 = most frequent), from pyspellchecker's English dictionary."""
    data = resources.files("spellchecker").joinpath("resources/en.json.gz").read_bytes()
    counts: dict[str, int] = json.loads(gzip.decompress(data))
    return {word: rank for rank, word in enumerate(sorted(counts, key=lambda w: (-counts[w], w)))}


@lru_cache(maxsize=1)
def places() -> frozenset[str]:
    """Lowercased names of cities (15,000 people or more), countries, their capitals and US states."""
    data = resources.files("geotext").joinpath("data")
    names: set[str] = set(US_STATES)
    for line in data.joinpath("cities15000.txt").read_text(encoding="utf-8").splitlines():
        columns = line.split("\t")
        if len(columns) > 2:
            names.update((columns[1].lower(), columns[2].lower()))
    for line in data.joinpath("countryInfo.txt").read_text(encoding="utf-8-sig").splitlines():
        columns = line.split("\t")
        if not line.startswith("#") and len(columns) > 5:
            names.update((columns[4].lower(), columns[5].lower()))
    return frozenset(n for n in names if re.fullmatch(r"[a-z][a-z' -]*[a-z]", n) and len(n) >= 4)


_BRITISH = (
    ("isation", "ization"), ("ise", "ize"), ("yse", "yze"), ("our", "or"), ("tre", "ter"), ("ogramme", "ogram"),
    ("elled", "eled"), ("elling", "eling"), ("ence", "ense"), ("que", "ck"),
)  # fmt: skip
_SUFFIXES = (
    ("'s", ""), ("’s", ""), ("s", ""), ("es", ""), ("ies", "y"), ("ed", ""), ("ed", "e"), ("ied", "y"),
    ("ing", ""), ("ing", "e"), ("ly", ""), ("er", ""), ("ers", ""), ("est", ""), ("ment", ""), ("ness", ""),
)  # fmt: skip


@lru_cache(maxsize=16384)  # the same words come back in every draft
def _rank(word: str) -> int | None:
    return vocabulary().get(word)


@lru_cache(maxsize=16384)
def is_english(word: str) -> bool:
    """Ordinary English (any spelling, inflection or business jargon): not a name the guard must trace."""
    words = vocabulary()
    if word in words or word in JARGON:
        return True
    forms = {word} | {word.replace(uk, us) for uk, us in _BRITISH if uk in word}
    for form in forms:
        if form in words:
            return True
        for suffix, stem in _SUFFIXES:
            if form.endswith(suffix) and len(form) - len(suffix) >= 3 and form[: -len(suffix)] + stem in words:
                return True
    parts = re.split(r"['’-]", word)
    return len(parts) > 1 and all(len(p) <= 2 or is_english(p) for p in parts)


def _place_everywhere(name: str) -> bool | None:
    """True: a place wherever it stands; False: only in a place's context; None: an ordinary word."""
    ranks = [_rank(w) for w in name.split()]
    if name in US_STATES:
        return True
    if len(ranks) > 1:
        return None if all(r is not None and r < COMMON_RANK for r in ranks) else True
    rank = ranks[0]
    if rank is None or rank >= RARE_RANK:
        return True
    if rank < COMMON_RANK or name.endswith(("ing", "ed")):
        return None
    return False


_WHITESPACE = re.compile(r"\s+")
_TOKEN = re.compile(r"[^\W_]+")


@lru_cache(maxsize=1024)  # template words and record values repeat from one draft to the next (texts can be long)
def _norm(text: str) -> str:
    return _WHITESPACE.sub(" ", str(text)).strip().lower()


def _digits(text: str) -> str:
    return re.sub(r"\D", "", text)


def _decimal(text: str) -> Decimal | None:
    try:
        return Decimal(text.replace(",", "")).normalize()
    except InvalidOperation:
        return None


_SCALE = {"k": 1000, "thousand": 1000, "m": 10**6, "mm": 10**6, "million": 10**6, "bn": 10**9, "billion": 10**9}
_CURRENCY = r"(?:[$€£]|\b(?:usd|eur|gbp|chf|cad|aud)\b)"
_NUMBER = re.compile(
    rf"(?P<cur>{_CURRENCY}\s?)?(?<![\d.])(?P<n>\d[\d,]*(?:\.\d+)?)(?:\s?(?P<pct>%|percent\b|per\s?cent\b)"
    r"|\s?(?P<scale>k|mm|m|bn|thousand|million|billion)\b)?(?P<code>\s?(?:usd|eur|gbp|chf|cad|aud|dollars|euros|"
    r"pounds)\b)?",
    re.IGNORECASE,
)


@dataclass
class Values:
    """The numbers a text states: all of them, its percentages, and its amounts of money."""

    numbers: set[Decimal]
    percents: set[Decimal]
    money: set[Decimal]


def _values(text: str) -> Values:
    """Numbers as values ("1,200.00" is 1200; "12M" is 12,000,000, and 12)."""
    found = Values(set(), set(), set())
    for match in _NUMBER.finditer(text):
        value = _decimal(match.group("n"))
        if value is None:
            continue
        scaled = (value * _SCALE[match.group("scale").lower()]).normalize() if match.group("scale") else value
        found.numbers |= {value, scaled}
        if match.group("pct"):
            found.percents.add(value)
        elif match.group("cur") or match.group("code"):
            found.money.add(scaled)
    return found


@lru_cache(maxsize=1024)
def _tokens_of(normalised: str) -> frozenset[str]:
    return frozenset(_TOKEN.findall(normalised))


@lru_cache(maxsize=1024)
def _values_of(normalised: str) -> Values:
    """_values of one allowed text, cached (callers must not change the sets)."""
    return _values(normalised)


def _phones(text: str) -> Iterator[re.Match[str]]:
    """Runs of digits that read as a phone number: 7 to 15 digits with a +, an area code in brackets, or
    in groups (a lone long run of 9 or more digits also counts); not years ("2025-2026") nor ranges
    ("1000-2000")."""
    for match in PHONE.finditer(text):
        token = match.group(0)
        digits, groups = _digits(token), re.findall(r"\d+", token)
        if not 7 <= len(digits) <= 15 or not (token[0] in "+(" or len(groups) >= 2 or len(digits) >= 9):
            continue
        if token[0] not in "+(" and len(groups) == 2:
            years = all(re.fullmatch(r"(?:19|20)\d\d", g) for g in groups)
            if years or (groups[0].endswith("0") and groups[1].endswith("0") and int(groups[0]) < int(groups[1])):
                continue
        yield match


def _phone_matches(a: str, b: str) -> bool:
    """Same number, compared by digits only: a country code or a trunk 0 may be missing on either side."""
    a, b = a.lstrip("0"), b.lstrip("0")
    short, long = sorted((a, b), key=len)
    return len(short) >= 7 and long.endswith(short)


def _date_keys(token: str) -> set[tuple[int | None, int, int | None]]:
    """(day, month, year) readings of a date token; numeric dates can be read day-first or month-first."""
    text = token.lower()
    if m := re.fullmatch(r"(\d{4})-(\d{2})-(\d{2})", text):
        return {(int(m[3]), int(m[2]), int(m[1]))}
    if m := re.fullmatch(r"(\d{1,2})[/.](\d{1,2})[/.](\d{2}|\d{4})", text):
        year = int(m[3]) + (2000 if len(m[3]) == 2 else 0)
        return {(int(a), int(b), year) for a, b in ((m[1], m[2]), (m[2], m[1])) if 1 <= int(b) <= 12}
    month = re.search(MONTHS, text)
    if month is None:
        return set()
    number = ["jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"].index(
        month.group(0)[:3]
    ) + 1
    day = re.search(r"\b(\d{1,2})(?:st|nd|rd|th)?\b(?!\d)", text[: month.start()] + " " + text[month.end() :])
    year = re.search(r"\b(\d{4})\b", text)
    return {(int(day.group(1)) if day else None, number, int(year.group(1)) if year else None)}


@dataclass(frozen=True)
class Fact:
    """One fact in a text: what kind it is and how it is written there (what a reviewer acknowledges)."""

    kind: str  # url | email | phone | date | number | discount | claim | name | place | word
    text: str
    # For a discount: the percentage it gives; the guard flag names the percentage ("20%") as a number.
    percent: Decimal | None = None
    token: str | None = None

    @property
    def flag(self) -> str:
        """The guard flag stored on a review item (the wording tests and the app have always used)."""
        if self.kind == "discount" and self.token:
            return f"ungrounded number {self.token!r}"
        return f"ungrounded {self.kind} {self.text!r}"


class Grounding:
    """What a text may say: the allowed texts (records, facts used, template words), indexed once."""

    def __init__(self, allowed: Iterable[Any]):
        self.texts = [str(a) for a in allowed if a is not None and str(a).strip()]
        self.normalised = [_norm(t) for t in self.texts]
        self.text = " \n ".join(self.normalised)

    # No token or number spans the " \n " between two texts, so the whole text's are the union of each text's,
    # cached per text: the template's words and most record values are the same from one draft to the next.
    @cached_property
    def tokens(self) -> frozenset[str]:
        return frozenset().union(*map(_tokens_of, self.normalised))

    @cached_property
    def values(self) -> Values:
        found = Values(set(), set(), set())
        for each in map(_values_of, self.normalised):
            found.numbers |= each.numbers
            found.percents |= each.percents
            found.money |= each.money
        return found

    @cached_property
    def phones(self) -> list[str]:
        found = [_digits(m.group(0)) for t in self.texts for m in _phones(t)]
        found += [_digits(t) for t in self.texts if re.fullmatch(r"[+\d\s().-]+", t) and len(_digits(t)) >= 7]
        return found

    @cached_property
    def dates(self) -> set[tuple[int | None, int, int | None]]:
        return {key for m in DATE.finditer(self.text) for key in _date_keys(m.group(0))}

    def has_phrase(self, phrase: str) -> bool:
        return re.search(r"(?<!\w)" + re.escape(_norm(phrase)) + r"(?!\w)", self.text) is not None

    def has_words(self, text: str) -> bool:
        words = [w for w in _TOKEN.findall(text.lower()) if w != "s"]
        return bool(words) and all(w in self.tokens for w in words)

    def supports(self, fact: Fact) -> bool:
        if fact.kind in ("url", "email"):
            return _norm(fact.text).rstrip(".,") in self.text
        if fact.kind == "phone":
            return any(_phone_matches(_digits(fact.text), known) for known in self.phones)
        if fact.kind == "date":
            keys = _date_keys(fact.text)
            return self.has_phrase(fact.text) or any(
                (d is None or kd is None or d == kd) and m == km and (y is None or ky is None or y == ky)
                for d, m, y in keys
                for kd, km, ky in self.dates
            )
        if fact.kind == "discount":
            return fact.percent is not None and fact.percent in self.values.percents
        if fact.kind == "number":  # a percentage must be one on record, an amount of money an amount
            said = _values(fact.text)
            if said.percents:
                return said.percents <= self.values.percents
            if said.money:
                return said.money <= self.values.money
            return bool(said.numbers) and max(said.numbers) in self.values.numbers
        if fact.kind in ("claim", "place"):
            return self.has_phrase(fact.text)
        return self.has_words(fact.text)  # name, word


def _grounding(allowed: Grounding | Iterable[Any]) -> Grounding:
    return allowed if isinstance(allowed, Grounding) else Grounding(allowed)


def _mask(text: str, start: int, end: int) -> str:
    return text[:start] + " " * (end - start) + text[end:]


def _starts_sentence(text: str, at: int) -> bool:
    before = text[:at]
    stripped = before.rstrip(" \t\"'“‘(*-•")
    return not stripped.strip() or stripped[-1] in ".!?:;\n" or "\n" in before[len(stripped) :]


def _titlecase_line(text: str, at: int) -> bool:
    """A line written in Title Case (a subject line): its capitalised ordinary words are not names."""
    start = text.rfind("\n", 0, at) + 1
    end = text.find("\n", at)
    return _is_titlecase(text[start : end if end >= 0 else len(text)])


@lru_cache(maxsize=4096)  # asked once per capitalised run, and a line has several
def _is_titlecase(line: str) -> bool:
    words = re.findall(r"[^\W\d_][\w'’-]*", line)
    return len(words) >= 3 and sum(w[0].isupper() for w in words) / len(words) >= 0.6


def _discounts(text: str) -> Iterator[tuple[int, int, Fact]]:
    # Each discount pattern states a percentage: one scan for a percentage spares the three for most texts.
    for pattern in DISCOUNTS if PERCENTAGE.search(text) else ():
        for match in pattern.finditer(text):
            percent = _decimal(match.group("pct").replace(",", "."))
            token = re.search(r"\d[\d.,]*\s?(?:%|percent|per\s?cent|pct)", match.group(0), re.IGNORECASE)
            fact = Fact("discount", " ".join(match.group(0).split()), percent, token.group(0) if token else None)
            yield match.start(), match.end(), fact
    for match in HALF_PRICE.finditer(text):
        yield match.start(), match.end(), Fact("discount", " ".join(match.group(0).split()), Decimal(50))


def _name_like(word: str) -> bool:
    """Could this word (after a role, before "inc") be part of a name? Not if it is common English."""
    word = word.lower()
    rank = _rank(word)
    return not (
        word in SENTENCE_STARTERS or word in DEPARTMENTS or word in JARGON or (rank is not None and rank < NAME_RANK)
    )


def _role_names(text: str) -> Iterator[tuple[int, int, Fact]]:
    """ "our ceo jane smith", "Dr. Grant": the words after a role that are too rare to be ordinary English."""
    for match in ROLE_NAME.finditer(text):
        start, taken = match.start("name"), []
        for word in re.finditer(r"\S+", match.group("name")):
            if not _name_like(word.group(0)):
                break
            taken.append(word)
        if taken:
            end = start + taken[-1].end()
            yield start, end, Fact("name", " ".join(text[start:end].split()))


def _organisations(text: str) -> Iterator[tuple[int, int, Fact]]:
    """ "globex corp", "acme ltd" written in lower case."""
    for match in ORG.finditer(text):
        words = match.group("name").split()
        while words and not _name_like(words[0]):
            words.pop(0)
        if words and all(_name_like(w) for w in words):
            name = " ".join(match.group(0).split()[-len(words) - 1 :])
            yield match.start(), match.end(), Fact("name", name)


def _names(text: str) -> Iterator[tuple[int, int, Fact | None]]:
    """Capitalised runs, less the words that are grammar there (a sentence's first word, a Title Case subject,
    weekdays, roles, "I'll"): the rest is a name (or a place, when the gazetteer knows it)."""
    for match in NAME.finditer(text):
        at = match.start()
        name = _name_in(match.group(0), _titlecase_line(text, at), _starts_sentence(text, at))
        if name is None:
            yield match.start(), match.end(), None
        else:
            yield match.start(), match.end(), Fact("place" if name.lower() in places() else "name", name)


@lru_cache(maxsize=4096)  # the same runs ("Best", "Revloop Demo Co") come back in every draft
def _name_in(run: str, titlecase: bool, starts_sentence: bool) -> str | None:
    """The name in a capitalised run, from its first word to its last that is not grammar there; None if none."""
    tokens = run.split()
    keep = []
    for index, token in enumerate(tokens):
        word = token.lower().strip("'’")
        rank = _rank(word)
        ordinary = word in ORDINARY_CAPS or (titlecase and rank is not None and rank < STARTER_RANK)
        if index == 0 and starts_sentence:
            ordinary = ordinary or word in SENTENCE_STARTERS or (rank is not None and rank < STARTER_RANK)
        keep.append(not ordinary)
    if not any(keep):
        return None
    first, last = keep.index(True), len(keep) - 1 - keep[::-1].index(True)
    return " ".join(tokens[first : last + 1])


@lru_cache(maxsize=1)
def _place_starts() -> frozenset[str]:
    """The first words of the gazetteer's names of two or three words ("new" of "new york")."""
    return frozenset(name.split(" ", 1)[0] for name in places() if " " in name)


def _lowercase_places(text: str) -> Iterator[tuple[int, int, Fact]]:
    """Places written in lower case: rare names anywhere ("munich"), names that are also English words only
    where they read as a place ("in berlin", "the boston office"), ordinary words never ("nice", "reading")."""
    words = list(WORD.finditer(text))
    spelled = [w.group(0) for w in words]
    known, starts = places(), _place_starts()
    taken_to = 0  # the words before this index are part of a place found already
    # A name begins only at a place or at the first word of a two- or three-word one (most words are neither).
    for index in [i for i, word in enumerate(spelled) if word in starts or word in known]:
        if index < taken_to:
            continue
        for size in (3, 2, 1) if spelled[index] in starts else (1,):
            name = " ".join(spelled[index : index + size])
            if index + size > len(words) or name not in known:
                continue
            group = words[index : index + size]
            if any(text[a.end() : b.start()] != " " for a, b in zip(group, group[1:], strict=False)):
                continue  # the words of a name are one space apart
            everywhere = _place_everywhere(name)
            before = spelled[index - 1] if index else ""
            after = spelled[index + size] if index + size < len(words) else ""
            if everywhere or (everywhere is False and (before in LOCATIVE_BEFORE or after in LOCATIVE_AFTER)):
                yield group[0].start(), group[-1].end(), Fact("place", name)
                taken_to = index + size
                break


def facts_in(text: str) -> list[Fact]:
    """Every fact the text states, in the order the guard reports them (URLs, addresses, dates, phones,
    discounts, numbers, names after a role, claims, names, places, unfamiliar words)."""
    found: list[Fact] = []
    masked = text

    def take(spans: Iterable[tuple[int, int, Fact | None]]) -> None:
        nonlocal masked
        for start, end, fact in sorted(spans, key=lambda span: span[0]):
            if masked[start:end] == text[start:end]:  # not already taken by an earlier kind (or span)
                if fact is not None:
                    found.append(fact)
                masked = _mask(masked, start, end)

    def spans(pattern: re.Pattern[str], kind: str | None) -> list[tuple[int, int, Fact | None]]:
        return [
            (m.start(), m.end(), Fact(kind, m.group(0).strip()) if kind else None) for m in pattern.finditer(masked)
        ]

    for kind, pattern in (("url", URL), ("email", EMAIL), ("date", DATE)):
        take(spans(pattern, kind))
    take(spans(TIME, None))
    take([(m.start(), m.end(), Fact("phone", m.group(0).strip())) for m in _phones(masked)])
    take(list(_discounts(masked)))
    take(spans(AMOUNT, "number"))
    take(list(_role_names(masked)))
    if ANY_CLAIM.search(masked):
        for pattern in CLAIMS:
            take([(m.start(), m.end(), Fact("claim", " ".join(m.group(0).split()))) for m in pattern.finditer(masked)])
    take(list(_organisations(masked)))
    take(list(_names(masked)))
    # Places in any case: an all-caps or Title Case line ("IN BERLIN") hides them from the capitalised-name pass.
    lowered = masked.lower()
    take(list(_lowercase_places(lowered if len(lowered) == len(masked) else masked)))
    take(
        [
            (m.start(), m.end(), Fact("word", m.group(0)))
            for m in WORD.finditer(masked)
            if len(m.group(0)) >= 4 and not is_english(m.group(0))
        ]
    )
    return found


def unsupported(text: str, allowed: Grounding | Iterable[Any]) -> list[Fact]:
    """The facts in `text` that nothing allowed supports, each once (compared without case)."""
    grounding = _grounding(allowed)
    out: list[Fact] = []
    seen: set[str] = set()
    for fact in facts_in(text):
        key = _norm(fact.text).rstrip(".,")
        if key and key not in seen and not grounding.supports(fact):
            seen.add(key)
            out.append(fact)
    return out


def discounts_over_cap(text: str, max_pct: float | Decimal) -> list[Fact]:
    """Discounts in `text` above the cap (REVLOOP_MAX_DISCOUNT_PCT): no acknowledgement can send these."""
    cap = Decimal(str(max_pct))
    return [f for _, _, f in _discounts(text) if f.percent is not None and f.percent > cap]


def ungrounded(draft: str, allowed: Iterable[str]) -> list[str]:
    """The claims in `draft` that no allowed text supports, as flags like "ungrounded number '20%'"."""
    return [fact.flag for fact in unsupported(draft, allowed)]


def same_fact(fact: Fact, written: str) -> bool:
    """Does a reviewer's acknowledgement name this fact? Case and spacing do not matter; a phone number is
    compared by its digits."""
    if _norm(written) == _norm(fact.text):
        return True
    return fact.kind == "phone" and _digits(written) == _digits(fact.text) != ""
