"""One Settings class for the whole service (environment variables with the REVLOOP_ prefix)."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import AliasChoices, BaseModel, Field
from pydantic_settings import BaseSettings, SettingsConfigDict

PROJECT_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_RUBRIC = PROJECT_ROOT / "scoring" / "rubrics" / "default.yaml"


# USD per million (prompt, completion) tokens of hosted models; anything else (a local model) costs 0.
LLM_PRICES: dict[str, tuple[float, float]] = {
    "gpt-4o-mini": (0.15, 0.60),
    "gpt-4o": (2.50, 10.00),
    "gpt-4.1": (2.00, 8.00),
    "gpt-4.1-mini": (0.40, 1.60),
    "gpt-4.1-nano": (0.10, 0.40),
}


class LlmMaxTokens(BaseModel):
    """max_tokens of each kind of LLM call: a weak model without a cap can generate for minutes."""

    tool_round: int = Field(256, ge=16, description="One round of the research agent's tool calling")
    insight: int = Field(400, ge=16, description="The lead insight (summary, opening line, pain points)")
    insight_compact: int = Field(
        160, ge=16, description="The lead insight asked with the compact prompt (a slow endpoint: short answers)"
    )
    redraft: int = Field(300, ge=16, description="A redraft's opening line for a closer's instruction")
    check: int = Field(64, ge=16, description="The probes and sample call of `revloop llm check`")


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="REVLOOP_", env_file=".env", extra="ignore", env_nested_delimiter="__"
    )

    var_dir: Path = Field(Path("var"), description="Folder for embedded state (SQLite, checkpoints, outbox).")
    database_url: str | None = Field(
        None, description="SQLAlchemy URL. Default: SQLite file var/revloop.db. PostgreSQL: postgresql+psycopg://..."
    )
    db_busy_timeout_seconds: float = Field(
        15, gt=0, description="SQLite: how long a statement waits for another process's write lock before failing."
    )
    db_busy_retries: int = Field(
        3, ge=1, description="Attempts of a unit of work run through run_in_transaction when the database is busy."
    )
    import_batch_rows: int = Field(
        500, ge=1, description="CSV imports write this many rows per transaction (after validating the whole file)."
    )
    checkpoint_url: str | None = Field(
        None,
        description="Where LangGraph checkpoints live. Default: var/checkpoints.sqlite on SQLite, the same "
        "database on PostgreSQL.",
    )
    outbox_dir: Path | None = Field(None, description="Folder for .eml files when no SMTP server is set.")
    smtp_url: str | None = Field(
        None, description="smtp://[user:pass@]host:port[?starttls=true] or smtps://...; unset = .eml files."
    )
    send_retry_hours: float = Field(
        24, gt=0, description="Transient send failures are retried this long; then the item is send_failed"
    )
    send_retry_base_seconds: float = Field(60, gt=0, description="First retry delay; doubles each attempt, jittered")
    send_retry_max_seconds: float = Field(3600, gt=0, description="Longest delay between two send attempts")
    mail_from: str = "Revloop Demo Co <sales@revloop.example>"
    sender_name: str = "Alex Morgan"
    company_name: str = "Revloop Demo Co"
    unsubscribe_url: str = "https://revloop.example/unsubscribe"

    rubric_path: Path = Field(DEFAULT_RUBRIC, description="Rubric used until one is published in the database.")
    scoring_min_closed_deals: int = Field(
        100, description="Below this many closed deals the model is not trained or used; the rubric scores alone."
    )
    scoring_model_weight: float = Field(
        0.5, ge=0, le=1, description="Share of the final score from the model probability (rest: rubric fit)."
    )

    llm: str = Field("none", description="'none': the deterministic engine; 'openai': any OpenAI-compatible endpoint")
    llm_model: str = Field("gpt-4o-mini", description="Model name sent to the endpoint (REVLOOP_LLM_MODEL)")
    llm_base_url: str | None = Field(
        None, validation_alias=AliasChoices("REVLOOP_LLM_BASE_URL", "OPENAI_BASE_URL"), description="OPENAI_BASE_URL"
    )
    llm_api_key: str | None = Field(
        None, validation_alias=AliasChoices("REVLOOP_LLM_API_KEY", "OPENAI_API_KEY"), description="OPENAI_API_KEY"
    )
    llm_timeout_seconds: float = Field(
        30.0, gt=0, description="Longest wait for one reply; never more than what is left of the lead's budget"
    )
    llm_max_retries: int = Field(
        2, ge=0, description="Retries on 429, 5xx, timeouts and lost connections, each only while the budget lasts"
    )
    llm_max_tool_rounds: int = Field(4, ge=1, description="Cap of the tool-calling loop")
    llm_budget_seconds: float = Field(
        20,
        gt=0,
        description="LLM time one lead may use (waiting for a free slot included); past it the deterministic engine "
        "finishes the lead and the brief says which parts are the model's",
    )
    llm_max_concurrency: int = Field(
        2, ge=1, le=64, description="Requests this process sends to the LLM endpoint at once (across worker threads)"
    )
    llm_structured_mode: Literal["auto", "json_schema", "json_object", "prompt"] = Field(
        "auto",
        description="How replies are asked for structure. auto: the strongest mode the endpoint supports (learned on "
        "first use or by `revloop llm check`); prompt: the schema in the prompt only, no response_format (faster on "
        "llama.cpp, whose json_object grammar decoding is slow on a small CPU)",
    )
    llm_prompt: Literal["auto", "full", "compact"] = Field(
        "auto",
        description="The lead research's prompts. full: a tool-calling round, then the insight with everything the "
        "look-ups found; compact: our own look-ups and one short insight call (only the fields it needs, the answer "
        "as a small example); auto: compact when the endpoint is measured too slow for the full prompts within "
        "REVLOOP_LLM_BUDGET_SECONDS (by `revloop llm check` or by earlier calls)",
    )
    llm_max_tokens: LlmMaxTokens = Field(
        default_factory=lambda: LlmMaxTokens(),
        description="max_tokens sent with each kind of call (REVLOOP_LLM_MAX_TOKENS__INSIGHT=400, ...)",
    )
    llm_prices: dict[str, tuple[float, float]] = Field(
        default_factory=lambda: dict(LLM_PRICES),
        description="USD per million prompt and completion tokens by model name (a dated variant such as "
        "gpt-4o-mini-2024-07-18 uses its base name's price); a model not listed costs 0 (local models). "
        'REVLOOP_LLM_PRICES=\'{"my-model": [0.5, 1.5]}\' replaces the table',
    )

    kb_url: str | None = Field(None, description="chromadb server URL; unset = an embedded store under var/kb")
    enrichment_ttl_hours: float = Field(24, description="How long a company lookup result is reused")

    sla_minutes_a: int = Field(5, description="First touch deadline for grade A leads")
    sla_minutes_b: int = 60
    sla_minutes_c: int = 24 * 60
    sla_minutes_d: int = 72 * 60
    sla_minutes_exception: int = 60
    closer_capacity: int = Field(25, description="Pending items a closer holds before new ones go to the team queue")

    sla_due_soon_minutes: int = Field(15, description="Queue marks an item 'due soon' with less time left than this")
    sla_watch_seconds: float = Field(
        30, gt=0, description="The worker's SLA watch runs this often: due-soon items warn their assignee, breached "
        "ones go back to the team queue and managers are told"
    )
    undo_seconds: int = Field(
        30, ge=0, le=3600, description="Approved messages wait this long before sending; undo is possible until then"
    )

    session_hours: float = Field(12, description="A review-app sign-in expires this long after login")
    session_idle_minutes: float = Field(60, description="...or after this long without a request")
    login_max_failures: int = Field(
        5, ge=1, description="Wrong passwords for one account from one address before each next try must wait"
    )
    login_lockout_minutes: float = Field(
        15, gt=0, description="The longest wait between tries (it doubles from 1 s); other addresses are not slowed"
    )

    webhook_secret_leads: str | None = Field(None, description="HMAC secret of POST /v1/webhooks/leads")
    webhook_secret_payments: str | None = Field(None, description="HMAC secret of POST /v1/webhooks/payments")
    webhook_secret_esign: str | None = Field(None, description="HMAC secret of POST /v1/webhooks/esign")
    webhook_tolerance_seconds: int = Field(
        300, description="Signed webhooks older or newer than this are refused (replay window)"
    )

    public_url: str | None = Field(
        None,
        description="The API's base URL as providers reach it (https://revloop.example.com): Twilio signs the full "
        "URL it posts to, and SMS StatusCallback points here. Default: the request's own URL",
    )
    default_phone_region: str = Field(
        "US", pattern=r"^[A-Z]{2}$", description="Region for phone numbers written without +country (E.164 parsing)"
    )
    twilio_account_sid: str | None = Field(
        None, description="Twilio (or compatible) account SID: SMS goes through its REST API; unset = message files"
    )
    twilio_auth_token: str | None = Field(
        None, description="Twilio auth token: REST API basic auth, and the key of POST /v1/webhooks/sms signatures"
    )
    twilio_api_url: str = Field("https://api.twilio.com", description="Base of the Twilio-compatible REST API")
    sms_from: str | None = Field(None, description="The sending number (E.164) of SMS; or set a messaging service")
    twilio_messaging_service_sid: str | None = Field(None, description="Twilio MessagingServiceSid instead of From")
    whatsapp_access_token: str | None = Field(
        None, description="WhatsApp Business Cloud API token: messages go through the API; unset = message files"
    )
    whatsapp_phone_number_id: str | None = Field(None, description="The WhatsApp business phone number id")
    whatsapp_api_url: str = Field("https://graph.facebook.com/v21.0", description="Base of the WhatsApp Cloud API")
    whatsapp_app_secret: str | None = Field(
        None, description="App secret that signs POST /v1/webhooks/whatsapp (X-Hub-Signature-256)"
    )
    whatsapp_verify_token: str | None = Field(
        None, description="Token Meta sends on GET /v1/webhooks/whatsapp when the webhook is subscribed"
    )
    whatsapp_templates: str = Field(
        "",
        description="WhatsApp message templates approved by Meta, name:language,... (e.g. "
        "'payment_reminder:en,order_update:en'): the only messages allowed outside the 24-hour window",
    )
    channel_quiet_hours: str = Field(
        "21:00-08:00",
        pattern=r"^(([01]\d|2[0-3]):[0-5]\d-([01]\d|2[0-3]):[0-5]\d)?$",
        description="No SMS or WhatsApp message is sent in these hours of the contact's time zone (HH:MM-HH:MM); "
        "an approved message waits until they end. Empty: no quiet hours",
    )
    channel_timeout_seconds: float = Field(15, gt=0, description="One SMS or WhatsApp provider request's timeout")

    dunning_policy_path: Path = Field(
        PROJECT_ROOT / "billing" / "policy.yaml", description="The collections ladder (YAML)"
    )
    max_discount_pct: float = Field(15, ge=0, le=100, description="The largest discount a proposal may carry")
    proposal_valid_days: int = Field(30, description="A proposal is valid this many days")
    payment_terms_days: int = Field(30, description="Invoices are due this many days after issue")
    milestone_plan: str = Field(
        "Kickoff:30,Delivery:40,Acceptance:30", description="Billing milestones of a signed deal: name:percent,..."
    )
    kickoff_days: int = Field(7, description="Kickoff this many days after signature")
    stale_deal_days: int = Field(21, description="An open deal this long without activity gets a reactivation draft")
    payment_link_base: str = Field(
        "https://pay.revloop.example/invoices", description="Payment links are this plus the invoice number"
    )

    crm_backend: str = Field(
        "native",
        pattern="^(native|hubspot|pipedrive)$",
        description="Where the agent tools read CRM records and approved actions are written back: 'native' "
        "(revloop's own tables), 'hubspot' or 'pipedrive'",
    )
    hubspot_access_token: str | None = Field(None, description="HubSpot private-app access token (crm.objects.*)")
    hubspot_base_url: str = Field("https://api.hubapi.com", description="HubSpot API base URL")
    hubspot_stage_map: str = Field(
        "prospecting=appointmentscheduled,engaging=qualifiedtobuy,qualified=presentationscheduled,"
        "proposal=decisionmakerboughtin,negotiation=contractsent,won=closedwon,lost=closedlost",
        description="revloop deal stage=HubSpot dealstage id, comma separated (the default pipeline's ids)",
    )
    pipedrive_api_token: str | None = Field(None, description="Pipedrive API token (sent as the x-api-token header)")
    pipedrive_base_url: str = Field(
        "https://api.pipedrive.com/v1", description="Pipedrive API v1 base URL (https://COMPANY.pipedrive.com/api/v1)"
    )
    pipedrive_stage_map: str = Field(
        "prospecting=1,engaging=2,qualified=3,proposal=4,negotiation=5",
        description="revloop open deal stage=Pipedrive stage_id, comma separated (won/lost are the deal's status)",
    )
    crm_timeout_seconds: float = Field(15, gt=0, description="One request to the external CRM times out after this")
    crm_max_retries: int = Field(
        4, ge=0, description="Retries of one CRM request on 429 (after its Retry-After) and, for reads, on 5xx"
    )
    crm_retry_max_wait_seconds: float = Field(
        30, gt=0, description="The longest Retry-After wait honoured before the call fails (and is retried later)"
    )
    crm_page_size: int = Field(100, ge=1, le=100, description="Records per page read from the external CRM")
    crm_sync_minutes: float = Field(
        0, ge=0, description="The worker syncs REVLOOP_CRM_BACKEND incrementally this often (0: only by the CLI)"
    )
    crm_sync_lag_warn_minutes: float = Field(
        24 * 60, gt=0, description="CRM health turns unhealthy when the last successful sync is older than this"
    )
    # Payment rails and e-invoicing (billing/stripe.py, billing/mpesa.py, billing/fiscal.py).
    billing_backend: Literal["native", "stripe"] = Field(
        "native", description="'native': revloop's own invoices; 'stripe': issued invoices are also created at Stripe"
    )
    stripe_api_key: str | None = Field(None, description="Stripe secret key (sk_...) for the stripe billing backend")
    stripe_base_url: str = Field("https://api.stripe.com", description="Stripe API base URL (a test double's URL)")
    stripe_webhook_secret: str | None = Field(
        None, description="Signing secret (whsec_...) of POST /v1/webhooks/stripe (the Stripe-Signature header)"
    )
    stripe_timeout_seconds: float = Field(20, gt=0, description="One Stripe API call's timeout")
    mpesa_base_url: str = Field(
        "https://sandbox.safaricom.co.ke", description="Daraja API base URL (production: https://api.safaricom.co.ke)"
    )
    mpesa_consumer_key: str | None = Field(None, description="Daraja app consumer key (STK Push requests)")
    mpesa_consumer_secret: str | None = Field(None, description="Daraja app consumer secret")
    mpesa_shortcode: str | None = Field(None, description="Your paybill or till number; other shortcodes are refused")
    mpesa_passkey: str | None = Field(None, description="Lipa Na M-Pesa Online passkey (STK Push password)")
    mpesa_transaction_type: Literal["CustomerPayBillOnline", "CustomerBuyGoodsOnline"] = Field(
        "CustomerPayBillOnline", description="STK Push transaction type: paybill or till (buy goods)"
    )
    mpesa_callback_url: str | None = Field(
        None, description="Public URL of POST /v1/webhooks/mpesa (with ?token=...) that Daraja calls back"
    )
    mpesa_callback_token: str | None = Field(
        None, description="Secret the M-Pesa callback URL carries as ?token= (Daraja does not sign callbacks)"
    )
    mpesa_currency: str = Field("KES", description="Currency of M-Pesa payments; they settle invoices in it only")
    mpesa_timeout_seconds: float = Field(20, gt=0, description="One Daraja API call's timeout")
    fiscal_backend: Literal["none", "etims"] = Field(
        "none", description="'etims': an issued invoice is submitted to a KRA eTIMS-style API before it may be sent"
    )
    fiscal_base_url: str | None = Field(None, description="The fiscal (eTIMS OSCU/VSCU-style) API base URL")
    fiscal_tin: str | None = Field(None, description="The seller's tax PIN sent with each fiscal submission")
    fiscal_branch_id: str = Field("00", description="The seller's branch id (bhfId) at the tax authority")
    fiscal_device_key: str | None = Field(None, description="The control unit's communication key (cmcKey)")
    fiscal_qr_base_url: str = Field(
        "https://etims.kra.go.ke/common/link/etims/receipt/indexEtimsReceiptData?Data=",
        description="The receipt's QR payload is this followed by the PIN, branch id and the receipt signature",
    )
    fiscal_timeout_seconds: float = Field(15, gt=0, description="One fiscal submission's timeout")
    fiscal_retry_seconds: float = Field(
        60, gt=0, description="First retry delay after a timeout or 5xx from the fiscal API; doubles each attempt"
    )

    api_host: str = "127.0.0.1"
    api_port: int = 8000
    review_app_port: int = 8501
    api_url: str | None = Field(None, description="Base URL the review app uses to reach the API.")
    max_request_bytes: int = Field(64 * 1024, description="Larger request bodies are refused with 413.")
    api_threads: int | None = Field(
        None,
        ge=1,
        description="Requests the API works on at once, each on its own thread; more wait in line, first come first "
        "served, holding no thread (so the request holding the database's write lock always gets the thread it "
        "needs to finish). Default: 8 on SQLite (one writer at a time; more threads only add waiters polling the "
        "lock, and a starved one answers 503 busy), 40 on PostgreSQL.",
    )
    api_keep_alive_seconds: int = Field(
        75,
        ge=1,
        description="An idle keep-alive connection is closed after this long. Keep it above clients' and proxies' "
        "idle timeouts (httpx 5 s, load balancers 60 s) so the server never closes one a client is reusing.",
    )
    api_workers: int = Field(
        1,
        ge=1,
        le=64,
        description="API processes `revloop serve` runs on one port (uvicorn workers; `revloop serve --workers N`). "
        "More than one uses more cores: most useful on PostgreSQL (SQLite still takes one writer at a time).",
    )
    api_token_cache_seconds: float = Field(
        5,
        ge=0,
        description="A verified API token is trusted this long without a database read. A token revoked through "
        "the same API process stops at once; through the CLI or another API process, within this time. 0: off.",
    )

    worker_poll_seconds: float = Field(
        0.2,
        gt=0,
        description="The longest an idle worker thread waits before looking for due jobs again. It looks again at "
        "once after a job, then waits 0.01 s, doubling up to this; a look is a read that takes no lock.",
    )
    checkpoint_retention_days: float = Field(
        7,
        ge=0,
        description="Graph checkpoints of a finished thread are deleted this long after its last step (the daily "
        "checkpoint.prune job); waiting threads keep their latest checkpoint.",
    )
    job_lease_seconds: int = Field(
        60,
        ge=2,
        description="A running job whose worker sent no heartbeat for this long is taken back by the sweep "
        "(workers renew leases every quarter of it and sweep as often).",
    )
    job_max_attempts: int = 5
    health_check_minutes: float = Field(
        5, gt=0, description="The worker checks the integrations this often; a change alerts managers"
    )
    health_queue_wait_seconds: float = Field(
        300, gt=0, description="A due background job waiting longer than this marks the work queue unhealthy"
    )
    broker_url: str | None = Field(
        None,
        description="redis://... or amqp://...: background jobs run on Celery workers (`revloop worker` starts one); "
        "unset = the in-process worker polls the job table",
    )
    broker_namespace: str = Field(
        "revloop",
        pattern=r"^[A-Za-z0-9_.-]{1,50}$",
        description="Prefix of the Celery queue names (<ns>.hot, <ns>.default) and, on Redis, of every broker key: "
        "deployments sharing one broker use different ones",
    )
    broker_dispatch_seconds: float = Field(
        5, gt=0, description="Celery beat publishes due jobs the broker does not hold (scheduled scans, lost messages)"
    )
    broker_visibility_timeout_seconds: int = Field(
        3600,
        ge=60,
        description="Redis: a task not acknowledged this long is delivered again (a job is claimed once whatever)",
    )
    thread_lock_wait_seconds: float = Field(
        10, gt=0, description="A graph thread busy in another worker is waited for this long, then retried later"
    )

    app_url: str | None = Field(
        None, description="The review app's base URL for deep links in notifications; default http://HOST:8501"
    )
    notify_webhook_url: str | None = Field(
        None, description="The team's notification webhook (Slack-compatible JSON is POSTed); unset = no webhook"
    )
    notify_webhook_secret: str | None = Field(
        None, description="HMAC-SHA256 secret signing each notification webhook post (X-Revloop-Signature)"
    )
    notify_webhook_timeout_seconds: float = Field(10, gt=0, description="One notification webhook post's timeout")
    notify_max_attempts: int = Field(
        6, ge=1, description="Notification email/webhook attempts on transient failures before it is recorded failed"
    )
    notify_retry_base_seconds: float = Field(
        30, gt=0, description="First retry delay of a notification email/webhook; doubles each attempt, jittered"
    )
    notify_burst_minutes: float = Field(
        10, ge=0, description="The same event for the same item and person within this long collapses into one row"
    )

    def llm_price(self, model: str | None = None) -> tuple[float, float]:
        """(prompt, completion) USD per million tokens of `model` (default: REVLOOP_LLM_MODEL); 0 if not listed."""
        name = (model or self.llm_model).lower()
        prices = {m.lower(): price for m, price in self.llm_prices.items()}
        if name in prices:
            return prices[name]
        bases = [m for m in prices if name.startswith(m + "-")]
        return prices[max(bases, key=len)] if bases else (0.0, 0.0)

    @property
    def resolved_database_url(self) -> str:
        return self.database_url or f"sqlite:///{(self.var_dir / 'revloop.db').as_posix()}"

    @property
    def is_sqlite(self) -> bool:
        return self.resolved_database_url.startswith("sqlite")

    @property
    def resolved_api_threads(self) -> int:
        return self.api_threads or (8 if self.is_sqlite else 40)

    @property
    def resolved_checkpoint_url(self) -> str:
        if self.checkpoint_url:
            return self.checkpoint_url
        if self.is_sqlite:
            return f"sqlite:///{(self.var_dir / 'checkpoints.sqlite').as_posix()}"
        return self.resolved_database_url

    @property
    def resolved_outbox_dir(self) -> Path:
        return self.outbox_dir or self.var_dir / "outbox"

    @property
    def resolved_api_url(self) -> str:
        return self.api_url or f"http://{self.api_host}:{self.api_port}"

    @property
    def resolved_app_url(self) -> str:
        return (self.app_url or f"http://{self.api_host}:{self.review_app_port}").rstrip("/")


@lru_cache
def get_settings() -> Settings:
    return Settings()
