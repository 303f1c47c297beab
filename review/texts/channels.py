"""Texts for SMS and WhatsApp (the subject is only the queue's label: neither channel sends one). Short on
purpose: one SMS segment where the slots allow, and always how to opt out."""

from __future__ import annotations

TEMPLATES: dict[str, dict[str, str]] = {
    "text_first_touch": {
        "subject": "Text reply to {% if full_name %}{{ full_name }}{% else %}{{ phone }}{% endif %}",
        # No name on record: "Hello," (never "Hi there" nor "Hi ,"; issue 17).
        "body": "{% if first_name %}Hi {{ first_name }}{% else %}Hello{% endif %}, thanks for your message to "
        "{{ our_company }}{% if topics %} about {{ topics }}"
        "{% endif %}. {{ sender_name }} here: when suits you for a short call? Reply STOP to opt out.",
    },
    "text_follow_up": {
        "subject": "Text follow-up to {{ full_name }}",
        "body": "{% if first_name %}Hi {{ first_name }}{% else %}Hello{% endif %}, {{ sender_name }} from "
        "{{ our_company }} again: would a short call this week help? Reply STOP to opt out.",
    },
    "dunning_text": {
        "subject": "Text reminder: invoice {{ number }}",
        "body": "{% if first_name %}Hi {{ first_name }}{% else %}Hello{% endif %}, {{ our_company }} here: invoice "
        "{{ number }} for {{ amount }} {% if days_overdue %}was due on{% else %}is due on{% endif %} {{ due_on }}. "
        "Pay at {{ payment_link }} or reply if anything is unclear. Reply STOP to opt out.",
    },
    "client_update_text": {
        "subject": "Text update to {{ company }}: {{ milestone }} complete",
        "body": "{% if first_name %}Hi {{ first_name }}{% else %}Hello{% endif %}, {{ our_company }} here: "
        "{{ milestone }} is complete. Next: {{ next_step }}. Reply with any questions. Reply STOP to opt out.",
    },
}
