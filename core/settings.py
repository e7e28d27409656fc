"""The one place that reads Vitrine's configuration from the environment."""

from __future__ import annotations

from decimal import Decimal
from functools import lru_cache
from typing import Literal

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

PLACEHOLDER_SECRETS = {"dev-sandbox-secret", "dev-ops-token", "dev-admin-token",
                       "dev-pix-webhook-secret", "dev-upi-webhook-secret",
                       "dev-sepa-webhook-secret"}
# Webhook secrets of rails that are on only when configured: refused in production when a
# rail is on with a placeholder or short secret.
PROVIDER_SECRETS = ("stripe_webhook_secret", "oxxo_webhook_secret",
                    "mercadopago_webhook_secret")


class Settings(BaseSettings):
    """Vitrine configuration; every field is read from a `VITRINE_`-prefixed variable."""

    model_config = SettingsConfigDict(env_prefix="VITRINE_", env_file=".env", extra="ignore")

    env: Literal["development", "test", "production"] = "development"
    database_url: str = "sqlite:///./var/vitrine.db"
    public_url: str = "http://127.0.0.1:8000"
    # Each process's connection pool (PostgreSQL; SQLite uses one file and ignores these).
    # Size it so replicas x (pool + overflow) stays under the server's max_connections. An
    # API process runs up to 40 requests at once on its threads: connections opened past
    # the pool are closed when returned, so a pool far below that churns connections.
    db_pool_size: int = Field(default=10, ge=1, le=200)
    db_max_overflow: int = Field(default=5, ge=0, le=500)
    db_pool_timeout_seconds: float = Field(default=10.0, gt=0)
    db_pool_recycle_seconds: int = Field(default=1800, ge=0)
    # Turns (a shopper's message or button press, on any channel) one process runs at once;
    # more wait their turn. Turns are database round trips and Python work under one GIL:
    # past a few, threads only take the GIL from each other (docs/benchmarks.md). A turn
    # waiting on the language model or live merchants gives its place meanwhile
    # (`core/turns.py`). Unset: 1 on SQLite (its statements take microseconds and it has one
    # writer at a time: a second turn only waits on the lock), 4 on PostgreSQL.
    turn_concurrency: int | None = Field(default=None, ge=1, le=64)
    # Web chat turns run on the API process's event loop, and move to a thread when they
    # reach an outside service (`core/turns.py`): less CPU per message, measured with the
    # database on the same host. Turn it off where each database round trip takes
    # milliseconds: the loop would wait through them.
    turns_on_loop: bool = True
    # Optional Redis (`redis://host:6379/0`): several processes then share the webhook
    # de-duplication keys, per-shopper rate limits, the live merchants' answer cache and
    # circuit breakers. Without it each process keeps them itself (the database still
    # guards against applying a webhook twice). Conversations live in the database.
    redis_url: str | None = None
    # Per shopper and channel: at most this many messages in this many seconds; more are
    # answered with a request to slow down and not processed.
    rate_limit_messages: int = Field(default=20, ge=1)
    rate_limit_window_seconds: float = Field(default=60.0, gt=0)
    # `vitrine serve`: how many API processes (uvicorn workers), and whether they also run
    # the background jobs (feed syncs, reminders, merchant webhooks, retention, roll-up,
    # pushes). In production the API runs with `serve_runs_jobs` off and `vitrine worker`
    # runs the jobs from the durable queue.
    api_workers: int = Field(default=1, ge=1, le=64)
    serve_runs_jobs: bool = True
    # The job worker (`vitrine worker`, or inside `vitrine serve`): jobs run at once, and how
    # long a stopping worker lets them finish (one still running is retried elsewhere).
    worker_concurrency: int = Field(default=2, ge=1, le=32)
    worker_grace_seconds: float = Field(default=30.0, ge=0)
    # Gift reminders are queued once a day, at this hour (UTC).
    reminders_hour_utc: int = Field(default=14, ge=0, le=23)
    default_market: str = "BR"

    ops_token: str = "dev-ops-token"
    admin_token: str = "dev-admin-token"
    sandbox_secret: str = "dev-sandbox-secret"

    # Ops. `/metrics` is open unless a token is set. Shoppers' messages are kept in the
    # conversion log only as hashes unless `ops_store_text` is on (never after /forget).
    # The fixed cost per day (hosting, support) is added to the cost per closed sale.
    metrics_token: str | None = None
    # Keys the pseudonyms in the conversion log (which is exported): secret and stable, or
    # the same shopper counts as two. Unset, it is derived from the ops token; set it before
    # rotating that token.
    ops_hash_key: str | None = None
    ops_store_text: bool = False
    ops_fixed_cost_per_day_usd: Decimal | None = None
    # Logs: one JSON object per line (with the request id), or plain text for a terminal.
    log_format: Literal["json", "text"] = "json"

    # Pix receiving account used for static BR Codes.
    pix_key: str = "pagamentos@vitrine.dev"
    pix_merchant_name: str = "Vitrine Pagamentos"
    pix_merchant_city: str = "Sao Paulo"
    # The PSP signs its Pix payment notices with this (`X-Pix-Signature`).
    pix_webhook_secret: str = "dev-pix-webhook-secret"
    # The PSP's Pix API (Banco Central's `cob` shape): with its base URL set, each order gets
    # a dynamic charge that expires; without it, static BR Codes. Banks ask for a client
    # certificate (mutual TLS): its file and key file.
    pix_api_base: str | None = None
    pix_client_id: str = ""
    pix_client_secret: str = ""
    pix_cert_file: str | None = None
    pix_cert_key_file: str | None = None
    pix_charge_minutes: int = Field(default=60, ge=5, le=7 * 24 * 60)

    # UPI (India): the merchant's virtual payment address for deep links and QR codes; the
    # payment provider signs its notices with the secret.
    upi_vpa: str = "vitrine@upi"
    upi_payee_name: str = "Vitrine Pagamentos"
    upi_webhook_secret: str = "dev-upi-webhook-secret"
    # SEPA transfer QR (euro area): the receiving account; the bank's notices are signed.
    sepa_beneficiary_name: str = "Vitrine Pagamentos"
    sepa_iban: str = "FR1420041010050500013M02606"
    sepa_bic: str | None = None
    sepa_webhook_secret: str = "dev-sepa-webhook-secret"

    # Hosted card checkout (Stripe) and OXXO vouchers (through Stripe): on when the API key
    # is set. Each webhook endpoint has its own signing secret in Stripe's dashboard.
    stripe_api_key: str | None = None
    stripe_webhook_secret: str = ""
    oxxo_webhook_secret: str = ""
    stripe_api_base: str = "https://api.stripe.com"
    # Mercado Pago Checkout Pro: on when the access token is set.
    mercadopago_access_token: str | None = None
    mercadopago_webhook_secret: str = ""
    mercadopago_api_base: str = "https://api.mercadopago.com"

    # WhatsApp Cloud API channel: on when token, phone number id and app secret are all set.
    # The app secret signs Meta's webhook calls; the verify token answers its subscription
    # check (`GET /webhooks/whatsapp`).
    whatsapp_token: str | None = None
    whatsapp_phone_id: str | None = None
    whatsapp_app_secret: str | None = None
    whatsapp_verify_token: str | None = None
    whatsapp_api_base: str = "https://graph.facebook.com/v21.0"

    # Telegram channel: on when the bot token is set. In webhook mode Telegram sends each
    # update to `POST /webhooks/telegram` with the secret in `X-Telegram-Bot-Api-Secret-Token`
    # (setWebhook's `secret_token`); `vitrine telegram poll` asks for updates while developing.
    telegram_token: str | None = None
    telegram_mode: Literal["polling", "webhook"] = "webhook"
    telegram_api_base: str = "https://api.telegram.org"
    telegram_webhook_secret: str | None = None
    # How often `vitrine serve` pushes queued messages (a payment confirmed, a reminder) to
    # Telegram and WhatsApp shoppers; 0 leaves it to `vitrine notifications push`.
    push_interval_seconds: float = Field(default=5.0, ge=0)

    # Live merchants (their own UCP MCP servers): total budget of one search, each merchant's
    # share, how long an answer is reused, and when a failing merchant stops being called.
    live_deadline_ms: int = 1500
    live_merchant_timeout_ms: int = 1200
    live_cache_seconds: float = 60.0
    breaker_failures: int = 3
    breaker_cooldown_seconds: float = 30.0
    ucp_agent_profile: str = "https://vitrine.dev/profiles/ucp-agent.json"
    # A live merchant's price older than this is asked again before checkout.
    price_max_age_minutes: int = 15

    max_message_chars: int = 2000
    # A conversation idle longer than this starts afresh (memory about people is kept).
    conversation_idle_minutes: int = 24 * 60
    default_card_limit: int = 3
    # What shoppers tell about people, their gift history and idle conversations are deleted
    # after this many days by `vitrine memory purge` (run it daily from a scheduler).
    memory_retention_days: int = Field(default=365, ge=1, le=36500)

    # Optional language model (any OpenAI-compatible chat-completions API, e.g.
    # https://api.openai.com/v1): it helps understand messages when base URL and model are set.
    # It never chooses products or prices; when slow or wrong, the rule parser's reading stands.
    llm_base_url: str | None = None
    llm_model: str | None = None
    llm_api_key: SecretStr | None = None
    llm_timeout_ms: int = 2500
    llm_max_output_tokens: int = 600
    # USD per million tokens, so ops can turn the tokens in the conversion log into a cost.
    llm_price_in_per_mtok: Decimal | None = None
    llm_price_out_per_mtok: Decimal | None = None
    # Let the model reword the intro line of a reply (off: replies stay deterministic).
    llm_phrase_replies: bool = False

    @property
    def turns_at_once(self) -> int:
        """`turn_concurrency`, or its default for the database."""
        if self.turn_concurrency is not None:
            return self.turn_concurrency
        return 1 if self.database_url.startswith("sqlite") else 4

    @property
    def llm_enabled(self) -> bool:
        """A language model helps understand messages only when it is fully named."""
        return bool(self.llm_base_url and self.llm_model)

    @property
    def whatsapp_enabled(self) -> bool:
        """The WhatsApp channel runs only with its token, phone number id and app secret."""
        return bool(self.whatsapp_token and self.whatsapp_phone_id and self.whatsapp_app_secret)

    @property
    def telegram_enabled(self) -> bool:
        """The Telegram channel runs only with its bot token."""
        return bool(self.telegram_token)

    @model_validator(mode="after")
    def _refuse_placeholder_secrets(self) -> Settings:
        if self.env == "production":
            weak = [
                name
                for name in ("ops_token", "sandbox_secret", "admin_token", "pix_webhook_secret",
                             "upi_webhook_secret", "sepa_webhook_secret")
                if getattr(self, name) in PLACEHOLDER_SECRETS or len(getattr(self, name)) < 16
            ]
            weak += [name for name in PROVIDER_SECRETS
                     if self._provider_on(name) and len(getattr(self, name)) < 16]
            if self.whatsapp_enabled and len(self.whatsapp_app_secret or "") < 16:
                weak.append("whatsapp_app_secret")
            if self.telegram_enabled and self.telegram_mode == "webhook" \
                    and len(self.telegram_webhook_secret or "") < 16:
                weak.append("telegram_webhook_secret")
            if weak:
                raise ValueError(
                    "refusing to start in production with placeholder secrets: "
                    + ", ".join(f"VITRINE_{n.upper()}" for n in weak)
                )
        return self

    @property
    def log_hash_key(self) -> str:
        """The key of the conversion log's pseudonyms (`ops_hash_key`, or one derived from
        the ops token)."""
        return self.ops_hash_key or "vitrine-log-pseudonyms:" + self.ops_token

    def _provider_on(self, secret_name: str) -> bool:
        if secret_name.startswith(("stripe", "oxxo")):
            return self.stripe_api_key is not None
        return self.mercadopago_access_token is not None

    @field_validator("redis_url")
    @classmethod
    def _redis_url_scheme(cls, value: str | None) -> str | None:
        if value and not value.startswith(("redis://", "rediss://", "unix://")):
            raise ValueError("VITRINE_REDIS_URL must be a redis:// (or rediss://) URL, "
                             "like redis://localhost:6379/0")
        return value or None

    @field_validator("llm_base_url")
    @classmethod
    def _llm_base_url_is_http(cls, value: str | None) -> str | None:
        if value and not value.startswith(("http://", "https://")):
            raise ValueError("VITRINE_LLM_BASE_URL must be an http(s) URL, "
                             "like https://api.openai.com/v1")
        return value


@lru_cache
def get_settings() -> Settings:
    """Return the process-wide settings, read once."""
    return Settings()
