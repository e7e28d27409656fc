"""Stores the shopper names: ruled out, asked for, and remembered."""

import pytest
from sqlmodel import Session

from bot import memory
from bot.stores import read_stores

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
