"""Payment reminder templates, one per tone (Jinja2, sandboxed, strict undefined). Every slot comes from
the invoice, the customer's contact record and our settings: amounts are the re-read net balance."""

from __future__ import annotations

_PAY = "You can pay at {{ payment_link }}{% if reference %} (reference {{ reference }}){% endif %}."
# No name on record: "Hello," (never "Hi there"; issue 17).
_HI = "{% if first_name %}Hi {{ first_name }},{% else %}Hello,{% endif %}\n\n"
_SIGN = "\n\nBest regards,\n{{ sender_name }}\n{{ our_company }}\n"

TEMPLATES: dict[str, dict[str, str]] = {
    "dunning_friendly": {
        "subject": "{% if days_overdue > 0 %}A reminder about{% else %}Coming up:{% endif %} invoice {{ number }}",
        "body": _HI + "{% if days_overdue > 0 %}A quick reminder that invoice {{ number }} for "
        "{{ amount }} was due on {{ due_on }}.{% else %}Just a heads-up that invoice {{ number }} for {{ amount }} is "
        "due on {{ due_on }}.{% endif %} " + _PAY + " If it is already on its way, please ignore this note." + _SIGN,
    },
    "dunning_neutral": {
        "subject": "Invoice {{ number }} is {{ days_overdue }} days overdue",
        "body": _HI + "Our records show invoice {{ number }} for {{ amount }}, due on {{ due_on }}, "
        "is still open. " + _PAY + " If something is holding up the payment, reply and let us know." + _SIGN,
    },
    "dunning_firm": {
        "subject": "Action needed: invoice {{ number }} ({{ amount }}) is {{ days_overdue }} days overdue",
        "body": _HI + "Invoice {{ number }} for {{ amount }} was due on {{ due_on }} and is now "
        "{{ days_overdue }} days overdue. Please arrange payment this week. " + _PAY + " If there is a problem with "
        "the invoice, reply today so we can sort it out." + _SIGN,
    },
    "dunning_final": {
        "subject": "Call {{ full_name }} about invoice {{ number }} ({{ amount }}, {{ days_overdue }} days overdue)",
        "body": "Call {{ full_name }} at {{ company }}{% if phone %} on {{ phone }}{% endif %} about invoice "
        "{{ number }}: {{ amount }} open since {{ due_on }} ({{ days_overdue }} days). {{ history }}\n"
        "Agree a payment date or find out what blocks it; escalate to the manager if there is no commitment.\n",
    },
}
