"""Client-facing templates of the deal flow (cover emails, onboarding, status updates, invoices)."""

from __future__ import annotations

# No name on record: "Hello," (never "Hi there"; issue 17).
_HI = "{% if first_name %}Hi {{ first_name }},{% else %}Hello,{% endif %}\n\n"
_SIGN = "\n\nBest regards,\n{{ sender_name }}\n{{ our_company }}\n"

TEMPLATES: dict[str, dict[str, str]] = {
    "proposal_cover": {
        "subject": "Our proposal for {{ company }} ({{ number }})",
        "body": _HI + "Attached is our proposal {{ number }} for {{ company }}: {{ total }} in "
        "total, valid until {{ valid_until }}. Reply with any question, or let us know when you are ready to sign."
        + _SIGN,
    },
    "onboarding_welcome": {
        "subject": "Welcome to {{ our_company }}: what happens next",
        "body": _HI + "Thank you for signing. Here is what happens next: we hold the kickoff on "
        "{{ kickoff_on }}, then work through the plan: {{ milestones }}. Your contact for anything along the way is "
        "{{ owner }}; just reply to this email." + _SIGN,
    },
    "onboarding_kickoff": {
        "subject": "Tomorrow: our kickoff for {{ company }}",
        "body": _HI + "A reminder that our kickoff is on {{ kickoff_on }}. We will go through the "
        "plan ({{ milestones }}) and agree who does what. If the time no longer works, reply and {{ owner }} will "
        "find another." + _SIGN,
    },
    "invoice_email": {
        "subject": "Invoice {{ number }} from {{ our_company }}: {{ amount }} due {{ due_on }}",
        "body": _HI + "Attached is invoice {{ number }}{% if milestone %} for the {{ milestone }} "
        "milestone{% endif %}: {{ amount }}, due on {{ due_on }}. You can pay at {{ payment_link }} "
        "(reference {{ number }}). If anything on the invoice looks wrong, reply and we will sort it out." + _SIGN,
    },
    "client_update": {
        "subject": "{{ company }}: {{ milestone }} is complete",
        "body": _HI + "A short update: {{ milestone }} is complete. Next: {{ next_step }}. "
        "Reply if you have questions." + _SIGN,
    },
}
