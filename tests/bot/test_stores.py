"""Stores the shopper names: ruled out, asked for, and remembered."""

import pytest
from sqlmodel import Session

from bot import memory
from bot.stores import read_stores
from core.markets import get_market

MERCHANTS = {"jardim-e-cia": "Jardim & Cia", "regalos-del-sur": "Regalos del Sur",
             "giftwell": "Giftwell", "casa-presente": "Casa Presente"}


@pytest.mark.parametrize(("text", "liked", "avoided", "rest"), [
    ("presente para minha mãe, nada da Jardim & Cia", [], ["jardim-e-cia"],
     "presente para minha mãe"),
    ("regalo para mi mamá sin Regalos del Sur", [], ["regalos-del-sur"],
     "regalo para mi mamá"),
    ("gift for mom, not from giftwell", [], ["giftwell"], "gift for mom"),
    ("presente para meu pai da loja Casa Presente", ["casa-presente"], [],
     "presente para meu pai"),
    ("only from Giftwell please", ["giftwell"], [], "please"),
    ("uma casa de passarinho para o jardim", [], [], "uma casa de passarinho para o jardim"),
    # A name alone may be a brand or a word: only a phrase about the store makes it one.
    ("presente giftwell para minha mãe", [], [], "presente giftwell para minha mãe"),
])
def test_store_names_are_read_and_cut_from_the_message(text, liked, avoided, rest):
    found = read_stores(text, MERCHANTS)
    assert (found.liked, found.avoided, found.text) == (liked, avoided, rest)


def _cards(reply):
    return [c for m in reply.messages for c in m.cards]


def test_a_store_ruled_out_is_never_shown_and_is_remembered(demo_runtime):
    bot = demo_runtime.assistant
    first = _cards(bot.handle(user_key="web:ana", text="presente para minha mãe, nada da "
                              "Jardim & Cia", market="BR"))
    assert first and all(c.merchant_id != "jardim-e-cia" for c in first)
    later = _cards(bot.handle(user_key="web:ana", text="algo para jardinagem"))
    assert all(c.merchant_id != "jardim-e-cia" for c in later)
    shown = "\n".join(m.text for m in bot.handle(user_key="web:ana", text="/memory").messages)
    assert "evita a loja Jardim & Cia" in shown


def test_a_store_asked_for_limits_the_request_to_it(demo_runtime):
    bot = demo_runtime.assistant
    cards = _cards(bot.handle(user_key="web:ana", text="presente para minha mãe da loja "
                              "Jardim & Cia", market="BR"))
    assert cards and all(c.merchant_id == "jardim-e-cia" for c in cards)
    with Session(demo_runtime.engine) as session:
        kinds = {(f.kind, f.value) for f in memory.facts(session=session, user_key="web:ana")}
    assert ("likes_store", "jardim-e-cia") in kinds


def test_a_store_added_after_the_first_message_is_known_by_name_at_once(demo_runtime):
    from catalog.models import MerchantCreate
    from catalog.store import create_merchant

    bot = demo_runtime.assistant
    bot.handle(user_key="web:ana", text="presente pro meu pai", market="BR")
    with Session(demo_runtime.engine) as session:
        create_merchant(session=session, merchant_in=MerchantCreate(
            slug="emporio-mineiro", name="Empório Mineiro", market="BR"))
        session.commit()
    intent = bot.understand("presente pro meu pai só do Empório Mineiro",
                            market=get_market("BR"))
    assert intent.stores == ["emporio-mineiro"]


def test_a_bare_store_name_that_is_also_a_brand_stays_a_brand(demo_runtime):
    from catalog.models import MerchantCreate
    from catalog.store import create_merchant

    with Session(demo_runtime.engine) as session:
        create_merchant(session=session, merchant_in=MerchantCreate(
            slug="tramontina", name="Tramontina", market="BR"))
        session.commit()
    bot = demo_runtime.assistant
    cards = _cards(bot.handle(user_key="web:ana", text="kit de ferramentas tramontina",
                              market="BR"))
    assert cards and all(c.merchant_id != "tramontina" for c in cards)
    with Session(demo_runtime.engine) as session:
        assert not [f for f in memory.facts(session=session, user_key="web:ana")
                    if f.kind.endswith("_store")]
