import pytest

from checkout.models import Order
from checkout.rails.pix import PixRail, crc16, static_brcode
from core.errors import InvalidInput
from core.money import Money

BCB_MANUAL = ("00020126580014br.gov.bcb.pix0136123e4567-e12b-12d1-a456-4266554400005204000053039"
              "865802BR5913Fulano de Tal6008BRASILIA62070503***63041D3D")
WITH_AMOUNT = ("00020126510014br.gov.bcb.pix0115thalesog@me.com0210Pedido 12352040000530398654"
               "0510.005802BR5914THALES OGLIARI6015SAO MIGUEL DO O62070503***63040DC6")
DYNAMIC = ("00020101021226740014br.gov.bcb.pix2552payload.psp.com/3ec9d2f9-5f03-4e0e-820d-63a81"
           "e769e875204000053039865802BR5914THALES OGLIARI6015SAO MIGUEL DO O62070503***63042895")


def test_crc_is_ccitt_false():
    assert crc16("123456789") == "29B1"


@pytest.mark.parametrize("payload", [BCB_MANUAL, WITH_AMOUNT, DYNAMIC])
def test_golden_payloads_carry_their_crc(payload):
    assert crc16(payload[:-4]) == payload[-4:]


def test_static_code_matches_the_central_bank_manual():
    assert static_brcode(key="123e4567-e12b-12d1-a456-426655440000",
                         merchant_name="Fulano de Tal", merchant_city="BRASILIA") == BCB_MANUAL


def test_static_code_with_amount_and_description():
    assert static_brcode(key="thalesog@me.com", merchant_name="THALES OGLIARI",
                         merchant_city="SAO MIGUEL DO O", amount=Money(1000, "BRL"),
                         description="Pedido 123") == WITH_AMOUNT


def test_txid_amount_and_accents_are_encoded():
    code = static_brcode(key="pix@loja.com", merchant_name="Jardim & Cia São Paulo Ltda ME",
                         merchant_city="São Paulo", amount=Money(14990, "BRL"),
                         txid="VT123ABC")
    assert "5406149.90" in code
    assert "62120508VT123ABC" in code
    assert "6009Sao Paulo" in code
    assert "5925Jardim & Cia Sao Paulo Lt" in code
    assert crc16(code[:-4]) == code[-4:]


def test_non_brl_and_bad_txids_are_refused():
    with pytest.raises(InvalidInput):
        static_brcode(key="k", merchant_name="n", merchant_city="c", amount=Money(100, "USD"))
    with pytest.raises(InvalidInput):
        static_brcode(key="k", merchant_name="n", merchant_city="c", txid="has space")
    with pytest.raises(InvalidInput):
        static_brcode(key="k", merchant_name="n", merchant_city="c", txid="X" * 26)


@pytest.mark.parametrize("cents", [0, 1_000_000_000_000])
def test_amounts_outside_what_field_54_holds_are_refused(cents):
    with pytest.raises(InvalidInput):
        static_brcode(key="k", merchant_name="n", merchant_city="c", amount=Money(cents, "BRL"))


def test_a_static_code_cannot_be_canceled():
    rail = PixRail(key="pix@loja.com", merchant_name="Jardim", merchant_city="Sao Paulo",
                   webhook_secret="whsec")
    order = Order(id="ord_1", user_key="tg:1", conversation_id="conv_1", market="BR",
                  language="pt_BR", merchant_slug="jardim", merchant_name="Jardim",
                  product_id="P-1", title="Regador", amount=14990, total=14990,
                  currency="BRL", rail="pix", txid="VT123ABC")
    # Any bank app still pays it; money that arrives is refunded.
    assert rail.cancel(order) is False
