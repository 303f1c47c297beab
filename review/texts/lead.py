"""First-touch texts of the lead graph (deterministic engine): slots are filled from records only."""

from __future__ import annotations

TEMPLATES: dict[str, dict[str, str]] = {
    "first_touch_fast": {
        "subject": "{{ company }} and {{ our_company }}: a quick call this week?",
        "body": """Hi {{ first_name }},

{% if opening %}{{ opening }}
{% endif %}Thanks for reaching out to {{ our_company }}{% if topics %} about {{ topics }}{% endif %}.
{% if industry %}We work with a number of {{ industry }} teams{% else %}We work with teams{% endif %} \
like {{ company }}, and the quickest way to see whether we are a fit is a 20-minute call.

Would one of the next two working days suit you? Reply with a time that works and I will send an invite.

Best regards,
{{ sender_name }}
{{ our_company }}

If you would rather not hear from us, reply "unsubscribe" or visit {{ unsubscribe_url }}.
""",
    },
    "first_touch_nurture": {
        "subject": "Thanks for getting in touch, {{ first_name }}",
        "body": """Hi {{ first_name }},

Thank you for your interest in {{ our_company }}{% if topics %} and your note about {{ topics }}{% endif %}.
I will send you a short overview of how we help companies like {{ company }}; if the timing is right for a
conversation, just reply to this email and we will set one up.

Best regards,
{{ sender_name }}
{{ our_company }}

If you would rather not hear from us, reply "unsubscribe" or visit {{ unsubscribe_url }}.
""",
    },
    "polite_decline": {
        "subject": "Your enquiry to {{ our_company }}",
        "body": """Hi {{ first_name }},

Thank you for contacting {{ our_company }}. Having looked at your enquiry, we do not think we are the right
partner for {{ company }} at the moment, and we would rather tell you now than waste your time.

We wish you every success.

Best regards,
{{ sender_name }}
{{ our_company }}

If you would rather not hear from us, reply "unsubscribe" or visit {{ unsubscribe_url }}.
""",
    },
    "call_task": {
        "subject": "Call {{ first_name }} at {{ company }}",
        "body": """Call {{ full_name }} ({{ title }}) at {{ company }}{% if phone %} on {{ phone }}{% endif %}.
Email is not allowed for this contact: do not send email.
Score {{ score }} ({{ grade }}). {{ summary }}
""",
    },
}
