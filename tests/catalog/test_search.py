import pytest

from catalog.merchants import add_merchant_from_feed
from catalog.search import MarketMerchants, SearchRequest
from tests.factories import ucp_product, write_jsonl


def _shop(runtime, tmp_path, products, market="BR", name="Loja"):
    feed = write_jsonl(tmp_path / f"{name}.jsonl", products)
    add_merchant_from_feed(engine=runtime.engine, name=name, market=market, feed=feed)
    return runtime.search


def _request(**kw):
    return SearchRequest(market="BR", currency="BRL", **kw)


def test_budget_is_a_hard_filter_and_out_of_stock_is_never_shown(runtime, tmp_path):
    search = _shop(runtime, tmp_path, [
        ucp_product("CHEAP", "Regador pequeno", 5000),
        ucp_product("PRICEY", "Regador grande", 25000),
        ucp_product("GONE", "Regador esgotado", 4000, available=False),
    ])
    ids = [r.product.product_id for r in search.search(_request(terms=["regador"], limit=10,
                                                                budget_max=20000))]
    assert ids == ["CHEAP"]


def test_typos_still_find_the_product(runtime, tmp_path):
    search = _shop(runtime, tmp_path, [
        ucp_product("K", "Chaleira Elétrica Inox", 19900, tags=["cozinha"]),
        ucp_product("V", "Vaso de Cerâmica", 9900, tags=["jardim"]),
    ])
    ranked = search.search(_request(terms=["chaleria"]))
    assert [r.product.product_id for r in ranked] == ["K"]


def test_title_matches_outrank_description_mentions(runtime, tmp_path):
    search = _shop(runtime, tmp_path, [
        ucp_product("BAG", "Bolsa para notebook", 9900,
                    description={"plain": "Protege seu notebook"}),
        ucp_product("NB", "Notebook Lenovo IdeaPad 15", 299900,
                    description={"plain": "Notebook leve"}),
    ])
    ranked = search.search(_request(terms=["notebook", "lenovo"], limit=2))
    assert ranked[0].product.product_id == "NB"


def test_gift_tags_rank_when_the_request_names_no_product(runtime, tmp_path):
    search = _shop(runtime, tmp_path, [
        ucp_product("TOY", "Boneca", 9900, tags=["recipient:child", "age:3-5"], rating=4.9),
        ucp_product("GARDEN", "Kit jardinagem", 9900,
                    tags=["recipient:mother", "age:senior", "interest:gardening"], rating=4.2),
    ])
    ranked = search.search(_request(tags=["recipient:mother", "age:senior",
                                          "interest:gardening"], limit=2))
    assert [r.product.product_id for r in ranked] == ["GARDEN"]
    assert ranked[0].matched_tags == ["recipient:mother", "age:senior", "interest:gardening"]


def test_rating_breaks_ties_between_equally_relevant_products(runtime, tmp_path):
    search = _shop(runtime, tmp_path, [
        ucp_product("LOW", "Caneca de cerâmica azul", 5000, rating=3.1),
        ucp_product("HIGH", "Caneca de cerâmica verde", 5000, rating=4.9),
    ])
    ranked = search.search(_request(terms=["caneca"], limit=2))
    assert ranked[0].product.product_id == "HIGH"


def test_the_index_follows_a_reimported_catalog(runtime, tmp_path):
    search = _shop(runtime, tmp_path, [ucp_product("OLD", "Regador antigo", 5000)])
    assert search.search(_request(terms=["regador"]))[0].product.product_id == "OLD"
    feed = write_jsonl(tmp_path / "new.jsonl", [ucp_product("NEW", "Regador novo", 5000)])
    add_merchant_from_feed(engine=runtime.engine, name="Loja", market="BR", feed=feed,
                           slug="loja", replace=True)
    assert [r.product.product_id for r in search.search(_request(terms=["regador"]))] == ["NEW"]


def test_markets_do_not_mix(runtime, tmp_path):
    _shop(runtime, tmp_path, [ucp_product("BR1", "Regador", 5000)])
    search = _shop(runtime, tmp_path, [ucp_product("US1", "Mug", 500, currency="USD")],
                   market="US", name="Shop")
    assert search.search(SearchRequest(market="US", currency="USD", terms=["regador"])) == []


def test_a_device_ranks_above_its_accessories(runtime, tmp_path):
    search = _shop(runtime, tmp_path, [
        ucp_product("SLV", "Capa Neoprene para Notebook 15", 9900, tags=[], rating=4.9),
        ucp_product("NB", "Notebook Lenovo IdeaPad 15 polegadas", 299900, tags=[], rating=4.0),
    ])
    ranked = search.search(_request(terms=["notebook"], limit=2))
    assert [r.product.product_id for r in ranked] == ["NB", "SLV"]
    # Asking for the accessory still finds the accessory first.
    ranked = search.search(_request(terms=["capa", "notebook"], limit=2))
    assert ranked[0].product.product_id == "SLV"


def test_a_word_finds_its_synonyms_in_other_languages(runtime, tmp_path):
    search = _shop(runtime, tmp_path, [
        ucp_product("NB", "Laptop Dell Inspiron 14", 399900, tags=[]),
        ucp_product("MUG", "Caneca de porcelana", 4900, tags=[]),
    ])
    assert [r.product.product_id for r in search.search(_request(terms=["notebook"]))] == ["NB"]
    assert [r.product.product_id for r in search.search(_request(terms=["mug"]))] == ["MUG"]


def test_model_numbers_meet_however_they_are_written(runtime, tmp_path):
    search = _shop(runtime, tmp_path, [
        ucp_product("G1", "Placa de vídeo ASUS RTX2060 6GB", 199900, tags=[]),
        ucp_product("G2", "Placa de vídeo ASUS RTX 3080", 599900, tags=[]),
    ])
    ranked = search.search(_request(terms=["rtx", "2060"], limit=2))
    assert ranked[0].product.product_id == "G1"


def test_a_model_name_is_found_whole_not_by_its_letters_and_digits_apart(runtime, tmp_path):
    search = _shop(runtime, tmp_path, [
        ucp_product("KVM", "Switch KVM 4 portas PS/2", 29900, tags=[]),
        ucp_product("PS4", "Console Sony PS4 Pro 1TB", 299900, tags=[]),
        ucp_product("PS4B", "Jogo Dreams para PS 4", 19900, tags=[]),
        ucp_product("IP", "Capa para iPhone 7", 4990, tags=[]),
        ucp_product("3M", "Fita dupla face", 1990, metadata={"brand": "3M"}, tags=[]),
        ucp_product("FITA", "Fita dupla face transparente", 1490, tags=[]),
    ])
    ids = [r.product.product_id for r in search.search(_request(terms=["ps4"], limit=5))]
    assert sorted(ids) == ["PS4", "PS4B"]
    ids = [r.product.product_id for r in search.search(_request(terms=["ps2"], limit=5))]
    assert ids == ["KVM"]
    # A name no product is written as ("iPhone 7" is a word and a number) is looked for in
    # its parts.
    ids = [r.product.product_id for r in search.search(_request(terms=["iphone7"], limit=5))]
    assert ids == ["IP"]
    ids = [r.product.product_id for r in search.search(_request(terms=["fita"], limit=5,
                                                                avoid_brands=["3M"]))]
    assert ids == ["FITA"]
    ranked = search.search(_request(terms=["fita"], limit=5, brands=["3m"]))
    assert ranked[0].product.product_id == "3M"


def test_an_accessory_word_that_names_the_kind_asked_for_is_no_accessory(runtime, tmp_path):
    search = _shop(runtime, tmp_path, [
        ucp_product("BAT", "Duracell AA Batteries", 2990, tags=[]),
        ucp_product("EXT", "Extension USB 2.0 AA 3m", 1990, tags=[]),
    ])
    ranked = search.search(_request(terms=["aa"], product_types=["battery"], limit=2))
    assert [r.product.product_id for r in ranked] == ["BAT", "EXT"]
    products = {p.product_id: p for p in search.index("BR").products}
    assert products["BAT"].accessory_of({"aa"})
    assert not products["BAT"].accessory_of({"aa"}, frozenset({"battery"}))


def test_a_kind_listed_among_a_products_specifications_is_not_its_kind(runtime, tmp_path):
    search = _shop(runtime, tmp_path, [
        ucp_product("PC", "Lenovo V55t Ryzen 5 8 GB DDR4-SDRAM 256 GB SSD Tower PC", 299900,
                    tags=[]),
        ucp_product("PC2", "ASUS E500 Desktop PC 16 GB 1512 GB HDD+SSD", 399900, tags=[]),
        ucp_product("SSD", "Kingston A400 480 GB SSD", 29900, tags=[]),
        ucp_product("SSD2", "DELL 9PTC2 internal solid state drive 2.5\" 960 GB Serial ATA III",
                    59900, description={"plain": "Enterprise SSD"}, tags=[]),
        ucp_product("TV", "Samsung 65 in TV 120 Hz", 459900, tags=[]),
        ucp_product("PC3", "Lenovo IdeaCentre 510A 8 GB DDR4-SDRAM 512 GB SSD", 259900,
                    tags=[]),
    ])
    ranked = search.search(_request(terms=["ssd"], product_types=["ssd"], limit=4))
    assert {r.product.product_id for r in ranked[:2]} == {"SSD", "SSD2"}
    assert [r.of_kind for r in ranked[:2]] == [True, True]
    assert not any(r.of_kind for r in ranked[2:])
    products = {p.product_id: p for p in search.index("BR").products}
    # Its name names a kind ("Ryzen" processors, "Desktop PC"): what follows the first of
    # its quantities is read as specifications.
    assert "ssd" not in products["PC"].words and "ryzen" in products["PC"].words
    assert {"ssd", "hdd"}.isdisjoint(products["PC2"].words)
    assert "ssd" in products["PC2"].title_stems  # the whole title is kept
    # A name that names no kind keeps its title whole: the TV is a TV, and what follows a
    # second quantity is still a part.
    assert "ssd" in products["SSD"].kind_words() and "tv" in products["TV"].kind_words()
    assert "ssd" in products["PC3"].words and "ssd" not in products["PC3"].kind_words()


def test_a_kind_the_product_is_for_is_not_its_kind(runtime, tmp_path):
    search = _shop(runtime, tmp_path, [
        ucp_product("FW", "Sandberg FireWire for Laptop (3 ports)", 4990, tags=[]),
        ucp_product("NB", "Notebook Dell Inspiron 14", 399900, tags=[]),
        ucp_product("RUN", "Tênis para corrida Nike", 39900, tags=[]),
    ])
    products = {p.product_id: p for p in search.index("BR").products}
    assert "laptop" in products["FW"].words and "laptop" not in products["FW"].kind_words()
    assert "corrida" in products["RUN"].kind_words()  # "corrida" is no kind of product
    ranked = search.search(_request(terms=["laptop"], product_types=["laptop"], limit=2))
    assert {r.product.product_id: r.of_kind for r in ranked} == {"NB": True, "FW": False}
    # A chat's cards are of the kind asked for while the catalog carries it.
    ranked = search.search(_request(terms=["laptop"], product_types=["laptop"], limit=1,
                                    fit_to_ask=True))
    assert [r.product.product_id for r in ranked] == ["NB"]


def test_an_accessory_named_before_its_specifications_is_still_an_accessory(runtime, tmp_path):
    search = _shop(runtime, tmp_path, [
        ucp_product("PAD", "Laptop 17 in Cooling Pad, 5 Fans, 1200 RPM", 9990, tags=[]),
        ucp_product("NB", "Notebook Lenovo IdeaPad 3 15.6 in 8 GB 256 GB SSD Windows 11 com "
                    "Carregador", 349900, tags=[]),
        ucp_product("HS", "Headset Gamer HyperX 7.1 50 mm 3.5 mm connector", 49900, tags=[]),
    ])
    products = {p.product_id: p for p in search.index("BR").products}
    pad = products["PAD"]
    assert pad.words.isdisjoint({"pad", "cooling"})  # its name is "Laptop"
    assert pad.accessory and pad.accessory_of({"laptop"})
    # Further down a list of specifications, an accessory word is something it comes with.
    assert not products["NB"].accessory_of({"notebook"})
    assert not products["HS"].accessory_of({"headset"})


def test_words_joined_across_the_end_of_a_name_are_not_indexed(runtime, tmp_path):
    search = _shop(runtime, tmp_path, [
        ucp_product("MON", "Monitor Gamer AOC 24 in 144 Hz", 99900, tags=[],
                    description={"plain": "Monitor para jogos"}),
    ])
    assert not search.index("BR").has_word("aoc24")
    # So "aoc24" is looked for in its parts, and finds the monitor.
    ids = [r.product.product_id for r in search.search(_request(terms=["aoc24"], limit=5))]
    assert ids == ["MON"]


def test_a_phrase_with_letters_and_digits_matches_the_word_as_titles_write_it(runtime,
                                                                              tmp_path):
    search = _shop(runtime, tmp_path, [
        ucp_product("9V", "Duracell 9V Battery", 2990, tags=[]),
        ucp_product("AA", "Duracell AA Battery", 2990, tags=[]),
    ])
    ids = [r.product.product_id for r in search.search(_request(
        terms=["duracell"], excluded_terms=["9v"], limit=5))]
    assert ids == ["AA"]


def test_a_chats_cards_show_the_kind_asked_for_not_its_accessories(runtime, tmp_path):
    search = _shop(runtime, tmp_path, [
        ucp_product("V1", "Philips MiniVac Handheld vacuum cleaner FC6144/01", 39900, tags=[]),
        ucp_product("B1", "Philips s-bag Vacuum cleaner bags FC8022/04", 4900, tags=[]),
        ucp_product("B2", "Philips s-bag 4 x dust bags Vacuum cleaner bags", 3900, tags=[]),
        ucp_product("V2", "Rowenta Extenso handheld vacuum Bagless", 29900, tags=[]),
        ucp_product("SP", "Sony Portable Bluetooth Speaker MBS-100 docking speaker", 19900,
                    tags=[]),
    ])
    ranked = search.search(_request(terms=["vacuum", "cleaner"],
                                    product_types=["vacuum cleaner"], limit=3, fit_to_ask=True))
    assert {r.product.product_id for r in ranked} == {"V1", "V2"}
    # A list (not a chat's cards) still ranks the bags.
    ranked = search.search(_request(terms=["vacuum", "cleaner"],
                                    product_types=["vacuum cleaner"], limit=4))
    assert {"B1", "B2"} <= {r.product.product_id for r in ranked}
    # An accessory word right before the thing it describes: a docking speaker is a speaker.
    speaker = {p.product_id: p for p in search.index("BR").products}["SP"]
    assert not speaker.accessory_of({"speaker"})


def test_what_a_product_comes_with_does_not_make_it_an_accessory(runtime, tmp_path):
    search = _shop(runtime, tmp_path, [
        ucp_product("ASP", "Aspirador de Pó Vertical com Acessórios", 39900, tags=[]),
        ucp_product("CEL", "Smartphone Samsung Galaxy A15 + Capa e Película", 129900, tags=[]),
        ucp_product("FONE", "Fone de Ouvido Bluetooth TWS com Case Carregador", 19900, tags=[]),
        ucp_product("CHG", "Carregador Notebook para Dell Inspiron", 12900, tags=[]),
        ucp_product("GEL", "Keyboard Cleaner Gel", 2900, tags=[]),
    ])
    products = {p.product_id: p for p in search.index("BR").products}
    assert not products["ASP"].accessory_of({"aspirador", "po"})
    assert not products["CEL"].accessory_of({"smartphon"})
    assert not products["FONE"].accessory_of({"fone", "ouvido"})
    # An accessory word before the thing, then "para": still the thing's accessory.
    assert products["CHG"].accessory_of({"notebook", "dell"})
    assert products["GEL"].accessory_of({"keyboard"})
    # "vacuum cleaner" names a device: its accessory word asks for no accessory.
    ranked = search.search(_request(terms=["aspirador", "po"], product_types=["vacuum cleaner"],
                                    limit=3, fit_to_ask=True))
    assert [r.product.product_id for r in ranked] == ["ASP"]


def test_a_brand_asked_for_has_no_accessories(runtime, tmp_path):
    search = _shop(runtime, tmp_path, [
        ucp_product("CASE", "Samsung EF-EA715 mobile phone case", 9900, tags=[],
                    metadata={"brand": "Samsung"}),
        ucp_product("TV", "Samsung Crystal UHD 50 TV", 299900, tags=[],
                    metadata={"brand": "Samsung"}),
    ])
    ranked = search.search(_request(terms=["samsung"], brands=["Samsung"], limit=2))
    assert ranked[0].score == pytest.approx(ranked[1].score, abs=0.5)
    assert all(r.of_kind for r in ranked)


def test_another_brands_accessory_of_a_brand_asked_for_stays_an_accessory(runtime, tmp_path):
    search = _shop(runtime, tmp_path, [
        ucp_product("CAM", "GoPro Hero 12 Black", 249900, tags=[], metadata={"brand": "GoPro"}),
        ucp_product("SUP", "Suporte para GoPro Hero", 4900, tags=[],
                    metadata={"brand": "Generico"}),
    ])
    ranked = search.search(_request(terms=["gopro"], brands=["GoPro"], limit=2))
    assert [r.product.product_id for r in ranked] == ["CAM", "SUP"]
    # Its relevance is cut as an accessory's (0.55), beside the brand's own bonus.
    assert ranked[1].score < 0.5 * ranked[0].score


def test_a_gift_set_is_not_mistaken_for_an_accessory(runtime, tmp_path):
    search = _shop(runtime, tmp_path, [
        ucp_product("KIT", "Kit de Jardinagem com 5 Ferramentas", 14990, tags=[]),
        ucp_product("CAPA", "Capa de chuva para bicicleta", 5990, tags=[]),
        ucp_product("SLV", "Laptop Sleeve 15in", 5990, tags=[]),
    ])
    products = {p.product_id: p for p in search.index("BR").products}
    assert not products["KIT"].accessory_of({"jardinagem"})
    assert products["CAPA"].accessory_of({"bicicleta"})
    assert products["SLV"].accessory_of({"laptop"})
    assert not products["SLV"].accessory_of({"sleeve"})



def test_a_word_standing_alone_beats_the_same_letters_inside_a_model_code(runtime, tmp_path):
    search = _shop(runtime, tmp_path, [
        ucp_product("A1", "Alienware AA352186 backpack", 5000),
        ucp_product("Z9", "Verbatim AA alkaline batteries", 5000),
    ])
    ranked = search.search(_request(terms=["aa"], limit=2))
    assert [r.product.product_id for r in ranked] == ["Z9", "A1"]


def test_a_session_sees_a_catalog_changed_once_its_transaction_ended(runtime, tmp_path):
    from sqlmodel import Session

    search = _shop(runtime, tmp_path, [ucp_product("A", "Regador azul", 5000)])
    with Session(runtime.engine) as session:
        # Read once per transaction (a chat turn needs it three times)...
        assert [r.product.product_id for r in search.scored(
            _request(terms=["regador"]), session)] == ["A"]
        assert search.merchants("BR", session).names == {"loja": "Loja"}
        session.commit()
        _shop(runtime, tmp_path, [ucp_product("B", "Regador verde", 4000)], name="Outra")
        # ... and read again in the next one.
        assert {r.product.product_id for r in search.scored(
            _request(terms=["regador"]), session)} == {"A", "B"}
        assert search.merchants("BR", session) == MarketMerchants(
            names={"loja": "Loja", "outra": "Outra"}, live=False)
