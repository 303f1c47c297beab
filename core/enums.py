"""Every status, kind, stage and event type, defined once. StrEnum members are their text, so they are
stored as plain strings, compare equal to them and serialise as them in JSON and the OpenAPI schema."""

from __future__ import annotations

from enum import IntEnum, StrEnum


class ItemStatus(StrEnum):
    """A review item's life: pending -> approved | rejected; approved -> sent | done | cancelled | failed |
    send_failed | delivery_unknown. The last two wait for a person: Retry (back to approved) or, when the
    provider may have the message, mark as sent."""

    PENDING = "pending"
    APPROVED = "approved"
    REJECTED = "rejected"
    SENT = "sent"
    DONE = "done"
    CANCELLED = "cancelled"
    FAILED = "failed"
    # The send failed for good (a permanent refusal, or transient failures for the whole retry window).
    SEND_FAILED = "send_failed"
    # A crash left the message handed to the provider without an answer: it may or may not have gone out.
    DELIVERY_UNKNOWN = "delivery_unknown"


# An approved item that was carried out, or is being: the approval record exists.
APPROVED_STATES = (
    ItemStatus.APPROVED,
    ItemStatus.SENT,
    ItemStatus.DONE,
    ItemStatus.SEND_FAILED,
    ItemStatus.DELIVERY_UNKNOWN,
)
# Final states after execution.
EXECUTED_STATES = (
    ItemStatus.SENT,
    ItemStatus.DONE,
    ItemStatus.CANCELLED,
    ItemStatus.FAILED,
    ItemStatus.SEND_FAILED,
    ItemStatus.DELIVERY_UNKNOWN,
)
# Approved items a person must act on again: the send failed, or nobody knows whether it went out.
NEEDS_ATTENTION_STATES = (ItemStatus.SEND_FAILED, ItemStatus.DELIVERY_UNKNOWN)


class ItemKind(StrEnum):
    """What approving an item does: send an email, hand a call to a person, or issue an invoice."""

    EMAIL = "email"
    CALL_TASK = "call_task"
    INVOICE = "invoice"
    CONVERT = "convert"  # turn a lead into a deal (an agent proposes it, a person confirms)
    SMS = "sms"  # a text message to the contact record's number
    WHATSAPP = "whatsapp"  # a WhatsApp message (free text inside the 24-hour window, else an approved template)
    PAYMENT_REQUEST = "payment_request"  # an M-Pesa STK Push prompt to the customer's phone for an invoice


# Items that send a message to a customer: the consent check, the outbox and the grounding guard apply.
MESSAGE_KINDS = (ItemKind.EMAIL, ItemKind.SMS, ItemKind.WHATSAPP)
PHONE_KINDS = (ItemKind.SMS, ItemKind.WHATSAPP)


class ConsentStatus(StrEnum):
    """A contact's consent on a messaging channel; opted_out is forever (STOP, UNSUBSCRIBE)."""

    GRANTED = "granted"
    OPTED_OUT = "opted_out"


class ItemSource(StrEnum):
    """Who queued the item; the executor and the resume dispatch read this, never the thread id's text."""

    LEAD = "lead"  # the lead graph's first touch (a LangGraph interrupt)
    PROPOSAL = "proposal"  # the proposal graph's cover email (a LangGraph interrupt)
    CADENCE = "cadence"  # follow-ups, reply hand-offs, stale-deal reactivation (daily scan, lead events)
    DUNNING = "dunning"  # payment reminders (daily scan)
    ONBOARDING = "onboarding"  # welcome and kickoff emails after a signature
    CLIENT_UPDATE = "client_update"  # milestone status updates
    INVOICE = "invoice"  # a milestone's invoice to issue
    INVOICE_EMAIL = "invoice_email"  # the issued invoice sent to the client, its PDF attached
    CONVERSION = "conversion"  # a lead that asked for a quote or booked a meeting: make it a deal?
    PAYMENT_REQUEST = "payment_request"  # an M-Pesa STK Push for an invoice's balance


# Items whose approval resumes a LangGraph thread (the others are executed directly).
GRAPH_SOURCES = (ItemSource.LEAD, ItemSource.PROPOSAL)


class ReviewQueue(StrEnum):
    MAIN = "main"
    EXCEPTION = "exception"  # leads that fit no pattern wait for a human, not a cadence


class DecisionAction(StrEnum):
    APPROVE = "approve"
    REJECT = "reject"


class LeadStatus(StrEnum):
    NEW = "new"
    IMPORTED = "imported"
    PROCESSING = "processing"
    SCORED = "scored"
    IN_REVIEW = "in_review"
    DRAFT_REJECTED = "draft_rejected"
    CONTACTED = "contacted"
    NO_CONTACT_ALLOWED = "no_contact_allowed"
    CONVERTED = "converted"  # a deal was made from it


class DealStage(StrEnum):
    PROSPECTING = "prospecting"
    ENGAGING = "engaging"
    QUALIFIED = "qualified"
    PROPOSAL = "proposal"
    NEGOTIATION = "negotiation"
    WON = "won"
    LOST = "lost"
    CLOSED = "closed"  # closed deals from CRM imports (their outcome says won or lost)


OPEN_STAGES = (
    DealStage.PROSPECTING,
    DealStage.ENGAGING,
    DealStage.QUALIFIED,
    DealStage.PROPOSAL,
    DealStage.NEGOTIATION,
)


class DealOutcome(StrEnum):
    WON = "won"
    LOST = "lost"


class LeadEventType(StrEnum):
    REPLY = "reply"
    MEETING_BOOKED = "meeting_booked"
    PROPOSAL_OPENED = "proposal_opened"
    UNSUBSCRIBED = "unsubscribed"
    BOUNCED = "bounced"


class OutboxStatus(StrEnum):
    PENDING = "pending"
    SENDING = "sending"  # handed to the transport; the answer is not recorded yet
    SENT = "sent"
    FAILED = "failed"  # the last attempt failed (retried while the window lasts, else the item is send_failed)
    DELIVERY_UNKNOWN = "delivery_unknown"  # found 'sending' after a crash: never resent without a person


class NotificationKind(StrEnum):
    SEND_FAILED = "send_failed"
    DELIVERY_UNKNOWN = "delivery_unknown"
    INTEGRATION_DOWN = "integration_down"
    INTEGRATION_RECOVERED = "integration_recovered"
    TAKEN_OVER = "taken_over"  # someone took over a review item assigned to you
    NEW_A_LEAD = "new_a_lead"  # an A-grade lead's review item was assigned to you
    SLA_AT_RISK = "sla_at_risk"  # a pending item assigned to you is about to breach its SLA
    SLA_BREACHED = "sla_breached"  # breached: the item went back to the team queue (assignee and managers hear)
    PAYMENT_HELD = "payment_held"  # money arrived that names no invoice we issued: a person assigns it
    FISCAL_REJECTED = "fiscal_rejected"  # the tax authority refused an invoice: it is not sent until fixed


class NotificationChannel(StrEnum):
    IN_APP = "in_app"  # the Notifications page and its badge (a person's own row)
    EMAIL = "email"  # internal mail to the user's own address (the users table), sent by a job
    WEBHOOK = "webhook"  # the team's channel: Slack-compatible JSON to REVLOOP_NOTIFY_WEBHOOK_URL, one post per event


class DeliveryStatus(StrEnum):
    """One notification on one outbound channel (email, webhook)."""

    PENDING = "pending"  # queued for the worker (or retrying after a transient failure)
    HELD = "held"  # email during the recipient's quiet hours: sent when they end
    SENDING = "sending"  # handed to the transport; the answer is not recorded yet
    SENT = "sent"
    FAILED = "failed"  # a permanent refusal (4xx webhook, 5xx SMTP) or retries used up
    SKIPPED = "skipped"  # nothing to do at send time: the user was deactivated, or the webhook unset
    DELIVERY_UNKNOWN = "delivery_unknown"  # found 'sending' after a crash: never sent twice


class InvoiceStatus(StrEnum):
    ISSUED = "issued"
    PAID = "paid"
    VOID = "void"


class MilestoneStatus(StrEnum):
    PLANNED = "planned"
    COMPLETED = "completed"
    INVOICED = "invoiced"


class TemplateStatus(StrEnum):
    DRAFT = "draft"
    APPROVED = "approved"
    ARCHIVED = "archived"


class RubricStatus(StrEnum):
    DRAFT = "draft"
    PUBLISHED = "published"
    ARCHIVED = "archived"


class ModelStatus(StrEnum):
    CHALLENGER = "challenger"
    CHAMPION = "champion"
    RETIRED = "retired"


class JobStatus(StrEnum):
    QUEUED = "queued"
    RUNNING = "running"
    DONE = "done"
    FAILED = "failed"


class JobKind(StrEnum):
    """Background jobs the worker runs."""

    LEAD_RUN = "lead.run"
    REVIEW_RESUME = "review.resume"
    REVIEW_EXECUTE = "review.execute"  # carry out an approval again after Retry (no graph step left to resume)
    HEALTH_CHECK = "health.check"
    PROPOSAL_RUN = "proposal.run"
    DAILY_SCAN = "daily.scan"
    SLA_WATCH = "sla.watch"  # warn before a review item's SLA breaches, escalate it when it does
    CHECKPOINT_PRUNE = "checkpoint.prune"  # daily: drop finished graph threads' checkpoints past the retention
    NOTIFICATION_DELIVER = "notification.deliver"  # one notification on one channel (email, webhook)
    CRM_WRITEBACK = "crm.writeback"  # one approved action written to the external CRM (crm/writeback.py)
    CRM_SYNC = "crm.sync"  # periodic incremental sync from the external CRM (REVLOOP_CRM_SYNC_MINUTES)
    FISCAL_SUBMIT = "fiscal.submit"  # submit an issued invoice to the fiscal API; retried after timeouts and 5xx


class JobPriority(IntEnum):
    """Which due job a worker claims first (higher first; equal ones in due order). A lead's run takes the
    grade its pre-score at capture predicts, so a likely-A lead overtakes a burst of C and D leads."""

    BACKGROUND = 0  # scans, checks, and leads pre-scored D
    LEAD_C = 10
    LEAD_B = 20
    LEAD_A = 30


class Role(StrEnum):
    CLOSER = "closer"
    MANAGER = "manager"
    EVALUATOR = "evaluator"
    ADMIN = "admin"
    INTEGRATION = "integration"  # machines only: API tokens, never a person's sign-in
