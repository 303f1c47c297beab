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
}
