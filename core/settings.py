"""One Settings class for the whole service (environment variables with the REVLOOP_ prefix)."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

PROJECT_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_RUBRIC = PROJECT_ROOT / "scoring" / "rubrics" / "default.yaml"


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="REVLOOP_", env_file=".env", extra="ignore")

    var_dir: Path = Field(Path("var"), description="Folder for embedded state (SQLite, checkpoints, outbox).")
    database_url: str | None = Field(
        None, description="SQLAlchemy URL. Default: SQLite file var/revloop.db. PostgreSQL: postgresql+psycopg://..."
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

    api_host: str = "127.0.0.1"
    api_port: int = 8000
    review_app_port: int = 8501
    api_url: str | None = Field(None, description="Base URL the review app uses to reach the API.")
    max_request_bytes: int = Field(64 * 1024, description="Larger request bodies are refused with 413.")

    worker_poll_seconds: float = 0.5
    job_lease_seconds: int = Field(300, description="A running job older than this is taken back by the sweep.")
    job_max_attempts: int = 5

    @property
    def resolved_database_url(self) -> str:
        return self.database_url or f"sqlite:///{(self.var_dir / 'revloop.db').as_posix()}"

    @property
    def is_sqlite(self) -> bool:
        return self.resolved_database_url.startswith("sqlite")

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


@lru_cache
def get_settings() -> Settings:
    return Settings()
