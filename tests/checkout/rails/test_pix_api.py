import base64
import json
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from urllib.parse import parse_qs

import httpx
import pytest

from checkout.models import Order
from checkout.rails import RailOutcome, RefundOutcome, WebhookRequest
from checkout.rails.pix import PixRail
from checkout.rails.pix_api import PixApi, api_txid, refund_id
from checkout.signatures import hmac_sha256_hex
from core.db import utcnow
from core.errors import InvalidInput, PaymentProviderError

API = "https://pix.psp.test/api"
KEY = "pagamentos@jardim.com.br"
TXID = "VT0123456789ABCDEFGHJKLMN"  # Vitrine's: 25 characters
CHARGE_TXID = api_txid(TXID)
E2E = "E12345678202501151200abcdef12345"
NOW = datetime(2025, 1, 15, 12, 0, tzinfo=UTC).timestamp()
CODE = ("00020101021226740014br.gov.bcb.pix2552payload.psp.com/3ec9d2f9-5f03-4e0e-820d-63a81"
        "e769e875204000053039865802BR5914THALES OGLIARI6015SAO MIGUEL DO O62070503***63042895")


@dataclass
class FakePsp:
    """A PSP's Pix API at the transport boundary: it checks each request as the API would
    and keeps the charges it was asked to create."""

    cobs: dict[str, dict] = field(default_factory=dict)
    requests: list[httpx.Request] = field(default_factory=list)
    tokens_issued: int = 0
    token_lifetime: int = 3600
    revoked: set[str] = field(default_factory=set)  # tokens it answers 401 to
    fail_with: httpx.Response | Exception | None = None  # for every call but the token's
    refund_status: str = "EM_PROCESSAMENTO"
    patch_answer: httpx.Response | None = None  # instead of the API's own to a PATCH

    def handle(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        path = request.url.path.removeprefix("/api")
        if path == "/oauth/token":
            return self.token(request)
        assert request.headers["authorization"].startswith("Bearer tok-")
        if request.headers["authorization"].removeprefix("Bearer ") in self.revoked:
            return httpx.Response(401, json={"title": "Não autorizado"})
        if isinstance(self.fail_with, Exception):
            raise self.fail_with
        if self.fail_with is not None:
            return self.fail_with
        parts = path.split("/")
        if request.method == "PUT" and parts[:3] == ["", "v2", "cob"]:
            return self.create(parts[3], json.loads(request.content))
        if request.method == "GET" and parts[:3] == ["", "v2", "cob"]:
            return httpx.Response(200, json=self.cobs[parts[3]])
        if request.method == "PATCH" and parts[:3] == ["", "v2", "cob"]:
            return self.patch_answer or self.revise(parts[3], json.loads(request.content))
        if request.method == "PUT" and parts[:3] == ["", "v2", "pix"] and parts[4] == "devolucao":
            assert parts[3] == E2E
            return httpx.Response(201, json={"id": parts[5], "rtrId": "D1234", "status":
                                             self.refund_status, **json.loads(request.content)})
        raise AssertionError(f"unexpected request {request.method} {request.url}")

    def token(self, request: httpx.Request) -> httpx.Response:
        assert request.method == "POST"
        assert request.headers["authorization"] == \
            "Basic " + base64.b64encode(b"client-1:secret-1").decode()
        assert parse_qs(request.content.decode()) == {"grant_type": ["client_credentials"]}
        self.tokens_issued += 1
        return httpx.Response(200, json={"access_token": f"tok-{self.tokens_issued}",
                                         "token_type": "Bearer",
                                         "expires_in": self.token_lifetime, "scope": "cob.write"})

    def create(self, txid: str, body: dict) -> httpx.Response:
        if txid in self.cobs:  # a txid is unique at the PSP, as the API's specification says
            return httpx.Response(400, json={"title": "Cobrança já existe para este txid",
                                             "violacoes": [{"propriedade": "txid"}]})
        self.cobs[txid] = {"txid": txid, "revisao": 0, "status": "ATIVA",
                           "calendario": {"criacao": "2025-01-15T12:00:00.000Z",
                                          "expiracao": body["calendario"]["expiracao"]},
                           "location": "payload.psp.com/3ec9d2f9", "pixCopiaECola": CODE,
                           "valor": body["valor"], "chave": body["chave"],
                           "solicitacaoPagador": body["solicitacaoPagador"]}
        return httpx.Response(201, json=self.cobs[txid])

    def revise(self, txid: str, body: dict) -> httpx.Response:
        cob = self.cobs[txid]
        if cob["status"] != "ATIVA":  # the API revises open charges only
            return httpx.Response(400, json={
                "type": "https://pix.bcb.gov.br/api/v2/error/CobOperacaoInvalida",
                "title": "Cobrança inválida.", "status": 400,
                "detail": f"A cobrança está {cob['status']} e não pode ser alterada."})
        cob.update(body, revisao=cob["revisao"] + 1)
        return httpx.Response(200, json=cob)

    def pay(self, txid: str, *, devolucoes: list[dict] | None = None) -> None:
        cob = self.cobs[txid]
        cob["status"] = "CONCLUIDA"
        cob["pix"] = [{"endToEndId": E2E, "txid": txid, "valor": cob["valor"]["original"],
                       "horario": "2025-01-15T12:05:00.000Z", "devolucoes": devolucoes or []}]

    def calls(self, method: str, prefix: str) -> list[httpx.Request]:
        return [r for r in self.requests
                if r.method == method and r.url.path.removeprefix("/api").startswith(prefix)]


class Clock:
    def __init__(self) -> None:
        self.now = NOW

    def __call__(self) -> float:
        return self.now


def make_api(psp: FakePsp, clock: Clock | None = None) -> PixApi:
    return PixApi(base_url=API + "/", client_id="client-1", client_secret="secret-1", key=KEY,
                  client=httpx.Client(transport=httpx.MockTransport(psp.handle)),
                  clock=clock or Clock())


def make_order(**fields: object) -> Order:
    values: dict = dict(id="ord_0123456789abcdef", user_key="tg:1", conversation_id="conv_1",
                        market="BR", language="pt_BR", merchant_slug="jardim",
                        merchant_name="Jardim", product_id="P-1", title="Regador de Metal 2 L",
                        amount=13990, shipping=1000, total=14990, currency="BRL", rail="pix",
                        txid=CHARGE_TXID)
    values.update(fields)
    return Order(**values)


def paid_psp() -> FakePsp:
    psp = FakePsp()
    make_api(psp).initiate(make_order(txid=None), txid=TXID)
    psp.pay(CHARGE_TXID)
    return psp


# txids


@pytest.mark.parametrize("txid", [TXID, "VT1", "A"])
def test_api_txid_is_vitrines_txid_extended_to_35_letters_and_digits(txid):
    derived = api_txid(txid)
    assert len(derived) == 35 and derived.isascii() and derived.isalnum()
    assert derived.startswith(txid)
    assert api_txid(txid) == derived  # the same charge every time it is asked for
    assert api_txid(derived) == derived


def test_different_txids_make_different_api_txids():
    assert api_txid(TXID) != api_txid(TXID[:-1] + "P")


@pytest.mark.parametrize("txid", ["", "has space", "VT-123", "Pedidoçã", "X" * 36])
def test_txids_the_api_cannot_take_are_refused(txid):
    with pytest.raises(InvalidInput):
        api_txid(txid)


def test_refund_id_is_fixed_per_order_and_fits_the_api():
    first = refund_id("ord_0123456789abcdef")
    assert first == refund_id("ord_0123456789abcdef")
    assert first.isascii() and first.isalnum() and len(first) == 35
    assert first.startswith("ord0123456789abcdefD")
    assert refund_id("ord_0123456789abcdee") != first
    assert refund_id("ord0123456789abcdef") != first  # only the dropped "_" differs


# creating a charge


def test_charge_is_created_with_the_apis_request_shape():
    psp = FakePsp()
    make_api(psp).initiate(make_order(txid=None), txid=TXID)
    (put,) = psp.calls("PUT", "/v2/cob/")
    assert str(put.url) == f"{API}/v2/cob/{CHARGE_TXID}"
    assert put.headers["authorization"] == "Bearer tok-1"
    assert json.loads(put.content) == {
        "calendario": {"expiracao": 3600}, "valor": {"original": "149.90"}, "chave": KEY,
        "solicitacaoPagador": "Pedido ord_0123456789abcdef - Jardim"}


def test_charge_becomes_the_shoppers_instructions():
    instructions = make_api(FakePsp()).initiate(make_order(txid=None), txid=TXID)
    assert instructions.rail == "pix" and instructions.status == "awaiting_payment"
    assert instructions.txid == instructions.provider_ref == CHARGE_TXID
    assert instructions.copy_code == instructions.qr == CODE
    assert instructions.expires_at == datetime(2025, 1, 15, 13, 0, tzinfo=UTC)


@pytest.mark.parametrize(("total", "original"), [(1, "0.01"), (100, "1.00"),
                                                 (123456789, "1234567.89")])
def test_amounts_are_written_from_centavos_exactly(total, original):
    psp = FakePsp()
    make_api(psp).initiate(make_order(txid=None, total=total), txid=TXID)
    assert json.loads(psp.calls("PUT", "/v2/cob/")[0].content)["valor"] == {"original": original}


@pytest.mark.parametrize("fields", [{"currency": "USD"}, {"total": 0}])
def test_orders_pix_cannot_charge_are_refused_before_calling(fields):
    psp = FakePsp()
    with pytest.raises(InvalidInput):
        make_api(psp).initiate(make_order(txid=None, **fields), txid=TXID)
    assert psp.requests == []


# the token


def test_token_is_fetched_once_and_reused():
    psp = FakePsp()
    api = make_api(psp)
    api.initiate(make_order(txid=None), txid=TXID)
    api.status(make_order())
    assert psp.tokens_issued == 1
    assert [r.headers["authorization"] for r in psp.requests[1:]] == ["Bearer tok-1"] * 2


def test_token_is_renewed_shortly_before_it_expires():
    psp, clock = FakePsp(), Clock()
    api = make_api(psp, clock)
    api.initiate(make_order(txid=None), txid=TXID)
    clock.now += 3600 - 61
    api.status(make_order())
    assert psp.tokens_issued == 1
    clock.now += 2  # within the last minute of its hour
    api.status(make_order())
    assert psp.tokens_issued == 2
    assert psp.requests[-1].headers["authorization"] == "Bearer tok-2"


def test_a_revoked_token_is_replaced_once():
    psp = FakePsp()
    api = make_api(psp)
    api.initiate(make_order(txid=None), txid=TXID)
    psp.revoked.add("tok-1")
    assert api.status(make_order()) is None
    assert psp.tokens_issued == 2


def test_a_401_with_a_fresh_token_is_a_provider_error():
    psp = FakePsp(revoked={"tok-1", "tok-2"})
    with pytest.raises(PaymentProviderError) as caught:
        make_api(psp).initiate(make_order(txid=None), txid=TXID)
    assert caught.value.context["http_status"] == 401
    assert psp.tokens_issued == 2 and len(psp.calls("PUT", "/v2/cob/")) == 2


def test_refused_credentials_are_a_provider_error():
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(401, json={"error": "invalid_client"})
    api = PixApi(base_url=API, client_id="c", client_secret="s", key=KEY,
                 client=httpx.Client(transport=httpx.MockTransport(handler)))
    with pytest.raises(PaymentProviderError) as caught:
        api.initiate(make_order(txid=None), txid=TXID)
    assert caught.value.context["request"] == "POST /oauth/token"


# status


def test_a_paid_charge_is_captured_under_the_notices_event_id():
    psp = paid_psp()
    event = make_api(psp).status(make_order())
    assert event is not None and event.outcome == RailOutcome.CAPTURED
    assert (event.event_id, event.txid, event.provider_ref) == (E2E, CHARGE_TXID, E2E)
    assert (event.amount, event.currency) == (14990, "BRL")
    # The PSP's notice of the same payment is the same event: it applies once.
    body = json.dumps({"pix": psp.cobs[CHARGE_TXID]["pix"]}).encode()
    rail = PixRail(key=KEY, merchant_name="Jardim", merchant_city="Sao Paulo",
                   webhook_secret="whsec", api=make_api(psp))
    (notice,) = rail.parse_webhook(WebhookRequest(body=body, headers={
        "x-pix-signature": "sha256=" + hmac_sha256_hex("whsec", body)}))
    assert notice == event


@pytest.mark.parametrize(("status", "elapsed", "reason"), [
    ("REMOVIDA_PELO_PSP", 3600, "expired"),
    ("REMOVIDA_PELO_USUARIO_RECEBEDOR", 3700, "expired"),
    ("REMOVIDA_PELO_USUARIO_RECEBEDOR", 600, "removed"),
    ("REMOVIDA_PELO_PSP", 0, "removed"),
])
def test_a_removed_charge_failed_expired_past_its_expiry(status, elapsed, reason):
    psp, clock = FakePsp(), Clock()
    api = make_api(psp, clock)
    api.initiate(make_order(txid=None), txid=TXID)
    psp.cobs[CHARGE_TXID]["status"] = status
    clock.now += elapsed
    event = api.status(make_order())
    assert event is not None and event.outcome == RailOutcome.FAILED
    assert (event.reason, event.txid) == (reason, CHARGE_TXID)
    assert event.event_id == f"{CHARGE_TXID}:{status}"


def test_an_open_charge_has_no_news():
    psp = FakePsp()
    api = make_api(psp)
    api.initiate(make_order(txid=None), txid=TXID)
    assert api.status(make_order()) is None
    assert str(psp.calls("GET", "/v2/cob/")[0].url) == f"{API}/v2/cob/{CHARGE_TXID}"


def test_an_order_paid_by_static_code_is_not_asked_about():
    psp = FakePsp()
    assert make_api(psp).status(make_order(txid=TXID)) is None
    assert make_api(psp).refund(make_order(txid=TXID)).outcome == RefundOutcome.NOT_SUPPORTED
    assert psp.requests == []


# refunds


def test_refund_returns_the_payment_under_the_orders_devolucao_id():
    psp = paid_psp()
    result = make_api(psp).refund(make_order())
    back_id = refund_id("ord_0123456789abcdef")
    assert result.outcome == RefundOutcome.REFUNDED and result.provider_ref == back_id
    (put,) = psp.calls("PUT", "/v2/pix/")
    assert str(put.url) == f"{API}/v2/pix/{E2E}/devolucao/{back_id}"
    assert json.loads(put.content) == {"valor": "149.90"}


def test_refund_asked_twice_uses_one_devolucao_id():
    psp = paid_psp()
    make_api(psp).refund(make_order())
    make_api(psp).refund(make_order())
    assert len({r.url.path for r in psp.calls("PUT", "/v2/pix/")}) == 1


def test_a_refund_the_psp_already_took_is_not_asked_again():
    psp = paid_psp()
    back_id = refund_id("ord_0123456789abcdef")
    psp.pay(CHARGE_TXID, devolucoes=[{"id": back_id, "rtrId": "D1", "valor": "149.90",
                                      "status": "DEVOLVIDO"}])
    result = make_api(psp).refund(make_order())
    assert (result.outcome, result.provider_ref) == (RefundOutcome.REFUNDED, back_id)
    assert psp.calls("PUT", "/v2/pix/") == []


def test_a_refund_the_psp_could_not_make_is_a_provider_error():
    psp = paid_psp()
    psp.refund_status = "NAO_REALIZADO"
    with pytest.raises(PaymentProviderError):
        make_api(psp).refund(make_order())


def test_an_unpaid_charge_cannot_be_refunded():
    psp = FakePsp()
    make_api(psp).initiate(make_order(txid=None), txid=TXID)
    with pytest.raises(PaymentProviderError):
        make_api(psp).refund(make_order())
    assert psp.calls("PUT", "/v2/pix/") == []


# errors


@pytest.mark.parametrize("failure", [
    httpx.Response(503, json={"title": "Serviço indisponível"}),
    httpx.Response(500, text="<html>oops</html>"),
    httpx.ReadTimeout("read timed out"),
    httpx.ConnectError("connection refused"),
    httpx.Response(200, text="not json"),
])
def test_psp_failures_are_provider_errors_with_context(failure):
    psp = FakePsp(fail_with=failure)
    with pytest.raises(PaymentProviderError) as caught:
        make_api(psp).initiate(make_order(txid=None), txid=TXID)
    assert caught.value.context["txid"] == CHARGE_TXID
    assert caught.value.context["request"] == f"PUT /v2/cob/{CHARGE_TXID}"


def test_a_charge_the_api_refuses_is_invalid_input_with_its_reason():
    problem = {"type": "https://pix.bcb.gov.br/api/v2/error/CobOperacaoInvalida",
               "title": "Cobrança inválida.", "status": 400,
               "detail": "A requisição que busca alterar ou criar uma cobrança não respeita o "
                         "schema ou está semanticamente errada.",
               "violacoes": [{"razao": "O campo valor.original não respeita o schema.",
                              "propriedade": "cob.valor.original"}]}
    psp = FakePsp(fail_with=httpx.Response(400, json=problem))
    with pytest.raises(InvalidInput) as caught:
        make_api(psp).initiate(make_order(txid=None), txid=TXID)
    assert "cob.valor.original" in caught.value.reason
    assert caught.value.context["http_status"] == 400


def test_a_400_when_asking_about_a_charge_is_a_provider_error():
    # The sweep and withdrawals expect PaymentProviderError from status and refund.
    psp = FakePsp(fail_with=httpx.Response(400, json={"title": "txid inválido"}))
    with pytest.raises(PaymentProviderError):
        make_api(psp).status(make_order())


def test_an_answer_without_the_charges_code_is_a_provider_error():
    psp = FakePsp(fail_with=httpx.Response(201, json={"txid": CHARGE_TXID, "status": "ATIVA"}))
    with pytest.raises(PaymentProviderError):
        make_api(psp).initiate(make_order(txid=None), txid=TXID)


# the rail


def test_pix_rail_charges_through_the_api_when_it_has_one():
    psp = FakePsp()
    rail = PixRail(key=KEY, merchant_name="Jardim", merchant_city="Sao Paulo",
                   webhook_secret="whsec", api=make_api(psp))
    instructions = rail.initiate(make_order(txid=None), txid=TXID)
    assert (instructions.txid, instructions.copy_code) == (CHARGE_TXID, CODE)
    assert rail.status(make_order()) is None
    psp.pay(CHARGE_TXID)
    event = rail.status(make_order())
    assert event is not None and event.outcome == RailOutcome.CAPTURED
    assert rail.refund(make_order()).outcome == RefundOutcome.REFUNDED


def test_pix_rail_without_an_api_stays_static():
    rail = PixRail(key=KEY, merchant_name="Jardim", merchant_city="Sao Paulo",
                   webhook_secret="whsec")
    instructions = rail.initiate(make_order(txid=None), txid=TXID)
    # A static code has no expiry at the bank; the order waits a day for it.
    assert instructions.txid == TXID and instructions.expires_at is not None
    assert timedelta(hours=23) < instructions.expires_at - utcnow() <= timedelta(hours=24)
    assert instructions.copy_code is not None and "0525" + TXID in instructions.copy_code
    assert rail.status(make_order(txid=TXID)) is None
    assert rail.refund(make_order(txid=TXID)).outcome == RefundOutcome.NOT_SUPPORTED


def test_a_second_tap_or_a_retry_gets_the_charge_already_made_not_a_refusal():
    psp = FakePsp()
    api = make_api(psp)
    first = api.initiate(make_order(txid=None), txid=TXID)
    again = api.initiate(make_order(txid=None), txid=TXID)
    assert (again.txid, again.copy_code) == (first.txid, first.copy_code)
    assert len(psp.calls("PUT", "/v2/cob/")) == 2 and len(psp.cobs) == 1
    # Another amount under the same txid is a real refusal, with the PSP's reason.
    with pytest.raises(InvalidInput, match="já existe"):
        api.initiate(make_order(txid=None, total=99), txid=TXID)


# canceling


def open_psp() -> FakePsp:
    psp = FakePsp()
    make_api(psp).initiate(make_order(txid=None), txid=TXID)
    return psp


def test_cancel_removes_the_open_charge():
    psp = open_psp()
    assert make_api(psp).cancel(make_order()) is True
    (patch,) = psp.calls("PATCH", "/v2/cob/")
    assert str(patch.url) == f"{API}/v2/cob/{CHARGE_TXID}"
    assert patch.headers["authorization"] == "Bearer tok-2"  # the one this PixApi fetched
    assert json.loads(patch.content) == {"status": "REMOVIDA_PELO_USUARIO_RECEBEDOR"}
    assert psp.cobs[CHARGE_TXID]["status"] == "REMOVIDA_PELO_USUARIO_RECEBEDOR"


@pytest.mark.parametrize("status", ["REMOVIDA_PELO_USUARIO_RECEBEDOR", "REMOVIDA_PELO_PSP"])
def test_cancel_of_a_charge_already_removed_or_expired_is_done(status):
    psp = open_psp()
    psp.cobs[CHARGE_TXID]["status"] = status
    assert make_api(psp).cancel(make_order()) is True
    # The PSP refused the removal; the charge itself said it was gone.
    assert len(psp.calls("PATCH", "/v2/cob/")) == 1
    assert len(psp.calls("GET", "/v2/cob/")) == 1


def test_cancel_asked_twice_is_done_twice():
    psp = open_psp()
    api = make_api(psp)
    assert api.cancel(make_order()) is True
    assert api.cancel(make_order()) is True


def test_cancel_of_a_charge_paid_meanwhile_is_a_provider_error():
    psp = paid_psp()
    with pytest.raises(PaymentProviderError, match="paid") as caught:
        make_api(psp).cancel(make_order())
    assert caught.value.context["status"] == "CONCLUIDA"
    assert caught.value.context["txid"] == CHARGE_TXID
    assert psp.cobs[CHARGE_TXID]["status"] == "CONCLUIDA"


def test_cancel_answered_with_a_concluded_charge_is_a_provider_error():
    psp = paid_psp()
    psp.patch_answer = httpx.Response(200, json=psp.cobs[CHARGE_TXID])
    with pytest.raises(PaymentProviderError, match="paid"):
        make_api(psp).cancel(make_order())


def test_a_refused_removal_of_an_open_charge_is_a_provider_error():
    # Not the order's fault (InvalidInput): the caller keeps the order until it can stop it.
    psp = open_psp()
    psp.patch_answer = httpx.Response(400, json={"title": "Cobrança inválida.",
                                                 "detail": "status não permitido"})
    with pytest.raises(PaymentProviderError) as caught:
        make_api(psp).cancel(make_order())
    assert caught.value.context["http_status"] == 400
    assert caught.value.context["request"] == f"PATCH /v2/cob/{CHARGE_TXID}"
    assert "status não permitido" in caught.value.reason


@pytest.mark.parametrize("failure", [
    httpx.Response(503, json={"title": "Serviço indisponível"}),
    httpx.Response(404, json={"title": "Cobrança não encontrada"}),
    httpx.ReadTimeout("read timed out"),
    httpx.ConnectError("connection refused"),
])
def test_cancel_when_the_psp_fails_is_a_provider_error(failure):
    psp = open_psp()
    psp.fail_with = failure
    with pytest.raises(PaymentProviderError) as caught:
        make_api(psp).cancel(make_order())
    assert caught.value.context["request"] == f"PATCH /v2/cob/{CHARGE_TXID}"


def test_cancel_of_an_order_paid_by_static_code_asks_nothing():
    psp = FakePsp()
    assert make_api(psp).cancel(make_order(txid=TXID)) is False
    assert psp.requests == []


def test_pix_rail_cancels_through_the_api_when_it_has_one():
    psp = open_psp()
    rail = PixRail(key=KEY, merchant_name="Jardim", merchant_city="Sao Paulo",
                   webhook_secret="whsec", api=make_api(psp))
    assert rail.cancel(make_order()) is True
    assert psp.cobs[CHARGE_TXID]["status"] == "REMOVIDA_PELO_USUARIO_RECEBEDOR"
    assert rail.cancel(make_order(txid=TXID)) is False  # a static code from before the API
