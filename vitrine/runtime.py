"""Builds Vitrine's parts once, from settings, and wires them together."""

from __future__ import annotations

import json
import weakref
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import TypeVar

import httpx
import httpx2
from aiogram import Bot
from aiogram.client.session.aiohttp import AiohttpSession
from aiogram.client.telegram import TelegramAPIServer
from sqlalchemy import MetaData
from sqlalchemy.engine import Engine
from sqlmodel import Session, SQLModel, select

from adapters.feed import FeedReport
from adapters.ucp_mcp import HTTP_TIMEOUT, UcpMcpAdapter
from bot.channels.push import PushChannel
from bot.channels.rate_limit import RateLimit
from bot.channels.telegram import RetryRequests, TelegramChannel
from bot.channels.whatsapp import WhatsAppPush
from bot.channels.whatsapp_api import GRAPH_TIMEOUT, WhatsAppApi
from bot.conversation import Assistant
from bot.intent import IntentParser
from bot.llm_client import ChatCompletions
from bot.llm_intent import LlmIntentParser
from bot.llm_replies import ReplyPhraser
from bot.rules import RuleIntentParser
from catalog.federation import CircuitBreaker, Federation, ResultCache
from catalog.live import FederatedSearch
from catalog.merchants import add_merchant_from_feed
from catalog.models import Merchant
from catalog.onboarding import Onboarding
from catalog.search import CatalogSearch
from checkout.rails import PaymentRail
from checkout.rails.cod import CashOnDeliveryRail
from checkout.rails.mercadopago import MercadoPagoRail
from checkout.rails.oxxo import OxxoRail
from checkout.rails.pix import PixRail
from checkout.rails.pix_api import PixApi
from checkout.rails.sandbox import SandboxRail
from checkout.rails.sepa_qr import SepaQrRail
from checkout.rails.stripe import StripeRail
from checkout.rails.upi import UpiRail
from core import schema
from core.db import make_engine
from core.settings import PLACEHOLDER_SECRETS, Settings, get_settings
from core.shared_state import LocalState, SharedState, build_shared_state
from core.turns import LoopTurns
from ops.events import use_log_key

T = TypeVar("T")
_RUNTIMES: weakref.WeakSet[Runtime] = weakref.WeakSet()
# Telegram answers within a second or two; a stuck connection must not hold the webhook long.
TELEGRAM_TIMEOUT_S = 15.0
DEMO_DIR = Path(__file__).resolve().parent.parent / "catalog" / "demo"


def model_metadata() -> MetaData:
    """Every model's table; importing the model modules registers them."""
    import bot.channels.telegram
    import bot.channels.whatsapp
    import bot.models  # noqa: F401
    import catalog.models
    import catalog.sponsorship  # noqa: F401
    import checkout.merchant_notices
    import checkout.models
    import checkout.shipping
    import checkout.spending  # noqa: F401
    import core.jobs
    import core.outbox  # noqa: F401
    import ops.events
    import ops.tally  # noqa: F401

    return SQLModel.metadata


def create_tables(engine: Engine) -> None:
    """Bring the schema to the newest migration (idempotent; see core/schema.py)."""
    import checkout.models

    schema.upgrade(engine, metadata=model_metadata(),
                   catch_up=checkout.models.upgrade_order_status)


def _pix_api(settings: Settings) -> PixApi | None:
    """The PSP's Pix API for dynamic charges, when configured."""
    if not settings.pix_api_base:
        return None
    cert = (settings.pix_cert_file, settings.pix_cert_key_file) \
        if settings.pix_cert_file and settings.pix_cert_key_file else None
    return PixApi(base_url=settings.pix_api_base, client_id=settings.pix_client_id,
                  client_secret=settings.pix_client_secret, key=settings.pix_key,
                  expires_in=timedelta(minutes=settings.pix_charge_minutes), cert=cert)


def build_rails(settings: Settings) -> dict[str, PaymentRail]:
    """Every payment rail configured here, by its stable name; markets offer them in the
    order `core/markets.json` gives. A provider's rail is on when its keys are set; the
    sandbox provider runs everywhere but in production."""
    rails: dict[str, PaymentRail] = {
        "pix": PixRail(key=settings.pix_key, merchant_name=settings.pix_merchant_name,
                       merchant_city=settings.pix_merchant_city,
                       webhook_secret=settings.pix_webhook_secret, api=_pix_api(settings)),
        "cod": CashOnDeliveryRail(),
        "upi": UpiRail(vpa=settings.upi_vpa, payee_name=settings.upi_payee_name,
                       webhook_secret=settings.upi_webhook_secret),
        "sepa_qr": SepaQrRail(beneficiary_name=settings.sepa_beneficiary_name,
                              iban=settings.sepa_iban, bic=settings.sepa_bic,
                              webhook_secret=settings.sepa_webhook_secret),
    }
    public = settings.public_url.rstrip("/")
    if settings.stripe_api_key:
        rails["stripe"] = StripeRail(api_key=settings.stripe_api_key,
                                     webhook_secret=settings.stripe_webhook_secret,
                                     public_url=public, api_base=settings.stripe_api_base)
        rails["oxxo"] = OxxoRail(api_key=settings.stripe_api_key,
                                 webhook_secret=settings.oxxo_webhook_secret,
                                 base_url=settings.stripe_api_base)
    if settings.mercadopago_access_token:
        rails["mercadopago"] = MercadoPagoRail(
            access_token=settings.mercadopago_access_token,
            webhook_secret=settings.mercadopago_webhook_secret, public_url=public,
            notification_url=f"{public}/api/payments/mercadopago/webhook",
            api_base=settings.mercadopago_api_base)
    if settings.env != "production":
        # While developing, the sandbox provider stands in for the push rails' providers,
        # but never for one configured for real (its webhook secret set): then only that
        # provider's signed notice can mark its payments paid.
        stand_in = {"pix": settings.pix_webhook_secret, "upi": settings.upi_webhook_secret,
                    "sepa_qr": settings.sepa_webhook_secret}
        rails["sandbox"] = SandboxRail(
            public_url=settings.public_url, secret=settings.sandbox_secret,
            settles=frozenset(name for name, secret in stand_in.items()
                              if secret in PLACEHOLDER_SECRETS))
    return rails


@dataclass(eq=False)
class Runtime:
    settings: Settings
    engine: Engine
    search: CatalogSearch
    federated: FederatedSearch
    assistant: Assistant
    rails: dict[str, PaymentRail]
    mcp_http: httpx2.AsyncClient  # one client for every live merchant's MCP server
    llm_http: httpx.Client | None = None  # the language-model provider's, when configured
    # Rewords reply intros when VITRINE_LLM_PHRASE_REPLIES is on; see docs/llm.md.
    phraser: ReplyPhraser | None = None
    # The WhatsApp Cloud API client, when the channel is configured.
    whatsapp: WhatsAppApi | None = None
    # The Telegram Bot API client, when the channel is configured; its HTTP session lives on
    # the live merchants' event loop (`call_live`), where every Bot API call runs.
    telegram: Bot | None = None
    # Webhook de-duplication, rate limits, live answers and circuits: in Redis when
    # VITRINE_REDIS_URL is set (every process shares them), else in this process.
    shared: SharedState = field(default_factory=LocalState)
    onboarding: Onboarding = field(init=False)
    rate_limit: RateLimit = field(init=False)
    # Where web chat turns run: on the event loop when they can (`core/turns.py`).
    loop_turns: LoopTurns = field(init=False)
    _adapters: dict[tuple[str, str], UcpMcpAdapter] = field(default_factory=dict)
    _telegram_channel: TelegramChannel | None = None

    def adapter_for_url(self, merchant: str, url: str) -> UcpMcpAdapter:
        """The UCP MCP adapter of a live merchant."""
        return UcpMcpAdapter(merchant=merchant, url=url,
                             agent_profile=self.settings.ucp_agent_profile,
                             http_client=self.mcp_http)

    def adapter_for(self, merchant: Merchant) -> UcpMcpAdapter:
        """The merchant's adapter, kept between searches: it remembers the server's protocol
        version and tool list, which saves two round trips per search."""
        key = (merchant.slug, merchant.mcp_url or "")
        adapter = self._adapters.get(key)
        if adapter is None:
            adapter = self._adapters[key] = self.adapter_for_url(*key)
        return adapter

    def close(self) -> None:
        """Close live merchants' and the language model's connections; stop the event loop."""
        if self.federated.loop.started:
            self.federated.loop.call(self.mcp_http.aclose)
            if self.telegram is not None:
                self.federated.loop.call(self.telegram.session.close)
        self.federated.loop.close()
        if self.llm_http is not None:
            self.llm_http.close()
        if self.whatsapp is not None:
            self.whatsapp.close()
        for rail in self.rails.values():
            close = getattr(rail, "close", None)  # rails with a provider hold a client
            if close is not None:
                close()
        self.shared.close()

    def telegram_channel(self) -> TelegramChannel | None:
        """The Telegram channel, when configured; one per runtime (its dispatcher and
        routers are built once)."""
        if self.telegram is None:
            return None
        if self._telegram_channel is None:
            self._telegram_channel = TelegramChannel(
                bot=self.telegram, engine=self.engine, assistant=self.assistant,
                run=self.call_live, shared=self.shared, rate_limit=self.rate_limit)
        return self._telegram_channel

    def push_channels(self) -> list[PushChannel]:
        """The configured channels queued messages are pushed to."""
        channels: list[PushChannel] = []
        if (telegram := self.telegram_channel()) is not None:
            channels.append(telegram)
        if self.whatsapp is not None:
            channels.append(WhatsAppPush(self.whatsapp))
        return channels

    def call_live(self, func: Callable[..., Awaitable[T]], *args: object) -> T:
        """Run a coroutine function against live merchants, on their event loop."""
        return self.federated.loop.call(func, *args)


def build_llm_chat(settings: Settings, http: httpx.Client | None = None
                   ) -> ChatCompletions | None:
    """The configured language model behind its OpenAI-compatible chat-completions API, or
    None when base URL and model are not both set."""
    if not (settings.llm_base_url and settings.llm_model):
        return None
    timeout_s = settings.llm_timeout_ms / 1000
    return ChatCompletions(
        http=http or httpx.Client(timeout=httpx.Timeout(timeout_s)),
        base_url=settings.llm_base_url, model=settings.llm_model,
        api_key=settings.llm_api_key.get_secret_value() if settings.llm_api_key else None,
        timeout_s=timeout_s, max_output_tokens=settings.llm_max_output_tokens)


def build_whatsapp(settings: Settings, http: httpx.Client | None = None
                   ) -> WhatsAppApi | None:
    """The WhatsApp Cloud API client, or None when the channel is not configured."""
    if not (settings.whatsapp_enabled and settings.whatsapp_token
            and settings.whatsapp_phone_id):
        return None
    return WhatsAppApi(http=http or httpx.Client(timeout=GRAPH_TIMEOUT),
                       base_url=settings.whatsapp_api_base,
                       phone_id=settings.whatsapp_phone_id, token=settings.whatsapp_token)


def build_telegram(settings: Settings) -> Bot | None:
    """The Telegram Bot API client, pointed at `telegram_api_base`, or None when the channel
    is not configured."""
    if not (settings.telegram_enabled and settings.telegram_token):
        return None
    api = TelegramAPIServer.from_base(settings.telegram_api_base)
    session = AiohttpSession(api=api, timeout=TELEGRAM_TIMEOUT_S)
    session.middleware(RetryRequests())
    return Bot(token=settings.telegram_token, session=session)


def build_runtime(settings: Settings | None = None, *,
                  mcp_http: httpx2.AsyncClient | None = None,
                  llm_http: httpx.Client | None = None,
                  whatsapp_http: httpx.Client | None = None) -> Runtime:
    """Connect to the database, create tables, and build the services.

    `llm_http` is the client for the language-model provider (tests pass one with a fake
    transport); it is made from settings when a model is configured and none is given.
    `whatsapp_http` is the same for WhatsApp's Graph API, used when the channel is configured.
    """
    settings = settings or get_settings()
    use_log_key(settings.log_hash_key)
    engine = make_engine(settings.database_url, pool_size=settings.db_pool_size,
                         max_overflow=settings.db_max_overflow,
                         pool_timeout_s=settings.db_pool_timeout_seconds,
                         pool_recycle_s=settings.db_pool_recycle_seconds)
    create_tables(engine)
    search = CatalogSearch(engine)
    shared = build_shared_state(settings.redis_url)
    federated = FederatedSearch(engine=engine, local=search, federation=Federation(
        breaker=CircuitBreaker(failures_to_open=settings.breaker_failures,
                               cooldown_s=settings.breaker_cooldown_seconds, store=shared),
        cache=ResultCache(ttl_s=settings.live_cache_seconds, store=shared),
        total_deadline_s=settings.live_deadline_ms / 1000,
        per_merchant_s=settings.live_merchant_timeout_ms / 1000))
    rails = build_rails(settings)
    parser: IntentParser = RuleIntentParser()
    phraser = None
    chat = build_llm_chat(settings, llm_http)
    if chat is not None:
        llm_http = chat.http
        parser = LlmIntentParser(rules=parser, chat=chat)
        if settings.llm_phrase_replies:
            phraser = ReplyPhraser(chat=chat)
    assistant = Assistant(engine=engine, search=federated, parser=parser,
                          rails=rails, settings=settings, phraser=phraser)
    runtime = Runtime(settings=settings, engine=engine, search=search, federated=federated,
                      assistant=assistant, rails=rails,
                      mcp_http=mcp_http or httpx2.AsyncClient(timeout=HTTP_TIMEOUT),
                      llm_http=llm_http, phraser=phraser,
                      whatsapp=build_whatsapp(settings, whatsapp_http),
                      telegram=build_telegram(settings), shared=shared)
    runtime.rate_limit = RateLimit(state=shared, messages=settings.rate_limit_messages,
                                   window_s=settings.rate_limit_window_seconds)
    runtime.loop_turns = LoopTurns(assistant.turns, enabled=settings.turns_on_loop)
    federated.adapter_for = runtime.adapter_for
    runtime.onboarding = Onboarding(engine=engine, run_live=runtime.call_live,
                                    adapter_for_url=runtime.adapter_for_url)
    _RUNTIMES.add(runtime)
    return runtime


def close_all() -> None:
    """Close every runtime this process built (the command line calls it on exit)."""
    for runtime in list(_RUNTIMES):
        runtime.close()


def has_merchants(engine: Engine) -> bool:
    with Session(engine) as session:
        return session.exec(select(Merchant.id).limit(1)).first() is not None


def seed_demo(runtime: Runtime) -> list[tuple[Merchant, FeedReport]]:
    """Import the demo merchants' feeds through the ordinary feed adapter."""
    specs = json.loads((DEMO_DIR / "merchants.json").read_text("utf-8"))
    results = []
    for spec in specs:
        results.append(add_merchant_from_feed(
            engine=runtime.engine, name=spec["name"], market=spec["market"],
            feed=DEMO_DIR / spec["feed"], slug=spec["slug"],
            base_url=runtime.settings.public_url, replace=True))
    return results
