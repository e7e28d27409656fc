"""Money paths found by review: double taps, money after a cancel, partial refunds, webhooks
for payments Vitrine did not start, the sweep's reach, and the sandbox's limits."""

import json
import time
from datetime import timedelta

import httpx
import pytest
from sqlmodel import Session, select

from checkout.merchant_notices import OrderDelivery, deliver_due
from checkout.models import Order
from checkout.rails.pix import SIGNATURE_HEADER as PIX_SIGNATURE
from checkout.service import confirm_order
from checkout.signatures import hmac_sha256_hex
from checkout.sweep import sweep
from core.db import utcnow
from core.settings import Settings
from tests.checkout.test_api import OPS, _bought, _give_key
from tests.test_end_to_end import chat, pix_code, signed, tlv
from vitrine.runtime import build_rails

pytestmark = pytest.mark.anyio

ASADO = "regalo para mi papá que le gusta el asado"
MAE = "presente para minha mãe até R$200"


async def _confirmation(client, market: str, text: str) -> tuple[str, dict]:
    messages = await chat(client, text=text, market=market)
    [confirmation] = await chat(client, action=messages[-1]["cards"][0]["buttons"][0]["action"])
    confirm = next(b["action"] for b in confirmation["buttons"]
                   if b["action"].startswith("confirm:"))
    return confirm.split(":", 1)[1], confirmation


class IdempotentStripe:
    """Stripe's Checkout Sessions as idempotency keys make them behave: a key replays its
    first answer (an error too), and the same key with other parameters is refused."""

    def __init__(self, first_answer: int = 200) -> None:
        self.first_answer = first_answer
        self.keys: dict[str, tuple[bytes, httpx.Response]] = {}
        self.sessions = 0

    def __call__(self, request: httpx.Request) -> httpx.Response:
        key = request.headers["idempotency-key"]
        if key in self.keys:
            params, answer = self.keys[key]
            if params != request.content:
                return httpx.Response(400, json={"error": {
                    "type": "idempotency_error", "message": "Keys for idempotent requests "
                    "can only be used with the same parameters they were first used with."}})
            return answer
        if self.first_answer != 200 and not self.keys:
            answer = httpx.Response(500, json={"error": {"type": "api_error",
                                                         "message": "try again"}})
        else:
            self.sessions += 1
            answer = httpx.Response(200, json={
                "id": f"cs_{self.sessions}", "object": "checkout.session",
                "url": f"https://checkout.stripe.com/c/pay/cs_{self.sessions}",
                "expires_at": int(time.time()) + 3600})
        self.keys[key] = (request.content, answer)
        return answer


def _stripe(provider: IdempotentStripe):
    from checkout.rails.stripe import StripeRail

    return StripeRail(api_key="sk_test_1", webhook_secret="w" * 20,
                      public_url="http://testserver", max_network_retries=0,
                      http_client=httpx.Client(transport=httpx.MockTransport(provider)))


async def test_two_confirmations_at_once_start_one_payment(client, demo_runtime):
    provider = IdempotentStripe()
    rails = {**demo_runtime.rails, "sandbox": _stripe(provider)}
    order_id, _ = await _confirmation(client, "US", "gift for my 10-year-old nephew under $40")
    # Two devices read the order before either wrote: both try to start its payment.
    with Session(demo_runtime.engine) as first, Session(demo_runtime.engine) as second:
        a, b = first.get(Order, order_id), second.get(Order, order_id)
        won = confirm_order(session=first, order=a, rails=rails)
        first.commit()
        lost = confirm_order(session=second, order=b, rails=rails)
        second.commit()
    assert won.outcome == "confirmed" and lost.outcome == "not_pending"
    assert provider.sessions == 1  # the second tap got the same session back, not a new one


async def test_a_failed_try_is_followed_by_a_new_payment_not_its_replayed_error(
        client, demo_runtime):
    provider = IdempotentStripe(first_answer=500)
    demo_runtime.assistant.buying.rails["sandbox"] = _stripe(provider)
    order_id, confirmation = await _confirmation(
        client, "US", "gift for my 10-year-old nephew under $40")
    [down] = await chat(client, action=f"confirm:{order_id}")
    assert "could not reach the payment provider" in down["text"]
    [paid] = await chat(client, action=f"confirm:{order_id}")
    assert "checkout.stripe.com" in paid["text"] and provider.sessions == 1


async def test_money_for_a_withdrawn_order_is_owed_back_and_everyone_hears(
        client, demo_runtime):
    order_id, payment = await _bought(client, "BR", MAE)
    txid = tlv(tlv(pix_code(payment))["62"])["05"]
    withdraw = next(b["action"] for m in payment for b in m["buttons"]
                    if b["action"].startswith("withdraw:"))
    [done] = await chat(client, action=withdraw)
    assert "Se você já pagou, o dinheiro será devolvido" in done["text"]
    # The shopper had already paid the code on their phone.
    body, headers = signed({"event_id": "late", "txid": txid, "status": "paid"})
    response = await client.post("/api/payments/sandbox/webhook", content=body, headers=headers)
    assert response.json()["status"] == "applied"
    shown = (await client.get(f"/api/orders/{order_id}", headers=OPS)).json()
    assert shown["status"] == "refund_pending"
    notes = [h["note"] for h in shown["status_history"]]
    # The provider that took the money is asked to send it back at once.
    assert notes[-2:] == ["paid after it was canceled: refund due",
                          f"refund re_{txid} asked of the provider"]
    told = await chat(client, text="oi")
    assert any("que estava cancelado" in m["text"] for m in told)


async def test_a_second_payment_or_a_wrong_amount_is_written_on_the_order(
        client, demo_runtime):
    order_id, payment = await _bought(client, "BR", MAE)
    txid = tlv(tlv(pix_code(payment))["62"])["05"]
    for event_id, extra, status in (("short", {"amount": 1, "currency": "BRL"},
                                     "amount_mismatch"),
                                    ("right", {}, "applied"), ("again", {}, "ignored")):
        body, headers = signed({"event_id": event_id, "txid": txid, "status": "paid", **extra})
        response = await client.post("/api/payments/sandbox/webhook", content=body,
                                     headers=headers)
        assert response.json()["status"] == status
    assert response.json()["note"] == "paid_twice"
    notes = [h["note"] for h in (await client.get(f"/api/orders/{order_id}", headers=OPS)
                                 ).json()["status_history"]]
    assert notes[-3].startswith("paid 1 BRL, not the order's")
    assert notes[-1] == "paid again: the second payment is owed back"


async def test_a_partial_refund_does_not_mark_the_order_refunded(client, demo_runtime):
    order_id, payment = await _bought(client, "BR", MAE)
    fields = tlv(pix_code(payment))
    txid, valor = tlv(fields["62"])["05"], fields["54"]
    secret = demo_runtime.settings.pix_webhook_secret
    refund = {"id": "D1", "rtrId": "D2", "valor": "1.00", "status": "DEVOLVIDO"}
    body = json.dumps({"pix": [{"endToEndId": "E123", "txid": txid, "valor": valor,
                                "devolucoes": [refund]}]}).encode()
    headers = {PIX_SIGNATURE: "sha256=" + hmac_sha256_hex(secret, body)}
    await client.post("/api/payments/pix/webhook", content=body, headers=headers)
    shown = (await client.get(f"/api/orders/{order_id}", headers=OPS)).json()
    assert shown["status"] == "paid"
    assert shown["status_history"][-1]["note"].startswith("100 BRL of")


async def test_a_providers_event_for_a_payment_vitrine_did_not_start_is_acknowledged(
        client, demo_runtime):
    secret = demo_runtime.settings.upi_webhook_secret
    body = json.dumps({"event_id": "x1", "txid": "SOMEONEELSE", "amount": 100,
                       "status": "SUCCESS", "sent_at": int(time.time())}).encode()
    headers = {"X-Vitrine-Signature": "sha256=" + hmac_sha256_hex(secret, body)}
    response = await client.post("/api/payments/upi/webhook", content=body, headers=headers)
    assert response.status_code == 200 and response.json()["status"] == "unknown_txid"


async def test_switching_rail_follows_the_orders_market_not_the_conversations(client):
    order_id, confirmation = await _confirmation(client, "AR", ASADO)
    await chat(client, text="oi", market="BR")  # the conversation moves to Brazil
    [reply] = await chat(client, action=f"choose:{order_id}:pix")
    assert "ya no es válido" in reply["text"] or "não é mais válido" in reply["text"]
    shown = (await client.get(f"/api/orders/{order_id}", headers=OPS)).json()
    assert shown["rail"] == "cod"
    [odd] = await chat(client, action=f"choose:{order_id}:²")
    assert "válido" in odd["text"]


async def test_static_codes_never_crowd_the_sweep_out(client, demo_runtime):
    from checkout.rails.mercadopago import MercadoPagoRail

    for _ in range(3):
        await _bought(client, "BR", MAE)  # Pix codes nobody paid: no provider to ask

    def provider(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/checkout/preferences":
            return httpx.Response(201, json={"id": "p", "init_point": "https://mp.example"})
        return httpx.Response(200, json={"results": []})

    rail = MercadoPagoRail(access_token="t", webhook_secret="w" * 20,
                           public_url="http://testserver", notification_url="http://x",
                           client=httpx.Client(transport=httpx.MockTransport(provider)))
    demo_runtime.assistant.buying.rails["mercadopago"] = rail
    order_id, confirmation = await _confirmation(client, "AR", ASADO)
    await chat(client, action=f"choose:{order_id}:mercadopago")
    await chat(client, action=f"confirm:{order_id}")
    counts = sweep(engine=demo_runtime.engine, rails={**demo_runtime.rails,
                                                      "mercadopago": rail},
                   now=utcnow() + timedelta(minutes=15))
    assert counts["asked"] == 1  # the card order, not the Pix codes


def test_the_sandbox_never_settles_a_rail_whose_real_provider_is_configured():
    rails = build_rails(Settings(env="development", pix_webhook_secret="a-real-psp-secret-1"))
    assert "pix" not in rails["sandbox"].settles and "upi" in rails["sandbox"].settles


async def test_a_merchants_bad_address_holds_up_nobody_and_news_keeps_its_order(
        client, demo_runtime):
    order_id, payment = await _bought(client, "BR", MAE)
    slug = (await client.get(f"/api/orders/{order_id}", headers=OPS)).json()["merchant"]
    key = _give_key(demo_runtime, slug)
    bad = await client.put(f"/api/merchants/{slug}/order-webhook",
                           json={"url": "https://shop.example:abc/hook"}, headers=key)
    assert bad.status_code == 400
    await client.put(f"/api/merchants/{slug}/order-webhook",
                     json={"url": "https://shop.example/hook"}, headers=key)
    txid = tlv(tlv(pix_code(payment))["62"])["05"]
    body, headers = signed({"event_id": "p", "txid": txid, "status": "paid"})
    await client.post("/api/payments/sandbox/webhook", content=body, headers=headers)
    *_, listed = await chat(client, text="/pedidos")
    await chat(client, action=next(b["action"] for b in listed["buttons"]))
    seen: list[str] = []

    def merchant(request: httpx.Request) -> httpx.Response:
        seen.append(request.headers["x-vitrine-event"])
        return httpx.Response(500 if len(seen) == 1 else 200)

    with httpx.Client(transport=httpx.MockTransport(merchant)) as http:
        now = utcnow()
        deliver_due(engine=demo_runtime.engine, client=http, now=now)
        later = now + timedelta(minutes=1)
        deliver_due(engine=demo_runtime.engine, client=http, now=later)
        deliver_due(engine=demo_runtime.engine, client=http, now=later)
    # "paid" failed once and was sent again before "refund_pending" ever went out.
    assert seen == ["order.paid", "order.paid", "order.refund_pending"]
    with Session(demo_runtime.engine) as session:
        assert all(d.delivered_at for d in session.exec(select(OrderDelivery)))


async def test_an_address_httpx_cannot_use_fails_its_merchant_alone(client, demo_runtime):
    from checkout.merchant_notices import MerchantOrderHook

    order_id, payment = await _bought(client, "BR", MAE)
    slug = (await client.get(f"/api/orders/{order_id}", headers=OPS)).json()["merchant"]
    with Session(demo_runtime.engine) as session:  # stored before addresses were checked
        session.add(MerchantOrderHook(merchant_slug=slug, url="https://x:abc/", secret="s"))
        session.commit()
    txid = tlv(tlv(pix_code(payment))["62"])["05"]
    body, headers = signed({"event_id": "p", "txid": txid, "status": "paid"})
    await client.post("/api/payments/sandbox/webhook", content=body, headers=headers)
    with httpx.Client(transport=httpx.MockTransport(lambda r: httpx.Response(200))) as http:
        counts = deliver_due(engine=demo_runtime.engine, client=http)
    assert counts == {"delivered": 0, "retried": 1, "gave_up": 0}
    with Session(demo_runtime.engine) as session:
        [delivery] = session.exec(select(OrderDelivery)).all()
        assert delivery.last_error.startswith("InvalidURL")


async def test_a_run_overlapping_a_slow_one_never_posts_the_same_news_twice(
        client, demo_runtime):
    order_id, _ = await _bought(client, "AR", ASADO)
    slug = (await client.get(f"/api/orders/{order_id}", headers=OPS)).json()["merchant"]
    key = _give_key(demo_runtime, slug)
    await client.put(f"/api/merchants/{slug}/order-webhook",
                     json={"url": "https://shop.example/hook"}, headers=key)
    await _bought(client, "AR", ASADO)
    posted: list[str] = []
    overlapping: list[dict] = []

    def slow_merchant(request: httpx.Request) -> httpx.Response:
        posted.append(request.headers["x-vitrine-delivery"])
        # The scheduler starts the next run while this one still waits on the merchant.
        with httpx.Client(transport=httpx.MockTransport(slow_merchant)) as http:
            if not overlapping:
                overlapping.append(deliver_due(engine=demo_runtime.engine, client=http,
                                               now=utcnow() + timedelta(minutes=1)))
        return httpx.Response(200)

    with httpx.Client(transport=httpx.MockTransport(slow_merchant)) as http:
        deliver_due(engine=demo_runtime.engine, client=http)
    assert overlapping == [{"delivered": 0, "retried": 0, "gave_up": 0}]
    assert len(posted) == 1


async def test_an_abandoned_pix_code_expires_after_a_day_and_late_money_still_pays(
        client, demo_runtime):
    from checkout.sweep import expire_overdue

    order_id, payment = await _bought(client, "BR", MAE)
    assert expire_overdue(engine=demo_runtime.engine, now=utcnow() + timedelta(hours=23)) == 0
    assert expire_overdue(engine=demo_runtime.engine, now=utcnow() + timedelta(hours=25)) == 1
    txid = tlv(tlv(pix_code(payment))["62"])["05"]
    body, headers = signed({"event_id": "late", "txid": txid, "status": "paid"})
    await client.post("/api/payments/sandbox/webhook", content=body, headers=headers)
    shown = (await client.get(f"/api/orders/{order_id}", headers=OPS)).json()
    assert [h["to_status"] for h in shown["status_history"]][-2:] == ["expired", "paid"]


async def test_a_payment_racing_a_withdrawal_is_decided_again_not_lost(client, demo_runtime):
    from checkout.models import PaymentEvent
    from checkout.payments import apply_payment_event
    from checkout.rails import RailEvent, RailOutcome
    from checkout.withdrawal import withdraw
    from core.markets import get_market

    order_id, _ = await _bought(client, "BR", MAE)
    with Session(demo_runtime.engine) as webhook, Session(demo_runtime.engine) as shopper:
        seen = webhook.exec(select(Order).where(Order.id == order_id)).one()
        assert seen.status == "awaiting_payment"  # the webhook read it before the cancel
        mine = shopper.get(Order, order_id)
        withdraw(session=shopper, order=mine, market=get_market("BR"),
                 rail=demo_runtime.rails["pix"])
        shopper.commit()
        result = apply_payment_event(
            session=webhook, rail="sandbox", settles=frozenset({"pix"}),
            event=RailEvent(event_id="raced", txid=seen.txid, outcome=RailOutcome.CAPTURED))
        webhook.commit()
    assert result.outcome == "applied"
    with Session(demo_runtime.engine) as session:
        assert session.get(Order, order_id).status == "refund_pending"
        assert session.exec(select(PaymentEvent)).one().event_id == "raced"


def test_the_same_payment_told_by_the_sweep_and_by_webhook_applies_once_quietly():
    from checkout.payments import _decide
    from checkout.rails import RailEvent, RailOutcome

    paid = Order(id="o", user_key="u", conversation_id="c", market="MX", language="es",
                 merchant_slug="m", merchant_name="M", product_id="p", title="T",
                 amount=100, total=100, currency="MXN", rail="oxxo", status="paid",
                 payment={"paid_by": "pi_1"})
    webhook = RailEvent(event_id="evt_9", txid="T", outcome=RailOutcome.CAPTURED,
                        amount=100, currency="MXN", provider_ref="pi_1")
    assert _decide(paid, webhook) == "duplicate"
    other = RailEvent(event_id="evt_10", txid="T", outcome=RailOutcome.CAPTURED,
                      amount=100, currency="MXN", provider_ref="pi_2")
    assert _decide(paid, other) == "paid_twice"
    back = RailEvent(event_id="r", txid="T", outcome=RailOutcome.REFUNDED, amount=100,
                     refunds="pi_2")
    assert _decide(paid, back) == "other_payment_refunded"  # the first payment stands


async def test_money_paid_on_an_earlier_try_still_finds_its_order(client, demo_runtime):
    """A voucher or session made by a try whose answer was lost can still be paid."""
    from checkout.models import PaymentAttempt
    from checkout.payments import apply_payment_event
    from checkout.rails import RailEvent, RailOutcome

    provider = IdempotentStripe(first_answer=500)
    demo_runtime.rails["stripe"] = _stripe(provider)  # US pays by card
    order_id, _ = await _confirmation(client, "US", "gift for my 10-year-old nephew under $40")
    await chat(client, action=f"confirm:{order_id}")  # the provider failed: no payment yet
    await chat(client, action=f"confirm:{order_id}")  # the second try starts one
    with Session(demo_runtime.engine) as session:
        tries = session.exec(select(PaymentAttempt).where(
            PaymentAttempt.order_id == order_id)).all()
        current = session.get(Order, order_id).txid
    [earlier] = [a.txid for a in tries if a.txid != current]
    with Session(demo_runtime.engine) as session:  # the shopper pays the first try after all
        result = apply_payment_event(session=session, rail="stripe", event=RailEvent(
            event_id="evt_old", txid=earlier, outcome=RailOutcome.CAPTURED))
        session.commit()
    assert result.outcome == "applied"
    assert (await client.get(f"/api/orders/{order_id}", headers=OPS)).json()["status"] == "paid"


async def test_money_for_no_order_is_kept_with_what_ops_needs_to_return_it(client, demo_runtime):
    from checkout.models import PaymentEvent

    body, headers = signed({"event_id": "stray", "txid": "VTNOTANYORDERWEKNOWOF1234",
                            "status": "paid", "amount": 4990, "currency": "BRL"})
    response = await client.post("/api/payments/sandbox/webhook", content=body, headers=headers)
    assert response.status_code == 404  # the sandbox's contract; real rails answer 200
    body, headers = signed({"event_id": "theirs", "txid": "ORDER-42-OF-ANOTHER-APP",
                            "status": "paid", "amount": 1, "currency": "BRL"})
    await client.post("/api/payments/sandbox/webhook", content=body, headers=headers)
    with Session(demo_runtime.engine) as session:
        [kept] = session.exec(select(PaymentEvent)).all()  # another app's payment is not ours
    assert (kept.outcome, kept.amount, kept.currency) == ("unmatched_payment", 4990, "BRL")


async def test_late_money_told_again_by_the_sweep_is_the_same_payment(client, demo_runtime):
    from checkout.payments import apply_payment_event
    from checkout.rails import RailEvent, RailOutcome

    order_id, payment = await _bought(client, "BR", MAE)
    withdraw = next(b["action"] for m in payment for b in m["buttons"]
                    if b["action"].startswith("withdraw:"))
    await chat(client, action=withdraw)
    txid = tlv(tlv(pix_code(payment))["62"])["05"]
    told = [RailEvent(event_id=event_id, txid=txid, outcome=RailOutcome.CAPTURED,
                      provider_ref="E2E-1") for event_id in ("webhook-1", "sweep:E2E-1")]
    outcomes = []
    for event in told:
        with Session(demo_runtime.engine) as session:
            outcomes.append(apply_payment_event(session=session, rail="sandbox", event=event,
                                                settles=frozenset({"pix"})).outcome)
            session.commit()
    assert outcomes == ["applied", "duplicate"]  # not "paid twice"


async def test_an_automatic_refund_that_fails_is_written_for_a_refund_by_hand(
        client, demo_runtime):
    from checkout.payments import refund_late_money
    from checkout.rails.mercadopago import MercadoPagoRail

    order_id, _ = await _bought(client, "BR", MAE)
    with Session(demo_runtime.engine) as session:
        order = session.get(Order, order_id)
        order.status = "refund_pending"
        order.payment = {**order.payment, "refund_due": True}  # late money, owed back
        session.add(order)
        session.commit()
    down = MercadoPagoRail(access_token="t", webhook_secret="w" * 20,
                           public_url="http://testserver", notification_url="http://x",
                           client=httpx.Client(transport=httpx.MockTransport(
                               lambda r: httpx.Response(503))))
    refund_late_money(engine=demo_runtime.engine, order_id=order_id, rail=down)
    notes = [h["note"] for h in (await client.get(f"/api/orders/{order_id}", headers=OPS)
                                 ).json()["status_history"]]
    assert notes[-1].startswith("automatic refund failed") and notes[-1].endswith("by hand")


async def test_money_paid_on_a_lost_try_before_confirming_again_pays_the_order(
        client, demo_runtime):
    """The try timed out after the provider made the payment; the shopper paid it."""
    from checkout.models import PaymentAttempt
    from checkout.payments import apply_payment_event
    from checkout.rails import RailEvent, RailOutcome

    provider = IdempotentStripe(first_answer=500)
    demo_runtime.rails["stripe"] = _stripe(provider)
    order_id, _ = await _confirmation(client, "US", "gift for my 10-year-old nephew under $40")
    await chat(client, action=f"confirm:{order_id}")  # failed: still awaiting confirmation
    with Session(demo_runtime.engine) as session:
        [attempt] = session.exec(select(PaymentAttempt).where(
            PaymentAttempt.order_id == order_id)).all()
        lost = attempt.txid
        result = apply_payment_event(session=session, rail="stripe", event=RailEvent(
            event_id="evt_lost", txid=lost, outcome=RailOutcome.CAPTURED))
        session.commit()
    assert result.outcome == "applied"
    shown = (await client.get(f"/api/orders/{order_id}", headers=OPS)).json()
    assert shown["status"] == "paid" and shown["txid"] == lost


async def test_a_reference_with_wildcards_or_cut_short_matches_only_what_it_should(
        client, demo_runtime):
    from checkout.payments import order_paid_by

    order_id, _ = await _bought(client, "BR", MAE)
    with Session(demo_runtime.engine) as session:
        txid = session.get(Order, order_id).txid
        for crafted in ("VT" + "_" * 18, "VT" + "%" * 18, "vt" + "%" * 20, txid[:12]):
            assert order_paid_by(session, crafted) is None, crafted
        assert order_paid_by(session, txid[:21]).id == order_id  # a SEPA RF-length cut
        assert order_paid_by(session, txid + "ab12cd34ef").id == order_id  # a Pix API txid


async def test_the_sweep_asks_for_a_refund_the_process_stopped_before_asking(
        client, demo_runtime):
    from checkout.sweep import sweep

    order_id, payment = await _bought(client, "BR", MAE)
    with Session(demo_runtime.engine) as session:  # recorded, then the process stopped
        order = session.get(Order, order_id)
        order.status = "refund_pending"
        order.payment = {**order.payment, "refund_due": True}
        session.add(order)
        session.commit()
    assert sweep(engine=demo_runtime.engine, rails=demo_runtime.rails)["refunds_asked"] == 1
    assert sweep(engine=demo_runtime.engine, rails=demo_runtime.rails)["refunds_asked"] == 0
    notes = [h["note"] for h in (await client.get(f"/api/orders/{order_id}", headers=OPS)
                                 ).json()["status_history"]]
    assert notes[-1] == "the rail cannot refund: the merchant refunds by hand"  # static Pix


async def test_a_shopper_saying_they_paid_marks_nothing_paid(client):
    order_id, _ = await _bought(client, "BR", MAE)
    await chat(client, text="já paguei!")
    await chat(client, text="paguei o pix, pode mandar")
    shown = (await client.get(f"/api/orders/{order_id}", headers=OPS)).json()
    assert shown["status"] == "awaiting_payment"


async def test_a_failed_payment_is_told_to_the_shopper(client):
    _, payment = await _bought(client, "BR", MAE)
    txid = tlv(tlv(pix_code(payment))["62"])["05"]
    body, headers = signed({"event_id": "no", "txid": txid, "status": "failed"})
    await client.post("/api/payments/sandbox/webhook", content=body, headers=headers)
    told = await chat(client, text="oi")
    assert any("não foi concluído" in m["text"] or "não passou" in m["text"] for m in told)


async def test_a_product_sold_out_before_confirm_is_never_charged(client, demo_runtime):
    from catalog.models import CatalogProduct

    order_id, confirmation = await _confirmation(client, "BR", MAE)
    with Session(demo_runtime.engine) as session:
        order = session.get(Order, order_id)
        row = session.exec(select(CatalogProduct).where(
            CatalogProduct.product_id == order.product_id)).first()
        row.in_stock = False
        session.add(row)
        session.commit()
    [reply] = await chat(client, action=f"confirm:{order_id}")
    assert "esgotou" in reply["text"] or "Nada foi cobrado" in reply["text"]
    shown = (await client.get(f"/api/orders/{order_id}", headers=OPS)).json()
    assert shown["status"] == "canceled" and not shown["txid"]


def test_a_cash_on_delivery_fee_is_added_to_the_total_the_shopper_confirms(demo_runtime):
    from dataclasses import replace

    from catalog.models import CatalogProduct, Merchant
    from checkout.service import start_checkout
    from core.markets import get_market

    argentina = replace(get_market("AR"), cod_fee=150000)
    with Session(demo_runtime.engine) as session:
        product = session.exec(select(CatalogProduct).where(
            CatalogProduct.currency == "ARS")).first()
        merchant = session.get(Merchant, product.merchant_id)
        order = start_checkout(session=session, user_key="u", conversation_id="c",
                               market=argentina, language="es", merchant_slug=merchant.slug,
                               product_id=product.product_id, rails=demo_runtime.rails).order
        assert (order.rail, order.fee, order.total) == (
            "cod", 150000, product.price_amount + 150000)


def test_whole_peso_markets_show_no_decimals():
    from core.markets import get_market
    from core.money import money_from_major

    assert get_market("CO").format_price(money_from_major("4500000", "COP")) == "$4.500.000"
    assert get_market("AR").format_price(money_from_major("15000", "ARS")) == "$15.000"
