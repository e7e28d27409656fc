from datetime import timedelta

import pytest

from catalog.index import SYNONYM_WEIGHT, CatalogIndex
from catalog.models import CatalogProduct, Merchant
from catalog.ranking import SPONSORED_RATIO, SearchRequest, rank
from core.db import utcnow

SHOP = Merchant(id=1, slug="loja", name="Loja", market="BR")


def _row(product_id, title, price=10000, *, merchant=SHOP, brand="Marca", rating=None,
         count=None, categories="Casa > Cozinha", tags=(), age_days=0):
    return CatalogProduct(
        merchant_id=merchant.id, product_id=product_id, title=title, brand=brand,
        description="", categories=categories, tags=list(tags), price_amount=price,
        currency="BRL", rating_value=rating, rating_scale=5 if rating else None,
        rating_count=count, updated_at=utcnow() - timedelta(days=age_days)), merchant


def _rank(rows, sponsored=(), **request):
    index = CatalogIndex(rows, sponsored=frozenset(f"loja:{p}" for p in sponsored))
    return rank(index, SearchRequest(market="BR", currency="BRL", **request))


def _ids(ranked):
    return [r.product.product_id for r in ranked]


def test_closeness_to_the_named_budget_orders_equally_relevant_products():
    rows = [_row("CHEAP", "Caneca azul", 2000), _row("RIGHT", "Caneca verde", 9500)]
    assert _ids(_rank(rows, terms=["caneca"], budget_max=11500, budget_target=10000)) == \
        ["RIGHT", "CHEAP"]


def test_a_rating_from_many_reviews_beats_a_perfect_score_from_two():
    rows = [_row("FEW", "Caneca azul", rating=5.0, count=2),
            _row("MANY", "Caneca verde", rating=4.7, count=320)]
    assert _ids(_rank(rows, terms=["caneca"])) == ["MANY", "FEW"]


def test_stale_data_and_a_failing_merchant_rank_lower():
    failing = Merchant(id=2, slug="falha", name="Falha", market="BR", last_error="timeout")
    rows = [_row("OLD", "Caneca", age_days=90), _row("SICK", "Caneca", merchant=failing),
            _row("FRESH", "Caneca")]
    assert _ids(_rank(rows, terms=["caneca"]))[0] == "FRESH"


def test_avoided_brands_excluded_kinds_and_given_gifts_are_never_shown():
    rows = [_row("APPLE", "Fone de ouvido", brand="Apple"),
            _row("PERF", "Kit perfume e fone de ouvido"),
            _row("GIVEN", "Fone de ouvido sem fio"),
            _row("OK", "Fone de ouvido esportivo")]
    ranked = _rank(rows, terms=["fone"], avoid_brands=["apple"], excluded_terms=["perfume"],
                   given={"loja:GIVEN"})
    assert _ids(ranked) == ["OK"]


def test_a_brand_asked_for_ranks_first_but_never_above_a_better_text_match():
    rows = [_row("OTHER", "Panela de pressão 4 L"), _row("TRAM", "Panela de pressão 6 L",
                                                          brand="Tramontina"),
            _row("LID", "Tampa", brand="Tramontina")]
    assert _ids(_rank(rows, terms=["panela"], brands=["Tramontina"], limit=3)) == \
        ["TRAM", "OTHER"]


def test_a_high_rating_does_not_lift_a_product_the_words_do_not_reach():
    rows = [_row("MATCH", "Regador de metal", rating=3.0, count=10),
            _row("STAR", "Vaso de cerâmica regador", rating=5.0, count=5000,
                 categories="Casa > Decoração")]
    ranked = _rank(rows, terms=["regador", "metal"])
    assert _ids(ranked)[0] == "MATCH"


def test_the_three_cards_are_not_near_duplicates():
    rows = [_row("DE", "Kensington Value Keyboard Black Germany", 5000),
            _row("FR", "Kensington Value Keyboard Black France", 5000),
            _row("CH", "Cherry Comfort Keyboard USB", 5500, brand="Cherry")]
    for row, _ in rows[:2]:
        row.brand = "Kensington"
    shown = _ids(_rank(rows, terms=["keyboard"], limit=2))
    assert "CH" in shown and len(set(shown) & {"DE", "FR"}) == 1


def test_a_request_naming_its_kind_is_not_spread_over_the_catalogs_categories():
    rows = [_row("PHILIPS", "Stereo headphones", brand="Philips", categories="Audio > Fones"),
            _row("SANDBERG", "HeadPhones", brand="Sandberg", categories="Audio > Fones"),
            _row("IPAQ", "iPAQ headphones", brand="HP", age_days=20,
                 categories="Celulares > Acessórios")]
    assert _ids(_rank(rows, terms=["headphones"], limit=3)) == ["SANDBERG", "PHILIPS", "IPAQ"]


def test_an_open_request_covers_different_kinds_of_product():
    rows = [_row(f"MUG{i}", f"Caneca estampa {i}", tags=["recipient:mother"],
                 categories="Casa > Canecas") for i in range(3)]
    rows.append(_row("BOOK", "Livro de receitas", tags=["recipient:mother"],
                     categories="Livros > Culinária"))
    rows.append(_row("PLANT", "Kit jardinagem", tags=["recipient:mother"],
                     categories="Jardim > Ferramentas"))
    ranked = _rank(rows, tags=["recipient:mother"])
    assert len({r.product.category_path[-1] for r in ranked}) == 3


def test_a_sponsored_product_close_to_the_best_is_shown_once_last_and_labelled():
    rows = [_row(f"ORG{i}", f"Caneca modelo {i}", brand=f"B{i}") for i in range(4)]
    rows += [_row("SP1", "Caneca modelo especial", brand="S1"),
             _row("SP2", "Caneca modelo luxo", brand="S2")]
    ranked = _rank(rows, sponsored=["SP1", "SP2"], terms=["caneca"])
    assert [r.sponsored for r in ranked] == [False, False, True]
    assert ranked[2].product.product_id in {"SP1", "SP2"}
    assert ranked[2].score >= SPONSORED_RATIO * ranked[0].score


def test_a_sponsored_product_far_below_the_best_is_not_shown():
    rows = [_row(f"ORG{i}", f"Regador de metal {i}", brand=f"B{i}") for i in range(3)]
    rows.append(_row("SP", "Vaso com regador", brand="S",
                     categories="Casa > Decoração"))
    ranked = _rank(rows, sponsored=["SP"], terms=["regador", "metal"])
    assert "SP" not in _ids(ranked) and not any(r.sponsored for r in ranked)


def test_a_single_card_is_never_sponsored():
    rows = [_row("ORG", "Caneca azul"), _row("SP", "Caneca verde")]
    assert _ids(_rank(rows, sponsored=["SP"], terms=["caneca"], limit=1)) == ["ORG"]


def test_a_word_no_product_contains_does_not_leave_the_shopper_with_nothing():
    rows = [_row("MUG", "Caneca", tags=["recipient:mother"]),
            _row("PAN", "Panela", tags=["recipient:father"])]
    assert _ids(_rank(rows, terms=["qro", "xyzzyq"], tags=["recipient:mother"])) == ["MUG"]
    assert _ids(_rank(rows, terms=["qro", "panela"])) == ["PAN"]
    assert _rank(rows, terms=["xyzzyq"]) == []


def test_a_named_product_type_ranks_that_kind_first_in_any_language():
    rows = [_row("SOCK", "Meia esportiva para corrida", categories="Roupas > Meias"),
            _row("SHOE", "Tênis de corrida leve", categories="Calçados > Tênis")]
    ranked = _rank(rows, terms=["corrida"], product_types=["sneakers"])
    assert _ids(ranked)[0] == "SHOE"



def test_an_excluded_phrase_needs_all_its_words_not_its_little_ones():
    rows = [_row("MUG", "Caneca de porcelana"), _row("SHOE", "Tênis de corrida azul")]
    ranked = _rank(rows, tags=[], terms=["azul", "caneca"],
                   excluded_terms=["tênis de corrida"])
    assert _ids(ranked) == ["MUG"]


def test_asking_the_same_thing_twice_gives_the_same_scores():
    # A word the catalog lacks but whose synonym it has ("laptop" -> "notebook") used to
    # grow a cached list on every search, so each answer scored higher than the last.
    rows = [_row("NB", "Notebook Dell Inspiron"), _row("MUG", "Caneca notebook")]
    index = CatalogIndex(rows)
    request = SearchRequest(market="BR", currency="BRL", terms=["laptop"])
    first = [(r.product.product_id, r.score) for r in rank(index, request)]
    assert [(r.product.product_id, r.score) for r in rank(index, request)] == first
    assert index.expand("laptop") == index.expand("laptop") == [("notebook", SYNONYM_WEIGHT)]


@pytest.mark.parametrize("asked", [
    dict(terms=["caneca", "azul", "porcelana"], tags=["recipient:mother"], budget_max=7000),
    # A number the query holds, and a kind named.
    dict(terms=["caneca", "modelo", "7"], product_types=["mug"]),
    # An open request: kinds and tags gift knowledge suggests.
    dict(tags=["recipient:mother"], suggested_types=["mug", "gift set"],
         suggested_tags=["interest:coffee"], soft_terms=["caneca", "kit"]),
], ids=["terms", "number-kind", "open"])
def test_stopping_early_never_changes_the_products_that_can_be_shown(asked):
    from catalog.ranking import DIVERSITY_WINDOW, score_all

    words = ["caneca", "azul", "grande", "porcelana", "kit", "presente"]
    rows = [_row(f"P{n:03}", " ".join(words[: 1 + n % len(words)]) + f" modelo {n}",
                 price=1000 + 37 * n, brand=f"B{n % 7}",
                 rating=3 + (n % 5) / 2 if n % 4 else None, count=n * 3,
                 tags=(["recipient:mother"] if n % 3 == 0 else [])
                 + (["interest:coffee"] if n % 5 == 0 else []),
                 age_days=n % 90) for n in range(150)]
    index = CatalogIndex(rows)
    asked = dict(market="BR", currency="BRL", **asked)
    early = score_all(index, SearchRequest(limit=3, **asked))
    full = score_all(index, SearchRequest(limit=1000, **asked))
    assert len(full) > len(early) >= DIVERSITY_WINDOW
    # (staleness moves with the clock between the two calls, by far less than a millionth)
    assert [(r.product.ref, round(r.score, 6)) for r in early[:DIVERSITY_WINDOW]] == \
        [(r.product.ref, round(r.score, 6)) for r in full[:DIVERSITY_WINDOW]]


def test_many_soft_words_of_which_only_the_first_reach_anything():
    # With more than 64 soft words the matched words are kept in several bit arrays; when
    # only words among the first 64 reached a product, reading them back used to fail.
    rows = [_row("MUG", "Caneca de porcelana")]
    soft = ["caneca"] + [f"zzpalavra{n}" for n in range(80)]
    ranked = _rank(rows, soft_terms=soft, tags=[])
    assert _ids(ranked) == ["MUG"] and ranked[0].matched_terms == ["caneca"]


def test_an_accessory_named_with_a_synonym_of_the_query_still_ranks_below_the_device():
    rows = [_row("CASE", "Targus notebook case", price=5000, brand="Targus"),
            _row("NB", "Dell Inspiron notebook 15 polegadas", price=5000, brand="Dell")]
    assert _ids(_rank(rows, terms=["laptop"], limit=2)) == ["NB", "CASE"]


def test_a_sponsored_product_that_is_the_best_match_is_shown_and_labelled():
    # Sponsoring must never hide a merchant's best match: it used to be kept out of the
    # organic cards, so "nespresso vertuo" found nothing when only the sponsored one matched.
    rows = [_row("SP", "Nespresso Vertuo Plus"), _row("ORG", "Cafeteira italiana")]
    ranked = _rank(rows, sponsored=["SP"], terms=["nespresso", "vertuo"])
    assert _ids(ranked) == ["SP"] and ranked[0].sponsored
    ranked = _rank(rows, sponsored=["SP"], terms=["nespresso", "cafeteira"], limit=1)
    assert len(ranked) == 1 and ranked[0].sponsored == (ranked[0].product.product_id == "SP")


def test_with_many_sponsored_products_stopping_early_still_shows_the_same_cards():
    from catalog.ranking import choose, score_all

    rows = [_row(f"P{n:03}", f"Caneca porcelana modelo {n}" + (" azul" if n % 4 else ""),
                 price=1000 + 13 * n, brand=f"B{n}", categories=f"Casa > Tipo {n % 9}",
                 rating=3 + (n % 5) / 2, count=n, age_days=n % 80) for n in range(120)]
    index = CatalogIndex(rows, sponsored=frozenset(f"loja:P{n:03}" for n in range(0, 120, 3)))
    asked = dict(market="BR", currency="BRL", terms=["caneca", "azul"])
    shown = choose(score_all(index, SearchRequest(limit=3, **asked)),
                   SearchRequest(limit=3, **asked))
    everything = choose(score_all(index, SearchRequest(limit=1000, **asked)),
                        SearchRequest(limit=3, **asked))
    assert [r.product.ref for r in shown] == [r.product.ref for r in everything]
    assert sum(r.sponsored for r in shown) <= 1


def test_a_brand_is_recognised_with_its_company_suffix():
    rows = [_row("INC", "Fone de ouvido sem fio", brand="Apple Inc."),
            _row("SA", "Fone de ouvido esportivo", brand="Tramontina S.A."),
            _row("X", "Fone de ouvido basico", brand="Xing")]
    assert "INC" not in _ids(_rank(rows, terms=["fone"], avoid_brands=["apple"]))
    assert _ids(_rank(rows, terms=["fone"], brands=["tramontina"]))[0] == "SA"


def test_a_brand_remembered_as_liked_ranks_up_less_than_one_asked_for():
    rows = [_row("OTHER", "Panela de pressão 4 L"),
            _row("TRAM", "Panela de pressão 4 L", brand="Tramontina")]
    assert _ids(_rank(rows, terms=["panela"], liked_brands=["tramontina"]))[0] == "TRAM"
    liked = _rank(rows, terms=["panela"], liked_brands=["tramontina"])
    asked = _rank(rows, terms=["panela"], brands=["tramontina"])
    assert liked[0].score < asked[0].score


def test_not_for_me_also_lowers_nearly_the_same_product():
    rows = [_row("BLUE", "Caneca de cerâmica Tok 350 ml Azul", brand="Tok"),
            _row("RED", "Caneca de cerâmica Tok 350 ml Vermelha", brand="Tok", rating=5.0,
                 count=500),
            _row("OTHER", "Caneca de cerâmica Termo 350 ml", brand="Termo")]
    assert _ids(_rank(rows, terms=["caneca"], limit=1)) == ["RED"]
    assert _ids(_rank(rows, terms=["caneca"], limit=1, penalise={"loja:BLUE"})) == ["OTHER"]


def test_a_store_ruled_out_or_not_asked_for_is_never_shown_and_a_liked_one_ranks_up():
    other = Merchant(id=2, slug="outra", name="Outra", market="BR")
    rows = [_row("HERE", "Caneca azul"), _row("THERE", "Caneca azul", merchant=other)]
    assert _ids(_rank(rows, terms=["caneca"], avoid_merchants=["loja"])) == ["THERE"]
    assert _ids(_rank(rows, terms=["caneca"], merchants=["loja"])) == ["HERE"]
    assert _ids(_rank(rows, terms=["caneca"], liked_merchants=["outra"], limit=2))[0] == \
        "THERE"
    assert _ids(_rank(rows, terms=["caneca"], liked_merchants=["loja"], limit=2))[0] == "HERE"


def test_a_chats_cards_are_of_the_kind_asked_for_and_a_long_list_keeps_its_tail():
    rows = [_row("HEAD", "Fone de ouvido bluetooth", categories="Áudio"),
            _row("SPEAKER", "Caixa de som bluetooth", categories="Áudio")]
    asked = dict(terms=["fone", "bluetooth"], product_types=["headphones"])
    assert _ids(_rank(rows, limit=3, fit_to_ask=True, **asked)) == ["HEAD"]
    assert _ids(_rank(rows, limit=10, **asked)) == ["HEAD", "SPEAKER"]
    # Once the headphones were shown, "show more" finds no more rather than a speaker.
    assert _ids(_rank(rows, limit=3, fit_to_ask=True, exclude={"loja:HEAD"}, **asked)) == []


def test_a_narrower_kind_named_in_the_title_still_fits_the_kind_asked_for():
    # A cookbook is a book: the cards for "livro" may be books whose titles say so.
    rows = [_row("COOK", "Livro Cozinha Prática Rita Lobo", categories="Livros > Culinária"),
            _row("PAN", "Panela de pressão", categories="Casa > Cozinha")]
    assert _ids(_rank(rows, terms=["livro"], product_types=["book"], limit=3,
                      fit_to_ask=True)) == ["COOK"]


def test_with_no_kind_named_the_cards_fit_the_interest_stated_while_any_can():
    rows = [_row("GARDEN", "Regador", tags=["interest:gardening", "recipient:mother"]),
            _row("TEA", "Chá", 4000, tags=["recipient:mother"], rating=5.0, count=900)]
    stated = dict(tags=["recipient:mother", "interest:gardening"],
                  stated_interests=["interest:gardening"], limit=3, fit_to_ask=True)
    assert _ids(_rank(rows, **stated)) == ["GARDEN"]
    # Remembered interests rank but do not restrict.
    assert set(_ids(_rank(rows, tags=["recipient:mother", "interest:gardening"],
                          limit=3))) == {"GARDEN", "TEA"}
    # When nothing for the interest may be shown (over the budget), the closest ideas stay.
    assert _ids(_rank(rows, budget_max=5000, **stated)) == ["TEA"]


def test_a_product_whose_title_names_another_kind_ranks_below_one_of_no_named_kind():
    rows = [_row("MOUSE", "Voodoo Gaming mouse USB", categories="1"),
            _row("BOARD", "ROG STRIX Gaming ATX Intel Z490", categories="1")]
    ranked = _rank(rows, terms=["gaming", "pc"], product_types=["desktop computer"], limit=10)
    # Neither names a desktop computer; the mouse names a kind of its own, so it goes last.
    assert _ids(ranked)[-1] == "MOUSE"


def test_a_model_number_asked_for_outranks_other_model_numbers():
    rows = [_row("OTHER", "Brother TN-670 Toner Cartridge Original Black", 4000),
            _row("ASKED", "Brother TN-2110 toner cartridge Original Black 1 pc(s) extra", 9000),
            _row("OLD", "Brother Genuine TN-200 Toner Cartridge Black", 3000)]
    ranked = _ids(_rank(rows, terms=["brother", "tn", "2110", "toner"], limit=10))
    assert ranked[0] == "ASKED"
    scores = {r.product.product_id: r.score for r in _rank(rows, terms=["brother", "tn", "2110",
                                                                        "toner"], limit=10)}
    # Missing the number asked for halves what the other words earn.
    assert scores["OTHER"] < 0.2 * scores["ASKED"]


def test_cards_that_must_fit_are_the_best_fitting_even_far_down_the_scores():
    # Hundreds of well-rated speakers for music-loving teens outscore the three headphones
    # (their descriptions say "saída para fone"); the visit must not stop before the
    # headphones are scored.
    tags = ["interest:music", "age:13-17"]
    rows = []
    for n in range(300):
        row, merchant = _row(f"SPK{n}", f"Caixa de som portátil {n}", categories="Áudio",
                             tags=tags, rating=5.0, count=2000)
        row.description = "Caixa de som com saída para fone"
        rows.append((row, merchant))
    rows += [_row(f"HEAD{n}", f"Fone de ouvido modelo {n}", categories="Áudio")
             for n in range(3)]
    ranked = _rank(rows, terms=["fone"], product_types=["headphones"], tags=tags, limit=3,
                   fit_to_ask=True)
    assert sorted(_ids(ranked)) == ["HEAD0", "HEAD1", "HEAD2"]
