"""Client-facing templates of the deal flow (cover emails, onboarding, status updates, invoices)."""

from __future__ import annotations

_SIGN = "\n\nBest regards,\n{{ sender_name }}\n{{ our_company }}\n"

TEMPLATES: dict[str, dict[str, str]] = {
    "proposal_cover": {
        "subject": "Our proposal for {{ company }} ({{ number }})",
        "body": "Hi {{ first_name }},\n\nAttached is our proposal {{ number }} for {{ company }}: {{ total }} in "
        "total, valid until {{ valid_until }}. Reply with any question, or let us know when you are ready to sign."
        + _SIGN,
    },
    "onboarding_welcome": {
        "subject": "Welcome to {{ our_company }}: what happens next",
        "body": "Hi {{ first_name }},\n\nThank you for signing. Here is what happens next: we hold the kickoff on "
        "{{ kickoff_on }}, then work through the plan: {{ milestones }}. Your contact for anything along the way is "
        "{{ owner }}; just reply to this email." + _SIGN,
    },
    "onboarding_kickoff": {
        "subject": "Tomorrow: our kickoff for {{ company }}",
        "body": "Hi {{ first_name }},\n\nA reminder that our kickoff is on {{ kickoff_on }}. We will go through the "
        "plan ({{ milestones }}) and agree who does what. If the time no longer works, reply and {{ owner }} will "
        "find another." + _SIGN,
    },
    "invoice_email": {
        "subject": "Invoice {{ number }} from {{ our_company }}: {{ amount }} due {{ due_on }}",
        "body": "Hi {{ first_name }},\n\nAttached is invoice {{ number }}{% if milestone %} for the {{ milestone }} "
        "milestone{% endif %}: {{ amount }}, due on {{ due_on }}. You can pay at {{ payment_link }} "
        "(reference {{ number }}). If anything on the invoice looks wrong, reply and we will sort it out." + _SIGN,
    },
    "client_update": {
        "subject": "{{ company }}: {{ milestone }} is complete",
        "body": "Hi {{ first_name }},\n\nA short update: {{ milestone }} is complete. Next: {{ next_step }}. "
        "Reply if you have questions." + _SIGN,
    },
}
