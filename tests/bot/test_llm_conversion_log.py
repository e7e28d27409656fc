"""The language model wired into the running app: it is used only when configured, its tokens
reach the conversion log through the web chat API, and ops turns them into a cost per sale."""

from collections.abc import AsyncIterator, Iterator
from decimal import Decimal

import httpx
import pytest
from pydantic import SecretStr
from sqlmodel import Session, select

from bot.llm_intent import LlmIntentParser
from bot.rules import RuleIntentParser
from core.settings import Settings
from ops.events import ConversionEvent, EventKind, record_event
from tests.conftest import OPS_TOKEN, app_client
from tests.fake_llm_server import API_KEY, BASE_URL, MODEL, FakeLlm, understanding
from vitrine.runtime import Runtime, build_runtime, seed_demo

pytestmark = pytest.mark.anyio


def with_llm(settings: Settings, **more: object) -> Settings:
    return settings.model_copy(update={"llm_base_url": BASE_URL, "llm_model": MODEL,
                                       "llm_api_key": SecretStr(API_KEY), **more})


@pytest.fixture
def fake_llm() -> FakeLlm:
    return FakeLlm()


@pytest.fixture
def llm_runtime(settings: Settings, fake_llm: FakeLlm) -> Iterator[Runtime]:
    priced = with_llm(settings, llm_price_in_per_mtok=Decimal("0.15"),
                      llm_price_out_per_mtok=Decimal("0.60"))
    runtime = build_runtime(priced, llm_http=fake_llm.client())
    seed_demo(runtime)
    yield runtime
    runtime.close()


@pytest.fixture
async def llm_client(llm_runtime: Runtime) -> AsyncIterator[httpx.AsyncClient]:
    async with app_client(llm_runtime) as client:
        yield client


def understood_events(runtime: Runtime) -> list[ConversionEvent]:
    with Session(runtime.engine) as session:
        return list(session.exec(select(ConversionEvent).where(
            ConversionEvent.kind == EventKind.INTENT_UNDERSTOOD).order_by(ConversionEvent.id)))


def test_without_llm_settings_the_runtime_uses_the_rule_parser(settings):
    plain = settings.model_copy(update={"llm_base_url": None, "llm_model": None})
    runtime = build_runtime(plain)
    try:
        assert isinstance(runtime.assistant.parser, RuleIntentParser)
        assert runtime.llm_http is None and runtime.phraser is None
    finally:
        runtime.close()


def test_a_base_url_without_a_model_is_not_enough(settings):
    runtime = build_runtime(settings.model_copy(update={"llm_base_url": BASE_URL,
                                                        "llm_model": None}))
    try:
        assert isinstance(runtime.assistant.parser, RuleIntentParser)
    finally:
        runtime.close()


def test_with_llm_settings_the_runtime_asks_the_model_and_closes_its_client(settings, fake_llm):
    http = fake_llm.client()
    runtime = build_runtime(with_llm(settings), llm_http=http)
    assert isinstance(runtime.assistant.parser, LlmIntentParser)
    assert runtime.phraser is None  # rewording replies is a separate switch, off by default
    runtime.close()
    assert http.is_closed


def test_the_phrasing_switch_builds_a_phraser(settings, fake_llm):
    runtime = build_runtime(with_llm(settings, llm_phrase_replies=True),
                            llm_http=fake_llm.client())
    try:
        assert runtime.phraser is not None
    finally:
        runtime.close()


async def test_tokens_reach_the_conversion_log_and_the_funnel_through_the_chat_api(
        llm_client, llm_runtime, fake_llm):
    fake_llm.answer(understanding(recipient="mother", gender="female",
                                  interests=["gardening"]),
                    prompt_tokens=900, completion_tokens=60)
    response = await llm_client.post("/api/chat", json={
        "user": "ana", "text": "um presente pra minha maezinha que ama plantas", "market": "BR"})
    assert response.status_code == 200
    assert any(m["cards"] for m in response.json()["messages"])
    assert fake_llm.body()["messages"][-1]["content"] == \
        "um presente pra minha maezinha que ama plantas"

    # The provider times out on the second message: the rules answer, nothing is spent.
    fake_llm.fail(httpx.ReadTimeout("slow"))
    response = await llm_client.post("/api/chat", json={
        "user": "ana", "text": "presente para minha mãe até R$200", "market": "BR"})
    assert response.status_code == 200 and any(m["cards"] for m in response.json()["messages"])

    # Invalid output on the third: the rules answer, but the tokens were spent.
    fake_llm.answer(understanding(recipient="neighbour"), prompt_tokens=880,
                    completion_tokens=20)
    await llm_client.post("/api/chat", json={
        "user": "ana", "text": "presente para minha mãe até R$300", "market": "BR"})

    events = understood_events(llm_runtime)
    assert [(e.parser, e.tokens_in, e.tokens_out) for e in events] == \
        [("llm", 900, 60), ("rules", 0, 0), ("rules", 880, 20)]

    with Session(llm_runtime.engine) as session:
        record_event(session, EventKind.ORDER_PAID, user_key="web:ana", market="BR",
                     order_id="ord_test", amount=15000, currency="BRL")
        session.commit()
    funnel = (await llm_client.get("/api/ops/funnel",
                                   headers={"Authorization": f"Bearer {OPS_TOKEN}"})).json()
    assert funnel["stages"]["paid"] == 1
    llm = funnel["llm"]
    assert (llm["understood"], llm["tokens_in"], llm["tokens_out"]) == (1, 1780, 80)
    # 1780 x 0.15 + 80 x 0.60 per million tokens
    expected = (Decimal(1780) * Decimal("0.15") + Decimal(80) * Decimal("0.60")) / 1_000_000
    assert Decimal(llm["cost_usd"]) == expected.quantize(Decimal("0.000001"))
    assert Decimal(llm["cost_per_paid_order_usd"]) == expected.quantize(Decimal("0.000001"))


async def test_the_funnel_has_llm_tokens_but_no_cost_without_prices(client):
    funnel = (await client.get("/api/ops/funnel",
                               headers={"Authorization": f"Bearer {OPS_TOKEN}"})).json()
    assert funnel["llm"] == {"understood": 0, "tokens_in": 0, "tokens_out": 0,
                             "cost_usd": None, "cost_per_paid_order_usd": None}
    assert set(funnel) >= {"stages", "rates", "no_results", "revenue", "events"}


def test_llm_settings_come_from_the_environment_and_the_key_stays_secret(monkeypatch):
    monkeypatch.setenv("VITRINE_LLM_BASE_URL", BASE_URL)
    monkeypatch.setenv("VITRINE_LLM_MODEL", MODEL)
    monkeypatch.setenv("VITRINE_LLM_API_KEY", API_KEY)
    monkeypatch.setenv("VITRINE_LLM_PRICE_IN_PER_MTOK", "0.15")
    read = Settings()
    assert read.llm_enabled and read.llm_price_in_per_mtok == Decimal("0.15")
    assert read.llm_api_key is not None and read.llm_api_key.get_secret_value() == API_KEY
    assert API_KEY not in repr(read)


def test_a_base_url_that_is_not_http_is_refused():
    with pytest.raises(ValueError, match="VITRINE_LLM_BASE_URL"):
        Settings(llm_base_url="api.openai.com/v1", llm_model=MODEL)



def test_a_reworded_intro_reaches_the_shopper_and_its_tokens_the_log(settings):
    fake = FakeLlm()
    fake.answer(understanding(recipient="mother", interests=["gardening"]),
                prompt_tokens=100, completion_tokens=10)
    fake.answer({"intro": "Olha só o que separei para sua mãe:"},
                prompt_tokens=50, completion_tokens=5)
    runtime = build_runtime(with_llm(settings, llm_phrase_replies=True), llm_http=fake.client())
    seed_demo(runtime)
    try:
        reply = runtime.assistant.handle(user_key="web:phrase",
                                         text="presente para minha mãe que ama jardinagem")
        [event] = understood_events(runtime)
    finally:
        runtime.close()
    shown = [m for m in reply.messages if m.cards]
    assert shown and shown[0].text == "Olha só o que separei para sua mãe:"
    assert (event.tokens_in, event.tokens_out) == (150, 15)


async def test_tokens_spent_on_a_greeting_are_counted_too(llm_client, llm_runtime, fake_llm):
    fake_llm.answer(understanding(), prompt_tokens=700, completion_tokens=12)
    response = await llm_client.post("/api/chat", json={"user": "oi", "text": "oi, tudo bem?",
                                                        "market": "BR"})
    assert response.status_code == 200 and not any(m["cards"]
                                                   for m in response.json()["messages"])
    assert understood_events(llm_runtime) == []
    funnel = (await llm_client.get("/api/ops/funnel",
                                   headers={"Authorization": f"Bearer {OPS_TOKEN}"})).json()
    assert (funnel["llm"]["understood"], funnel["llm"]["tokens_in"],
            funnel["llm"]["tokens_out"]) == (0, 700, 12)
