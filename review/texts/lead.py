"""First-touch texts of the lead graph (deterministic engine): slots are filled from records only.

The switches `formal`, `short`, `call_next_week` and `case_study` are the choices a closer's instruction can make
("respond": agents/lead/instructions.py); all false or empty, the text is the plain first touch. A name or company
the records do not have is an empty slot: the text reads naturally without it ("Hello,", "teams like yours"), never
"Hi there" or "your company"."""

from __future__ import annotations

TEMPLATES: dict[str, dict[str, str]] = {
    "first_touch_fast": {
        "subject": "{% if company %}{{ company }} and {% endif %}{{ our_company }}: a "
        "{% if formal %}short{% else %}quick{% endif %} call "
        "{% if call_next_week %}next week{% else %}this week{% endif %}?",
        "body": """{% if formal and full_name %}Dear {{ full_name }},\
{% elif first_name and not formal %}Hi {{ first_name }},{% else %}Hello,{% endif %}


{% if opening %}{{ opening }}
{% endif %}{% if formal %}Thank you for contacting{% else %}Thanks for reaching out to{% endif %} \
{{ our_company }}{% if topics %} about {{ topics }}{% endif %}.
{% if not short %}
{% if industry %}We work with a number of {{ industry }} teams{% else %}We work with teams{% endif %} \
like {% if company %}{{ company }}{% else %}yours{% endif %}, and the quickest way to see whether we are a fit is a \
20-minute call.
{% endif %}
{% if case_study %}

A similar project of ours: {{ case_study }}.
{% endif %}

Would {% if call_next_week %}a 20-minute call next week{% else %}one of the next two working days{% endif %} \
suit you? Reply with a time that works and I will send an invite.

{% if formal %}Kind regards{% else %}Best regards{% endif %},
{{ sender_name }}
{{ our_company }}

If you would rather not hear from us, reply "unsubscribe" or visit {{ unsubscribe_url }}.
""",
    },
    "first_touch_nurture": {
        "subject": "Thanks for getting in touch{% if formal and full_name %}, {{ full_name }}{% elif first_name %}, "
        "{{ first_name }}{% endif %}",
        "body": """{% if formal and full_name %}Dear {{ full_name }},\
{% elif first_name and not formal %}Hi {{ first_name }},{% else %}Hello,{% endif %}


{% if opening %}{{ opening }}
{% endif %}Thank you for your interest in {{ our_company }}{% if topics %} and your note about {{ topics }}{% endif %}.
{% if not short %}
I will send you a short overview of how we help companies like {% if company %}{{ company }}{% else %}yours\
{% endif %}; if the timing is right for a
conversation, just reply to this email and we will set one up.
{% endif %}
{% if case_study %}

A similar project of ours: {{ case_study }}.
{% endif %}
{% if call_next_week %}

Would a 20-minute call next week suit you? Reply with a time that works and I will send an invite.
{% endif %}

{% if formal %}Kind regards{% else %}Best regards{% endif %},
{{ sender_name }}
{{ our_company }}

If you would rather not hear from us, reply "unsubscribe" or visit {{ unsubscribe_url }}.
""",
    },
    "polite_decline": {
        "subject": "Your enquiry to {{ our_company }}",
        "body": """{% if first_name %}Hi {{ first_name }},{% else %}Hello,{% endif %}


Thank you for contacting {{ our_company }}. Having looked at your enquiry, we do not think we are the right
partner for {% if company %}{{ company }}{% else %}you{% endif %} at the moment, and we would rather tell you now \
than waste your time.

We wish you every success.

Best regards,
{{ sender_name }}
{{ our_company }}

If you would rather not hear from us, reply "unsubscribe" or visit {{ unsubscribe_url }}.
""",
    },
    "call_task": {
        "subject": "Call {% if full_name %}{{ full_name }}{% else %}the lead{% endif %}"
        "{% if company %} at {{ company }}{% endif %}",
        "body": """Call {% if full_name %}{{ full_name }}{% else %}the lead{% endif %} \
({{ title }}){% if company %} at {{ company }}{% endif %}{% if phone %} on {{ phone }}{% endif %}.
Email is not allowed for this contact: do not send email.
Score {{ score }} ({{ grade }}). {{ summary }}
""",
    },
}
