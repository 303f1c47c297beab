"""The injection screen: lead text is data, never instructions.

Everything a lead typed (`lead_text`: the message and every other field) is screened for attempts to steer the
agent or the people behind it: override its instructions, make it play a role, send elsewhere, change a price or
the bank details money goes to, reveal our scoring rules, hand over other people's data, call tools, skip
approval. Each attempt has a named category: a stable code (`possible_prompt_injection:<codes>` in the brief's
flags, as before) and a sentence for the closer (`WARNINGS`), which `injection_flags` puts in the flags beside the
code, so a flag always reaches the person who reviews the item in words. The screen decides who looks, not what is
sent: whatever the text says, recipients, amounts and bank details still come from records only.

Deterministic and offline: regular expressions, run on the text as typed and on the text with the usual
obfuscations undone (Unicode compatibility forms and invisible characters, Cyrillic and Greek look-alike letters
inside Latin words, letters spaced out with spaces, dots or hyphens, digits written for letters). English
throughout; instruction overrides, role-play, rubric leaks, bank details and data exfiltration are also recognised
in their common German, French and Spanish phrasings. Written from the cases in `evals/cases/safety.jsonl` (attacks
and benign look-alikes such as "act as your reseller" or "where do I send the remittance advice"): when the screen
misses something, add the case there first.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass
from typing import Any

EMAIL = re.compile(r"\b[\w.+-]+@[\w-]+(?:\.[\w-]+)+\b")
FLAG = "possible_prompt_injection"

# --- undoing obfuscation -------------------------------------------------------------------------------------------

# Cyrillic and Greek letters drawn like Latin ones, replaced only inside words that also hold a Latin letter
# ("rubriс" with a Cyrillic с), so Russian or Greek text is left as it is.
_LOOKALIKES = str.maketrans(
    "аеорсухіјѕԁһӏАВЕКМНОРСТХІЈЅαεικνορτυχΑΒΕΖΗΙΚΜΝΟΡΤΥΧ",
    "aeopcyxijsdhlABEKMHOPCTXIJSaeikvoptuxABEZHIKMNOPTYX",
)
_WORD = re.compile(r"[^\W\d_]+")
_LATIN = re.compile(r"[a-zA-Z]")
_QUOTES = str.maketrans({"’": "'", "‘": "'", "ʼ": "'", "`": "'", "“": '"', "”": '"', "„": '"', "«": '"', "»": '"'})
# Three or more single characters joined by one separator each: "p r i n t", "c.o.n.t.a.c.t", "E-x-p-o-r-t".
_SPACED = re.compile(r"(?<![\w.-])(?:\w[ .\-_*·]){2,}\w(?![\w-])")
_LEET = str.maketrans("013457@$", "oieastas")
_LEET_WORD = re.compile(r"\b(?=\w*[a-zA-Z])(?=\w*[0-9])\w{4,}\b")


def _unmask_word(match: re.Match[str]) -> str:
    word = match.group(0)
    return word.translate(_LOOKALIKES) if _LATIN.search(word) else word


def _unleet(match: re.Match[str]) -> str:
    word = match.group(0)
    letters = sum(c.isalpha() for c in word)
    return word.translate(_LEET) if letters > len(word) - letters else word  # "rubr1c", not "DE89" or "20-00"


def _clean(text: str) -> str:
    text = unicodedata.normalize("NFKC", text)
    text = "".join(c for c in text if unicodedata.category(c) != "Cf")
    return _WORD.sub(_unmask_word, text.translate(_QUOTES))


def normalised(text: str) -> str:
    """`text` as a reader sees it: compatibility forms folded (full-width letters, ligatures), invisible characters
    (zero-width spaces, soft hyphens, direction marks) removed, look-alike letters inside Latin words made Latin,
    typographic quotes made plain, runs of spaces made one."""
    return re.sub(r"[ \t]+", " ", _clean(text))


def spaced_runs(text: str) -> list[str]:
    """The spaced-out runs in `text`, joined ("p r i n t" -> "print")."""
    return [re.sub(r"[ .\-_*·]", "", m.group(0)) for m in _SPACED.finditer(_clean(text))]


def deobfuscated(text: str) -> str:
    """The normalised text with spaced-out letters joined ("s c o r i n g  r u b r i c" -> "scoring rubric") and
    digits written for letters read as letters ("1gn0re" -> "ignore")."""
    text = _SPACED.sub(lambda m: re.sub(r"[ .\-_*·]", "", m.group(0)), _clean(text))
    return re.sub(r"[ \t]+", " ", _LEET_WORD.sub(_unleet, text))


# --- categories ----------------------------------------------------------------------------------------------------

# Pieces shared by the patterns below, written into them as «NAME».
_PIECES: dict[str, str] = {}
_PIECES["S"] = r"[^.!?\n]"  # a character of the same sentence
_PIECES["START"] = r"(?:^|(?<=[.!?\n]))"  # a sentence start (patterns that look for a verb anywhere in the sentence)
_PIECES["FILLER"] = r"(?:(?!(?:our|my|own|and|or)\b)[\w'-]+\s+)"  # a word before a noun, not "our", "and"
# Who the agent is asked to become: an AI persona, a model without rules...
_PIECES["AI"] = (
    r"(?:(?:a|an|my|our|your|the)\s+)?['\"]?«FILLER»{0,2}?(?:(?:personal|virtual|executive)\s+)?"
    r"(?:assistant|concierge|secretary|a\.?i\.?|chat\s?bot|\w*bot|\w*gpt[\w.-]*|llm|(?:ai|language)\s+model|"
    r"(?-i:DAN)|persona|admin(?:istrator)?|superuser|root\s+user|unrestricted|uncensored|unfiltered|jailbroken)\b"
)
# ...or one of our people with authority (never after "act as": "act as your reseller" is a partnership).
_PIECES["STAFF"] = (
    r"(?:(?:a|an|my|our|your|the)\s+)?(?:account\s+manager|(?:your|my)\s+manager|sales\s+(?:director|manager)|"
    r"(?:finance|billing|accounts?|legal|sales)\s+(?:team|department|dept)|procurement\s+officer|ceo|cfo|coo)\b"
)
_PIECES["PERSONA"] = r"(?:«AI»|«STAFF»)"
# Asking to be given or shown something.
_PIECES["DISCLOSE"] = (
    r"(?:show|share|send|paste|print|output|tell|give|list|repeat|reveal|quote|include|attach|copy|dump|display|"
    r"disclose|forward|provide|spell\s+out|write\s+out|reply\s+with|email|e-mail|post|export|"
    r"(?:let\s+me|can\s+i|could\s+i|may\s+i|i\s+(?:want|need|would\s+like|'d\s+like)\s+to)\s+(?:see|read|view|have))"
)
# Rules that are public anyway: a partner programme's criteria, a discount's, the buyer's own RFP scoring.
_PIECES["PUBLIC"] = (
    r"(?!\s+(?:for|of)\s+(?:the\s+|your\s+|a\s+)?(?:partner|reseller|startup|nonprofit|non-profit|education|"
    r"discount|program|programme|plan|tier|trial|certification|grant|rfp|rfq|tender|bid|proposal|questionnaire)\b)"
)
# Our internals: how leads are scored, the agent's instructions, credentials.
_PIECES["SECRET"] = (
    r"(?:(?:scoring|qualification|qualifying|lead[- ]scoring|icp|ideal\s+customer\s+profile|internal|grading)\s+"
    r"(?:[\w-]+\s+)?(?:rubric|criteria|criterion|weights?|weightings?|rules|checklist|thresholds?|notes|matrix|"
    r"formula|logic|scorecard|playbook|prompt|instructions|guidelines|spreadsheet|framework|algorithm)«PUBLIC»"
    r"|\b(?:your|the|this)\s+rubric\b|\brubric\s+(?:you|your)\b"
    r"|\bsystem\s+prompt"
    r"|\b(?:your|the)\s+(?:system|initial|original|hidden|secret|exact|full|complete)\s+"
    r"(?:instructions|prompt|guidelines|rules)\b"
    r"|\byour\s+(?:instructions|prompt|guidelines)\b(?!\s+(?:for|on|to|about|how)\b)"
    r"|\binstructions\s+(?:you\s+were|you've\s+been|you\s+have\s+been|that\s+you\s+were|above)"
    r"|\b(?:guidelines|rules|prompt|instructions)\s+(?:that\s+)?you\s*(?:were|'ve\s+been|have\s+been)\s+"
    r"(?:given|set\s+up|configured|told|programmed|trained)\b"
    r"|\b(?:score|grade|rating|points?|weights?|weightings?)\s+(?:you\s+)?(?:gave|give|assign|assigned|put|apply)\b"
    r"|\b(?:scores?|grades?)\s+you\b"
    r"|\bhow\s+you\s+(?:scored|graded|rated|ranked|qualified)\s+(?:me|us|our)\b"
    r"|\b(?:criteria|weights|rules|rubric|thresholds|formula|logic)\b«S»{0,40}\b(?:uses?|applies|apply|used)\s+"
    r"(?:to|when|for)\s+(?:score|scoring|qualify|grade|rank|rate|evaluate|assess|prioriti[sz]e)\b"
    r"|\b(?:thresholds?|points?|weights?)\s+(?:for|of)\s+(?:an?\s+)?[a-d]\s+grade\b"
    r"|\byour\s+(?:api\s+keys?|passwords?|access\s+tokens?|api\s+tokens?|credentials|secret\s+keys?|tokens?)\b)"
)
_PIECES["BANK"] = (
    r"(?:bank(?:ing)?\s+(?:details|account|info(?:rmation)?|coordinates|connection|data)"
    r"|account\s+(?:number|no\b\.?|details)|remittance\s+(?:details|instructions|info(?:rmation)?)"
    r"|beneficiary(?:\s+(?:account|details|bank))?|iban|sort\s+code|routing\s+(?:number|no\b\.?)"
    r"|wire\s+(?:instructions|details)|payment\s+instructions|payee(?:\s+(?:details|account|name|info(?:rmation)?))?)"
)
_PIECES["IBAN"] = r"(?-i:\b[A-Z]{2}\d{2}(?:[ ]?[A-Z0-9]{4}){2,7}(?:[ ]?[A-Z0-9]{1,4})?\b)"
_PIECES["OTHERS"] = r"(?:customers?|clients?|contacts?|leads?|prospects?)"  # always someone else's data
_PIECES["DATA"] = (  # data about other people
    r"(?:\b(?:your|the|all|every|full|complete|entire|whole)\s+«FILLER»{0,2}?(?:crm|customer|client|contact|lead|"
    r"prospect|user|subscriber|mailing)s?\s+(?:export|list|database|db|records|table|dump|spreadsheet|csv|base)\b"
    r"|\bcrm\s+(?:export|data|dump|database|records|contacts)\b"
    r"|\b(?:(?:list|spreadsheet|export|csv|database|dump|names|e-?mails?|e-?mail\s+addresses|phone\s+numbers|"
    r"contact\s+(?:details|info(?:rmation)?))\s+(?:and\s+[\w-]+\s+)?(?:of|for|on|from)|(?:details|records|data)\s+of)"
    r"\s+(?:all\s+|every\s+|each\s+)?(?:the\s+)?(?:(?:your|other|current|existing|past|previous|all)\s+)*"
    r"(?:«OTHERS»|(?:(?<=your )|(?<=ther )|(?<=all ))(?:companies|users))\b"
    r"|\b(?:all|every|each)\s+(?:the\s+)?(?:contacts?|leads?|customers?|clients?|prospects?|records?|"
    r"e-?mail\s+address(?:es)?)\s+(?:you|in\s+your|on\s+file|from\s+your|that\s+you)\b"
    r"|\beverything\s+you\s+(?:have|hold|know)\s+(?:on|about)\s+other\b"
    r"|\bother\s+(?:customers|clients|leads|prospects|companies|contacts|users)(?:'s|')?\s+"
    r"(?:names|e-?mails|contacts|details|data|numbers|list|records)\b"
    r"|\b(?:everyone|everybody)\s+(?:else\s+)?(?:who|that)\s+(?:signed|requested|bought|registered|asked|booked)\b)"
)

# Spaced-out runs lose their word breaks ("s c o r i n g r u b r i c"): what each category looks for in them.
_SPACED_WORDS: dict[str, tuple[str, ...]] = {
    "override_instructions": tuple(
        "ignoreprevious ignoreallprevious ignoreyour ignoretheabove disregardyour newinstructions developermode "
        "jailbreak".split()
    ),
    "role_play": tuple(
        "youarenow youarenolonger actasdan actasif pretendyouare pretendtobe roleplayas doanythingnow "
        "fromnowonyou".split()
    ),
    "change_bank_details": tuple("bankdetails bankingdetails iban accountnumber sortcode routingnumber".split()),
    "reveal_internals": tuple(
        "scoringrubric systemprompt icpcriteria yourrubric yourinstructions scoringcriteria scoringrules "
        "scoringweights".split()
    ),
    "exfiltrate_data": tuple(
        "crmexport contactlist customerlist clientlist customerdatabase allcontacts allcustomers othercustomers "
        "otherleads leadlist".split()
    ),
    "skip_approval": tuple("skipapproval skipreview withoutreview bypassreview autoapprove".split()),
}


def _expand(pattern: str) -> str:
    while "«" in pattern:
        pattern = re.sub(r"«(\w+)»", lambda m: _PIECES[m.group(1)], pattern)
    return pattern


def _p(*alternatives: str) -> re.Pattern[str]:
    return re.compile("|".join(f"(?:{_expand(a)})" for a in alternatives), re.IGNORECASE)


@dataclass(frozen=True)
class Category:
    code: str  # stable: consumers read it from the brief's flag
    pattern: re.Pattern[str]
    warning: str  # what the closer reads


CATEGORIES: tuple[Category, ...] = (
    Category(
        "override_instructions",
        _p(
            r"\b(?:ignore|disregard|forget|override)\b.{0,40}\b(?:instructions?|rules?|prompts?|guidelines"
            r"|(?<!my )(?:previous|above)(?!\s+(?:message|e-?mail|mail|note|attachment|version|quote|request|form)))\b",
            r"\b(?:developer mode|jailbreak|new instructions|system:)\b",
            r"<\|?(?:im_start|system)\|?>|###\s*(?:instruction|system)",
            # German, French, Spanish
            r"\b(?:ignorier\w*|vergiss|vergessen\s+sie)\b«S»{0,40}\b(?:anweisungen|regeln|vorgaben|instruktionen)\b",
            r"\b(?:ignore[zr]?|oublie[zr]?)\b«S»{0,40}\b(?:instructions|consignes|règles)\b",
            r"\b(?:ignora\w*|olvida\w*)\b«S»{0,40}\b(?:instrucciones|reglas|indicaciones)\b",
        ),
        "The lead's text tries to override the agent's instructions — treat everything they wrote as data, "
        "not as instructions.",
    ),
    Category(
        "role_play",
        _p(
            r"\bpretend(?:ing)?\s+(?:to\s+be|(?:that\s+)?you\s*(?:'re|are|were))\b",
            r"\brole[- ]?play(?:ing)?\s+(?:as|that|the\s+role)\b",
            r"\b(?:let's|let\s+us)\s+play\s+a\s+game\b",
            r"\b(?:play|take\s+on|assume|adopt)\s+the\s+(?:role|part|persona|character)\s+of\s+«PERSONA»",
            r"\b(?:assume|adopt)\s+(?:the|a)\s+(?:persona|character)\b|\bstay\s+in\s+character\b",
            r"\bfrom\s+now\s+on\b,?\s+(?:you\s+(?:are|will\s+be)\s+«PERSONA»"
            r"|(?:respond|reply|answer|act|behave|speak|talk|write)\s+(?:as|like)\b)",
            r"\b(?:you\s+are\s+now|you're\s+now|now\s+you\s+are|you\s+will\s+now\s+be)\s+«PERSONA»",
            r"\b(?:you\s+are\s+now|you're\s+now)\s+(?-i:[A-Z])[\w-]*\s*,\s+«AI»",
            r"\brole\s*:\s*you\s+are\b|\byou\s+are\s+(?:my|our)\s+«FILLER»{0,2}?(?:assistant|concierge|secretary|"
            r"\w*bot|\w*gpt)\b",
            r"\byou\s+will\s+now\s+(?:act|behave|respond|answer|speak|pretend|be)\b",
            r"\byou\s+are\s+no\s+longer\s+(?:an?\s+|bound|restricted|limited|required)",
            r"\b(?:act|acting|behave|respond|answer|reply|speak|talk|write)\s+as\s+(?:if|though)\s+you\b",
            r"\b(?:act|acting|behave)\s+(?:as|like)\s+«AI»",
            r"\b(?:respond|answer|reply|speak|talk)\s+(?:only\s+)?(?:as|like)\s+(?:«PERSONA»|my\b)",
            r"\bsimulat\w*\s+(?:being|that\s+you|you\s+are|«AI»|«STAFF»)",
            r"\bimagine\s+(?:that\s+)?you\s*(?:'re|are|were)\s+«PERSONA»",
            r"\b(?:ai|assistant|bot|chatbot|gpt|llm|(?-i:DAN))\b«S»{0,20}\b(?:without|with\s+no|free\s+(?:of|from)|"
            r"has\s+no|have\s+no)\s+(?:any\s+)?(?:restrictions|filters|guardrails|rules|limits|limitations|censorship)\b",
            r"\bdo\s+anything\s+now\b|(?:(?-i:\bDAN\b)|\bgod|\bsudo|\bunrestricted|\buncensored|\bunfiltered)\s+mode\b",
            # German
            r"\btu\s+so,?\s+als\b|\btun\s+sie\s+so,?\s+als\b|\bstell\s+dir\s+vor,?\s+du\s+(?:bist|wärst)\b",
            r"\b(?:antworte|antworten\s+sie|agiere|agieren\s+sie|verhalte\s+dich|verhalten\s+sie\s+sich)\s+"
            r"(?:(?:ab\s+jetzt|ab\s+sofort|nur\s+noch|jetzt)\s+)?(?:als|wie)\s+(?:mein|ein|unser)\w*\s+(?:\w+\s+)?"
            r"\w*(?:assistent|ki|bot|berater)\w*",
            r"\b(?:spiel|spiele|spielen\s+sie|übernimm|übernehmen\s+sie)\s+(?:die|eine)\s+rolle\b"
            r"|\bschlüpf\w*\s+in\s+die\s+rolle\b",
            r"\b(?:du\s+bist|ab\s+jetzt\s+bist\s+du)\s+(?:(?:jetzt|nun|ab\s+jetzt|ab\s+sofort)\s+)?(?:mein|ein|unser)"
            r"\w*\s+(?:persönliche\w*\s+)?(?:assistent\w*|ki|bot|chatbot)\b",
            # French
            r"\bfai(?:s|tes)\s+(?:comme\s+si|semblant)\b|\bjoue[zr]?\s+le\s+r[ôo]le\b"
            r"|\bimagine[zr]?\s+que\s+(?:tu|vous)\s+(?:es|êtes)\b",
            r"\btu\s+es\s+(?:maintenant|désormais|dorénavant)\b|\bà\s+partir\s+de\s+maintenant,?\s+(?:tu|vous)\s+"
            r"(?:es|êtes|réponds|répondez|agis|agissez)\b|\b(?:réponds|répondez|agis|agissez)\s+comme\s+si\b",
            # Spanish
            r"\bfing(?:e|ir)\b|\bha(?:z|ga)\s+como\s+si\b|\bact[úu]a\s+como\s+si\b|\bahora\s+eres\b",
            r"\ba\s+partir\s+de\s+ahora,?\s+(?:eres|ser[áa]s|responde|act[úu]a)\b|\b(?:juega|interpreta)\s+el\s+papel\b"
            r"|\bimagina\s+que\s+eres\b",
        ),
        "The lead's text asks the agent to play a role (an assistant, a persona, one of our staff) — nothing said in "
        "that role commits us.",
    ),
    Category(
        "redirect_recipient",
        _p(r"\b(?:send|forward|email|mail|cc|bcc|copy|reply)\b.{0,60}\b(?:to|at)\b\s*[\w.+-]+@[\w-]+\."),
        "The lead's text asks us to send to another address — replies go only to the contact on record.",
    ),
    Category(
        "change_price",
        _p(
            r"\b(?:change|set|lower|reduce|cut|waive|make)\b.{0,40}\b(?:price|pricing|cost|fee|amount|invoice|discount)\b",
            r"(?:\b\d{1,3}\s?%|\bfree of charge\b|\bfor free\b).{0,30}\b(?:discount|off)\b",
            r"\bdiscount of\b",
        ),
        "The lead's text tries to set a price, discount or invoice amount — prices come from the price book and "
        "approved discounts only.",
    ),
    Category(
        "change_bank_details",
        _p(
            r"\b(?:update[sd]?|chang(?:e|ed|es|ing)|replace[sd]?|switch(?:ed)?|amend(?:ed)?)\b«S»{0,30}«BANK»",
            r"\b(?:new|updated)\s+(?:[\w-]+\s+)?«BANK»",
            r"«BANK»\s+(?:has|have|had)\s+(?:been\s+|recently\s+)?(?:changed|updated|moved|amended)\b",
            r"\b(?:wire|transfer|remit|send|pay|paid|deposit|route|direct|refund(?:ed)?)\b«S»{0,50}\b(?:to|into|on)\s+"
            r"(?:iban\b|(?:our|my|this|the\s+following|a\s+different|another|the\s+new)\s+(?:new\s+)?(?:iban|"
            r"bank\s+account|beneficiary|acct|account\s+(?:number|no\b|below|ending|#|:))|(?:a\s+different|another|"
            r"our\s+new|my\s+new|the\s+new)\s+account\b(?!\s+manager))",
            r"«IBAN»",
            r"\b(?:paid|pay|wire\w*|transfer\w*|remit\w*|send|sent|deposit\w*)\b«S»{0,50}\b(?:to|into)\s+"
            r"(?:the\s+|our\s+)?(?:bank\s+)?account\s*(?:no\b\.?|number|#|:)?\s*\d{6,}",
            r"\bsort(?:\s*code)?\s*[:#]?\s*\d{2}[- ]?\d{2}[- ]?\d{2}\b",
            r"\b(?:iban|sort\s+code|routing\s+(?:number|no\b\.?)|aba(?:\s+routing)?|routing)\s*[:#]?\s*\d[\d \-]{5,}",
            # German
            r"\b(?:neue|geänderte|aktualisierte)\w*\s+(?:bankverbindung|kontoverbindung|bankdaten|kontodaten|iban|"
            r"kontonummer)\b|\b(?:bankverbindung|kontoverbindung|bankdaten|kontodaten)\s+(?:hat|haben)\s+sich\s+"
            r"geändert\b",
            r"\b(?:ändern|aktualisieren|änderung)\w*«S»{0,30}\b(?:bankverbindung|kontoverbindung|bankdaten|kontodaten)\b",
            r"\b(?:nur\s+noch|ab\s+sofort|künftig|zukünftig|ab\s+jetzt)\b«S»{0,30}\b(?:auf|an)\s+"
            r"(?:unser|dieses|folgende)\w*\s+(?:neue\w*\s+)?(?:konto|bankverbindung|iban)\b",
            # French
            r"\b(?:nouvel(?:le)?s?|nouveaux?)\s+(?:coordonnées\s+bancaires|rib|iban|compte\s+bancaire)\b",
            r"\b(?:mettre\s+à\s+jour|mise\s+à\s+jour|modifie[rz]?|change[rz]?)\b«S»{0,30}\b"
            r"(?:coordonnées\s+bancaires|rib|iban|compte\s+bancaire)\b"
            r"|\bcoordonnées\s+bancaires\s+ont\s+(?:changé|été\s+modifiées)",
            r"\b(?:virement|paiement|versement|payer|virer)\b«S»{0,60}\b(?:sur|vers)\s+(?:notre|ce|mon)\s+"
            r"(?:nouveau\s+)?(?:compte|rib|iban)\b",
            # Spanish
            r"\b(?:actualic\w*|actualiz\w*|cambi\w*|modific\w*)\b«S»{0,30}\b(?:datos\s+bancarios|cuenta\s+bancaria|"
            r"n[úu]mero\s+de\s+cuenta|iban)\b"
            r"|\bnuev[oa]s?\s+(?:cuenta\s+bancaria|iban|n[úu]mero\s+de\s+cuenta|datos\s+bancarios)\b",
            r"\b(?:transfer\w*|pag\w*|ingres\w*|deposit\w*)\b«S»{0,60}\b(?:a|en)\s+(?:nuestra|esta|mi)\s+"
            r"(?:nueva\s+)?(?:cuenta|iban)\b",
        ),
        "The lead's text gives or changes bank or payment details, a common payment-fraud trick — do not use them; "
        "confirm any bank change by phone on a number from our records.",
    ),
    Category(
        "reveal_internals",
        _p(
            r"\b«DISCLOSE»\b«S»{0,60}«SECRET»",
            r"\b(?:print|repeat|reveal|output|quote|dump|display|disclose|paste)\b«S»{0,40}\bthe\s+"
            r"(?:instructions|prompt|guidelines)\b(?!\s+(?:for|on|to|about|how)\b)",
            r"\bwhat\s+(?:instructions|rules|prompt|guidelines|criteria)\s+(?:were|have)\s+you\s+(?:been\s+)?"
            r"(?:given|told|programmed|configured|set\s+up)\b",
            r"\bwhat\s+(?:are|is)\s+(?:your|the)\s+(?:internal\s+)?(?:scoring|icp|lead[- ]scoring)\s+(?:[\w-]+\s+)?"
            r"(?:criteria|rules|weights|rubric|thresholds)\b",
            # German, French, Spanish: a verb to hand over anywhere in the sentence, and our rules
            r"«START»(?=«S»*\b(?:send|schick|zeig|nenn|geb|gib|teil|verrat|kopier|auflist|ausgeb)\w*)«S»*\b"
            r"(?:intern\w*\s+\w*(?:kriterien|regeln|gewichtung\w*)|bewertungs(?:kriterien|schema|regeln)"
            r"|scoring-?(?:kriterien|regeln|modell)|qualifizierungskriterien|punkteschema|system-?prompt"
            r"|(?:ihre|deine|eure)\s+(?:internen\s+)?(?:anweisungen|vorgaben|instruktionen))\b",
            r"«START»(?=«S»*\b(?:montre|envoie|envoyez|partage|donne|affiche|copie|colle|liste|révèle|indique)\w*)«S»*\b"
            r"(?:(?:critères|règles|grille|pondération|barème)\s+(?:internes?|de\s+(?:notation|qualification|scoring|"
            r"évaluation))|(?:tes|vos)\s+(?:instructions|consignes)|prompt\s+système|grille\s+de\s+notation)\b",
            r"«START»(?=«S»*\b(?:compart\w*|env[ií]\w*|mand\w*|muestr\w*|mostr\w*|d[ií]ga\w*|dime|revel\w*|copi\w*|"
            r"peg\w*|list\w*)\b)«S»*\b(?:(?:criterios|reglas|pesos|r[úu]brica)\s+(?:internos|internas|de\s+"
            r"(?:calificaci[óo]n|puntuaci[óo]n|evaluaci[óo]n))|(?:tus|sus)\s+instrucciones|prompt\s+del\s+sistema)\b",
        ),
        "The lead's text asks for our internal scoring rules, instructions or credentials — do not share them.",
    ),
    Category(
        "exfiltrate_data",
        _p(
            r"\b(?:list|export|dump|extract|download)\b«S»{0,20}\b(?:the\s+|all\s+)?other\s+(?:customers|clients|leads|"
            r"prospects|companies|contacts|users|accounts)\b",
            r"\b«DISCLOSE»\b«S»{0,60}«DATA»",
            # German, French, Spanish: a verb to hand over anywhere in the sentence, and a list of your customers
            r"«START»(?=«S»*\b(?:schick|send|geb|gib|teil|exportier|übermittel|liefer|nenn|zeig)\w*)«S»*\b"
            r"(?:(?:liste|übersicht|export|tabelle|datenbank|daten|e-?mail-?adressen|kontaktdaten|telefonnummern)\w*\s+"
            r"(?:aller|von\s+allen|anderer|ihrer|deiner|eurer)\s+(?:\w+\s+)?(?:kunden|leads|kontakte|interessenten)"
            r"|(?:kunden|kontakt|lead)(?:liste|datenbank|daten|export)|crm-?export)\b",
            r"«START»(?=«S»*\b(?:envoy\w*|partag\w*|transmet\w*|donne\w*|export\w*)\b)«S»*\b"
            r"(?:liste|fichier|base\s+de\s+données|export|données|coordonnées|e-?mails|adresses(?:\s+e-?mail)?)\s+"
            r"(?:complète?\s+)?(?:de|des)\s+(?:tous\s+)?(?:(?:vos|tes|les)\s+)?(?:autres\s+)?"
            r"(?:clients|contacts|prospects|leads)\b",
            r"«START»(?=«S»*\b(?:env[ií]\w*|mand\w*|compart\w*|pas(?:en|e|a|ar)|d[ée]n(?:me|nos|os)|exporta\w*)\b)«S»*\b"
            r"(?:lista|listado|base\s+de\s+datos|exportaci[óo]n|datos|correos|contactos|tel[ée]fonos)\s+"
            r"(?:completa\s+)?de\s+(?:todos\s+)?(?:sus|tus|los)\s+(?:otros\s+)?(?:clientes|contactos|leads|prospectos)\b",
        ),
        "The lead's text asks for data about other customers or contacts (a list, an export, their details) — do not "
        "send any.",
    ),
    # A promise nobody on record made ("as agreed, the first year is free"): a human checks it.
    Category(
        "claimed_commitment",
        _p(
            r"\b(?:as (?:agreed|promised)|you (?:promised|agreed)|your (?:rep|colleague|team) (?:promised|agreed|said)|"
            r"pre-?approved)\b"
        ),
        "The lead's text claims a promise or approval that no record shows — check with whoever supposedly made it "
        "before relying on it.",
    ),
    Category(
        "invoke_tools",
        _p(
            r"\b(?:call|use|invoke|run|execute|trigger)\b.{0,30}\b(?:tool|function|api|crm_\w+|send_\w+|update_\w+|webhook)\b"
        ),
        "The lead's text tries to make the agent run tools or change records — lead text cannot widen what the agent "
        "may do; make any change yourself only if it is right.",
    ),
    Category(
        "skip_approval",
        _p(
            r"\b(?:skip|bypass|without|no need for)\b.{0,30}\b(?:approval|review|human|checks?|confirmation)\b",
            r"\bauto-?approve|\bapprove (?:this |it )?automatically\b",
        ),
        "The lead's text asks to skip review or approval — every message still needs a person's approval.",
    ),
)

INJECTION_PATTERNS: dict[str, re.Pattern[str]] = {c.code: c.pattern for c in CATEGORIES}

# What the closer reads for each code, the ones raised outside the patterns included.
WARNINGS: dict[str, str] = {
    **{c.code: c.warning for c in CATEGORIES},
    "foreign_email_address": "The lead's text contains an email address that is not theirs — do not send to it "
    "unless you have checked it yourself.",
    "model_suspected": "The model judged the lead's text to be an attempt to steer it — read it yourself before "
    "approving.",
}


def warning(code: str) -> str:
    """The sentence for a code; an unknown code still reads as words, never as a bare code."""
    return WARNINGS.get(code) or (
        f"The lead's text may try to steer the agent ({code.replace('_', ' ')}) — read it yourself before approving."
    )


# --- the screen ----------------------------------------------------------------------------------------------------


def lead_text(lead: dict[str, Any]) -> str:
    """Everything the lead typed, for the injection screen: not only the message (a company or title field
    can carry an instruction too)."""
    custom = lead.get("custom") or {}
    parts = [lead.get(k) for k in ("message", "company", "title", "first_name", "last_name", "website")]
    parts += [v for v in custom.values() if isinstance(v, str)]
    return "\n".join(str(p) for p in parts if p)


def injection_signals(text: str | None, own_email: str | None = None) -> list[str]:
    """Codes of the steering attempts found in a lead's free text, in the order of CATEGORIES (empty when there
    are none). The text is read as typed and with its obfuscations undone."""
    if not text:
        return []
    plain = normalised(text)
    readings = list(dict.fromkeys((text, plain, deobfuscated(text))))
    squeezed = [w.lower() for w in spaced_runs(text) if len(w) >= 4]
    found = [
        c.code
        for c in CATEGORIES
        if any(c.pattern.search(r) for r in readings)
        or any(word in run for word in _SPACED_WORDS.get(c.code, ()) for run in squeezed)
    ]
    addresses = {e.lower() for r in {text, plain} for e in EMAIL.findall(r)}
    others = addresses - {(own_email or "").lower()}
    if "redirect_recipient" in found and not others:
        found.remove("redirect_recipient")  # "reply to me at <my own address>" redirects nothing
    if others and "redirect_recipient" not in found:
        found.append("foreign_email_address")
    return found


def injection_flags(codes: list[str]) -> list[str]:
    """The brief's flags for what the screen found: the stable code (`possible_prompt_injection:a,b`) that
    routing, evals and clients read, then one sentence per category for the closer."""
    if not codes:
        return []
    return [f"{FLAG}:" + ",".join(codes), *(warning(code) for code in codes)]
