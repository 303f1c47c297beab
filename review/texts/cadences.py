"""Follow-up templates, tone rising from light to direct. Slots come from records and what we sent. A name or
company the records do not have is an empty slot: the text reads naturally without it ("Hello,", "teams like
yours"), never "Hi there" or "your company" (issue 17)."""

from __future__ import annotations

_SIGN = "\n\nBest regards,\n{{ sender_name }}\n{{ our_company }}\n\n" + (
    'If you would rather not hear from us, reply "unsubscribe" or visit {{ unsubscribe_url }}.'
)
_HI = "{% if first_name %}Hi {{ first_name }},{% else %}Hello,{% endif %}\n\n"

TEMPLATES: dict[str, dict[str, str]] = {
    "follow_up_light": {
        "subject": "Re: {{ last_subject }}",
        "body": _HI + "Just bringing my note from {{ days_since_first_touch }} days ago back to the "
        "top of your inbox. Is a short call about {{ topics or 'your plans' }} still of interest?" + _SIGN,
    },
    "follow_up_value": {
        "subject": "{% if company %}{{ company }}: one{% else %}One{% endif %} idea before we talk",
        "body": _HI + "Teams like {% if company %}{{ company }}{% else %}yours{% endif %} usually start with a "
        "20-minute call to see whether {{ our_company }} fits. If that sounds useful, reply with a time that suits "
        "you." + _SIGN,
    },
    "follow_up_direct": {
        "subject": "Should I close your file{% if first_name %}, {{ first_name }}{% endif %}?",
        "body": _HI + "I have not heard back, so I will keep this short: is this a priority "
        "{% if company %}for {{ company }} {% endif %}this quarter? A yes or no reply is all I need." + _SIGN,
    },
    "break_up": {
        "subject": "Closing the loop",
        "body": _HI + "I will stop following up for now. If the timing changes, just reply to this "
        "email and we will pick it up from here." + _SIGN,
    },
    "proposal_follow_up": {
        "subject": "Questions about the proposal?",
        "body": _HI + "Thanks for taking a look at our proposal. Would a short call help to go "
        "through it together? Reply with a time that works for you." + _SIGN,
    },
    "reactivation": {
        "subject": "Picking up where we left off{% if first_name %}, {{ first_name }}{% endif %}",
        "body": _HI + "It has been {{ days_quiet }} days since we last spoke about "
        "{% if company %}{{ company }}'s{% else %}your{% endif %} plans. Is it worth a short call to see where things "
        "stand?" + _SIGN,
    },
    "reply_handoff": {
        "subject": "{{ full_name }} replied: take over the conversation",
        "body": "{{ full_name }}{% if company %} ({{ company }}){% endif %} replied"
        "{% if note %}: {{ note }}{% endif %}.\nAutomated follow-ups are stopped. What we sent so far: {{ history }}\n"
        "Reply personally today.\n",
    },
}
