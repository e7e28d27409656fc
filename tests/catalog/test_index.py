import math
from collections import defaultdict
from datetime import UTC, datetime

import pytest
from sqlmodel import Session

from catalog.columns import IndexedProduct, product_ref
from catalog.index import (
    FIELD_WEIGHTS,
    K1,
    PART_WEIGHT,
    PARTS,
    SYNONYM_WEIGHT,
    B,
    CatalogIndex,
)
from catalog.models import CatalogProduct, Merchant, MerchantCreate
from catalog.store import (
    create_merchant,
    iter_products_for_market,
    products_for_market,
    replace_catalog,
)
from catalog.text import indexed_stems, query_units
from vitrine.runtime import Runtime

SHOP = Merchant(id=1, slug="loja", name="Loja", market="BR")
OTHER = Merchant(id=2, slug="outra", name="Outra Loja", market="BR", last_error="timeout")
UPDATED = datetime(2026, 11, 1, 12, 0, tzinfo=UTC)


def _row(product_id: str, title: str, *, merchant: Merchant = SHOP, description: str = "",
         brand: str | None = "Marca", categories: str = "Casa > Cozinha",
         tags: tuple[str, ...] = (), price: int = 10000, in_stock: bool = True,
         rating: float | None = None, count: int | None = None,
         url: str | None = None) -> tuple[CatalogProduct, Merchant]:
    return CatalogProduct(
        merchant_id=merchant.id, product_id=product_id, title=title, brand=brand,
        description=description, categories=categories, tags=list(tags), price_amount=price,
        currency="BRL", in_stock=in_stock, rating_value=rating,
        rating_scale=5.0 if rating is not None else None, rating_count=count, url=url,
        image_url=f"https://img.example/{product_id}.jpg" if url else None,
        updated_at=UPDATED), merchant


CATALOG = [
    _row("A1", "Caneca de cerâmica azul 350 ml", description="Caneca para café e chá",
         tags=("presente", "interest:coffee", "recipient:mother"), rating=4.6, count=120,
         url="https://loja.example/a1"),
    _row("A2", "Capa para notebook 15\" AA352186", brand=None, categories="Informática",
         description="Capa acolchoada", price=5990, rating=3.9, count=4),
    _row("A3", "Notebook Ultra 15 RTX2060", brand="Acme", categories="Informática > Notebooks",
         description="Notebook para jogos com placa RTX 2060", price=499900, in_stock=False),
    _row("B1", "Jogo de panelas inox 5 peças", merchant=OTHER,
         description="Panelas para cozinhar, presente para quem gosta de cozinhar",
         tags=("interest:cooking",)),
    _row("B2", "Caneca térmica inox", merchant=OTHER, description="Mantém o café quente"),
]


def _reference_scores(rows: list[tuple[CatalogProduct, Merchant]],
                      words: list[str]) -> dict[int, float]:
    """BM25F text scores computed the plain way: a dictionary per product."""
    fields = []
    for row, _ in rows:
        texts = {"title": row.title, "brand": row.brand or "", "categories": row.categories,
                 "tags": " ".join(t for t in row.tags if ":" not in t),
                 "description": row.description}
        stems: dict[str, list[str]] = {}
        for name, value in texts.items():
            stems[name], stems[name + PARTS] = indexed_stems(value)
        fields.append(stems)
    names = list(fields[0])
    avg = {f: sum(len(d[f]) for d in fields) / len(fields) or 1.0 for f in names}
    postings: dict[str, list[tuple[int, float]]] = defaultdict(list)
    for doc, stems in enumerate(fields):
        weighted: dict[str, float] = defaultdict(float)
        for name, found in stems.items():
            base = name.removesuffix(PARTS)
            weight = FIELD_WEIGHTS[base] * (PART_WEIGHT if name != base else 1.0)
            for word in found:
                weighted[word] += weight / (1 - B + B * len(found) / avg[name])
        for word, wtf in weighted.items():
            postings[word].append((doc, wtf * (K1 + 1) / (wtf + K1)))
    scores: dict[int, float] = {}
    for word in dict.fromkeys(words):
        df = len(postings[word])
        idf = math.log(1 + (len(rows) - df + 0.5) / (df + 0.5))
        for doc, saturated in postings[word]:
            scores[doc] = scores.get(doc, 0.0) + idf * saturated
    return scores


def test_text_scores_are_bit_for_bit_those_of_a_dictionary_per_product():
    index = CatalogIndex(CATALOG)
    for words in (["caneca"], ["caneca", "inox"], ["notebook", "15", "rtx"], ["aa"],
                  ["panela", "cozinhar", "present", "cafe"]):
        assert all(index.expand(w) == [(w, 1.0)] for w in words)  # no typo, no synonym
        found = index.match(words, [], 0.6, [])
        assert found.scores == _reference_scores(CATALOG, words)
        assert found.candidates == set(found.scores)


@pytest.mark.parametrize("at_once", [True, False])
def test_words_past_the_sixty_fourth_keep_their_scores_and_the_products_they_reach(
        monkeypatch, at_once):
    # 64 words to a bit array: "inox" is the 72nd word, its bit in the second array. Bits
    # are set in one call for few products per word, word by word for many: both ways.
    monkeypatch.setattr("catalog.index.BITS_AT_ONCE_UNDER", 10**9 if at_once else 0)
    index = CatalogIndex(CATALOG)
    words = ["caneca"] + [f"zzpalavra{n}" for n in range(70)] + ["inox"]
    found = index.match(words, [], 0.6, [])
    assert found.scores == _reference_scores(CATALOG, words)
    mugs, steel = _reference_scores(CATALOG, ["caneca"]), _reference_scores(CATALOG, ["inox"])
    assert mugs and steel and set(mugs) != set(steel)
    assert found.hits == {doc: frozenset(w for w, docs in (("caneca", mugs), ("inox", steel))
                                         if doc in docs) for doc in set(mugs) | set(steel)}


def test_views_expose_what_the_catalog_row_says():
    index = CatalogIndex(CATALOG, sponsored=frozenset({"outra:B2"}))
    mug, sleeve, laptop, pans, flask = (index.products[i] for i in range(5))
    assert isinstance(mug, IndexedProduct) and len(index.products) == 5
    assert (mug.ref, mug.product_id, mug.merchant_slug, mug.merchant_name) == \
        ("loja:A1", "A1", "loja", "Loja")
    assert (mug.title, mug.brand, mug.categories) == \
        ("Caneca de cerâmica azul 350 ml", "Marca", "Casa > Cozinha")
    assert (mug.url, mug.image_url) == ("https://loja.example/a1", "https://img.example/A1.jpg")
    assert (mug.price_amount, mug.currency, mug.in_stock) == (10000, "BRL", True)
    assert (mug.rating_value, mug.rating_scale, mug.rating_count) == (4.6, 5.0, 120)
    assert mug.tags == frozenset({"interest:coffee", "recipient:mother"})  # free tags: text
    assert mug.words == frozenset({"caneca", "de", "ceramica", "azul", "350", "azul350", "ml",
                                   "marca", "casa", "cozinha"})
    assert mug.title_stems == ("caneca", "de", "ceramica", "azul", "350", "azul350", "ml")
    assert mug.updated_at == UPDATED.timestamp()
    assert (mug.sponsored, mug.health, mug.accessory) == (False, 1.0, False)
    assert mug.category_path == ["Casa", "Cozinha"]
    assert (sleeve.brand, sleeve.url, sleeve.image_url, sleeve.rating_count) == (None, None,
                                                                                 None, 4)
    assert sleeve.accessory and sleeve.accessory_of({"notebook"})
    assert not laptop.accessory_of({"notebook"}) and not laptop.in_stock
    assert (laptop.rating_value, laptop.rating_scale, laptop.rating_count) == (None, None, None)
    assert (pans.health, flask.sponsored) == (0.75, True)  # its merchant's last sync failed
    assert [p.ref for p in index.products] == ["loja:A1", "loja:A2", "loja:A3", "outra:B1",
                                               "outra:B2"]
    assert index.products[-1] == flask and index.products[4] != mug


def test_views_made_on_demand_read_the_same_as_views_kept():
    kept = CatalogIndex(CATALOG, sponsored=frozenset({"outra:B2"}))
    made = CatalogIndex(CATALOG, sponsored=frozenset({"outra:B2"}), keep_views=0)
    assert kept.products[1] is kept.products[1] and made.products[1] is not made.products[1]
    methods = {"accessory_of", "kind_words"}
    names = [n for n in dir(IndexedProduct) if not n.startswith("_") and n not in methods]
    names += ["price_amount", "currency", "in_stock", "tags", "accessory", "rating_value",
              "rating_scale", "rating_count", "updated_at", "sponsored", "merchant_slug",
              "merchant_name", "health"]
    for a, b in zip(kept.products, made.products, strict=True):
        assert {n: getattr(a, n) for n in names} == {n: getattr(b, n) for n in names}
        assert a.accessory_of({"notebook"}) == b.accessory_of({"notebook"})
        assert a.kind_words() == b.kind_words()
    assert [p.ref for p in made.products[1:3]] == ["loja:A2", "loja:A3"]
    assert made.products[-1].ref == "outra:B2"


def test_products_are_found_by_ref():
    index = CatalogIndex(CATALOG)
    for doc, product in enumerate(index.products):
        assert index.by_ref[product.ref] == doc
        assert index.get(product.ref) == product
    assert index.get("loja:NOPE") is None and "outra:A1" not in index.by_ref
    assert sorted(index.by_ref) == sorted(p.ref for p in index.products)


def test_chunked_build_from_the_database_equals_a_build_from_a_list(runtime: Runtime):
    with Session(runtime.engine) as session:
        for slug, offset in (("loja-a", 0), ("loja-b", 3)):
            merchant = create_merchant(session=session, merchant_in=MerchantCreate(
                slug=slug, name=slug.title(), market="BR"))
            session.flush()
            rows = []
            for row, _ in CATALOG[offset:offset + 3]:
                values = row.model_dump(exclude={"id", "document"})
                rows.append({**values, "merchant_id": merchant.id, "document": {}})
            replace_catalog(session=session, merchant=merchant, rows=rows)
        session.commit()
    with Session(runtime.engine) as session:
        listed = CatalogIndex(products_for_market(session=session, market="BR"))
        streamed = CatalogIndex(iter_products_for_market(session=session, market="BR",
                                                         chunk_size=2))
    assert len(streamed.products) == len(listed.products) == 5
    for a, b in zip(listed.products, streamed.products, strict=True):
        for name in ("ref", "title", "brand", "categories", "url", "price_amount", "in_stock",
                     "rating_value", "rating_count", "tags", "words", "updated_at", "health"):
            assert getattr(a, name) == getattr(b, name)
    for words in (["caneca"], ["notebook", "capa"], ["panela"]):
        one, other = listed.match(words, [], 0.6, []), streamed.match(words, [], 0.6, [])
        assert (one.candidates, one.scores, one.hits) == \
            (other.candidates, other.scores, other.hits)


def _lamps(count: int) -> list[tuple[CatalogProduct, Merchant]]:
    # Longer titles dilute "luminaria": the lower the number, the better the text match.
    return [_row(f"L{i:02d}", "Luminária " + " ".join(["decorativa"] * i), price=1000 * (i + 1))
            for i in range(count)]


def test_pruning_keeps_the_best_candidates_by_text_score():
    rows = _lamps(30)
    full = CatalogIndex(rows).match(["luminaria"], [], 0.6, [])
    pruned = CatalogIndex(rows, prune_to=5).match(["luminaria"], [], 0.6, [])
    best = sorted(full.scores, key=lambda d: (-full.scores[d], d))[:5]
    assert pruned.candidates == set(best) == {0, 1, 2, 3, 4}
    assert pruned.scores == {d: full.scores[d] for d in best}
    assert pruned.hits == {d: frozenset({"luminaria"}) for d in best}


def test_pruning_weighs_how_many_of_the_words_a_product_matches():
    rows = _lamps(10) + [_row("BOTH", "Luminária de mesa com decorativa " + "x " * 20)]
    found = CatalogIndex(rows, prune_to=3).match(["luminaria", "mesa"], [], 0.6, [])
    assert 10 in found.candidates  # weaker per word than L00, but it has both words


def test_pruning_leaves_out_what_cannot_be_shown_but_keeps_the_best_score():
    rows = _lamps(30)
    for row, _ in rows[:3]:
        row.in_stock = False
    rows[5][0].price_amount = 999_999
    found = CatalogIndex(rows, prune_to=4).match(["luminaria"], [], 0.6, [], budget_max=50_000)
    # L00 stays so that relevance shares are those of the whole set; L01, L02 are out of
    # stock, L05 over the budget.
    assert found.candidates == {0, 3, 4, 6, 7}


def test_no_pruning_at_or_under_the_limit():
    rows = _lamps(5)
    found = CatalogIndex(rows, prune_to=5).match(["luminaria"], [], 0.6, [])
    assert found.candidates == {0, 1, 2, 3, 4}


def test_an_open_request_reaches_tagged_and_soft_matched_products_or_else_everything():
    index = CatalogIndex(CATALOG)
    found = index.match([], ["cozinhar"], 0.6, ["interest:coffee"])
    assert found.candidates == {0, 3}  # the tagged mug, the pans that say "cozinhar"
    assert set(found.soft_scores) == {3} and found.soft_hits == {3: frozenset({"cozinhar"})}
    assert index.match([], [], 0.6, ["interest:gardening"]).candidates == {0, 1, 2, 3, 4}


def test_a_pruned_open_request_keeps_the_most_tags_then_the_best_rated():
    rows = [_row(f"R{i}", f"Produto {i}", rating=1.0 + i / 5, count=100) for i in range(20)]
    rows += [_row("TAGGED", "Produto", tags=("recipient:mother", "age:senior"))]
    index = CatalogIndex(rows, prune_to=3)
    assert index.match([], [], 0.6, ["recipient:mother"]).candidates == {20}
    assert index.match([], [], 0.6, ["interest:none"]).candidates == {17, 18, 19}


def test_a_misspelt_word_finds_the_same_words_in_letter_buckets_as_in_a_full_scan():
    rows = [_row(f"K{i}", title) for i, title in enumerate([
        "Teclado mecânico", "Teclados sem fio", "Mouse gamer", "Monitor curvo", "Headset",
        "Câmera digital", "Carregador rápido", "Caneca", "Tablet", "Impressora laser"])]
    full = CatalogIndex(rows)
    bucketed = CatalogIndex(rows, fuzzy_full_scan=0)
    for typo in ("tecaldo", "etclado", "eclado", "monitr", "camrea", "impresora", "xyzw"):
        assert bucketed.expand(typo) == full.expand(typo), typo
    assert [w for w, _ in full.expand("tecaldo")] == ["teclado"]


def test_word_lists_seen_before_reach_the_same_products_from_memory(monkeypatch):
    lists = [(["caneca"], ["cozinhar", "cafe"]), ([], ["cozinhar", "cafe"]),
             (["notebok", "capa"], ["inox"]), ([], ["cafe", "cozinhar"]), ([], [])]
    fresh = []
    for terms, soft in lists:  # each list on an index that has seen nothing
        found = CatalogIndex(CATALOG).match(terms, soft, 0.6, [])
        fresh.append((found.candidates, found.scores, found.hits, found.soft_scores,
                      found.soft_hits))
    index = CatalogIndex(CATALOG)
    for _ in range(2):  # the second time from memory
        for (terms, soft), expected in zip(lists, fresh, strict=True):
            found = index.match(list(terms), list(soft), 0.6, [])
            assert (found.candidates, found.scores, found.hits, found.soft_scores,
                    found.soft_hits) == expected
    remembered = index._reach(["cozinhar", "cafe"], 0.6)
    assert remembered is index._reach(["cozinhar", "cafe"], 0.6)
    # The same words required weigh more than soft: remembered apart.
    required = index._reach(["cozinhar", "cafe"], 1.0)
    assert required is not remembered and list(required.scores) == pytest.approx(
        [score / 0.6 for score in remembered.scores])
    with pytest.raises(ValueError):  # handed out to every request: nobody may change it
        remembered.scores[0] = 1.0


def test_remembered_reaches_stay_within_their_memory(monkeypatch):
    index = CatalogIndex(CATALOG)
    one = index._reach(["caneca"], 1.0).nbytes()
    monkeypatch.setattr("catalog.index.REACH_CACHE_BYTES", 2 * one)
    for word in ("caneca", "inox", "cafe", "panelas", "notebook", "capa", "caneca"):
        index._reach([word], 1.0)
        assert index._reach_bytes == sum(r.nbytes() for r in index._reaches.values()) \
            <= 2 * one
    assert len(index._reaches) in (1, 2)
    # A reach too big to keep is handed out without pushing out what is kept.
    kept = dict(index._reaches)
    assert index._reach([f"zzpalavra{n}" for n in range(200)], 1.0).nbytes() > 2 * one
    assert index._reaches == kept
    monkeypatch.setattr("catalog.index.REACH_CACHE_BYTES", 0)
    index = CatalogIndex(CATALOG)
    assert index.match(["caneca"], [], 0.6, []).candidates == {0, 4}
    assert not index._reaches  # nothing fits: each request reaches its words anew


def test_an_empty_catalog_matches_nothing():
    index = CatalogIndex([])
    assert len(index.products) == 0 and index.get("loja:A1") is None
    assert index.match(["caneca"], [], 0.6, []).candidates == set()
    assert index.match([], [], 0.6, []).candidates == set()


def test_blocked_products_are_not_indexed():
    rows = CATALOG + [_row("GUN", "Pistola de airsoft", categories="Armas > Airsoft")]
    index = CatalogIndex(rows)
    assert index.get(product_ref("loja", "GUN")) is None and len(index.products) == 5


def test_a_model_name_written_apart_is_also_indexed_joined():
    assert indexed_stems("Sony PS4 Pro") == (["sony", "ps4", "pro"], ["ps", "4"])
    assert indexed_stems("Brother TN-2110 toner") == (["brother", "tn", "2110", "tn2110",
                                                      "toner"], [])
    # A longer word before a number is a word and a number, not a name.
    assert indexed_stems("Windows 10") == (["window", "10"], [])


def test_a_query_keeps_model_names_whole_next_to_their_parts():
    assert query_units("ps4 pro") == [("ps4", ["ps", "4"]), ("pro", ["pro"])]
    assert query_units("rtx2060") == [("rtx2060", ["rtx", "2060"])]
    # Words written apart stay apart: "tv 50" is a 50" TV, "tn-2110" is looked for as
    # "tn" and "2110", both required.
    assert query_units("smart tv 50") == [("smart", ["smart"]), ("tv", ["tv"]), ("50", ["50"])]
    assert query_units("brother tn-2110 toners") == [
        ("brother", ["brother"]), ("tn", ["tn"]), ("2110", ["2110"]), ("toner", ["toner"])]
    # Other mixes of letters and digits are read as their parts.
    assert query_units("9v ryzen5") == [("9", ["9"]), ("v", ["v"]), ("ryzen", ["ryzen"]),
                                         ("5", ["5"])]


def test_numbers_and_model_names_are_never_read_as_typos():
    index = CatalogIndex([
        _row("R1", "Placa de vídeo RTX2080", price=100),
        _row("R2", "Toner 21100", price=100),
    ])
    assert index.expand("rtx2070") == [] and index.expand("2110") == []
    assert index.expand("rtx2080") == [("rtx2080", 1.0)]


def test_a_word_counts_once_however_many_of_its_synonyms_a_product_holds():
    index = CatalogIndex([_row("BOTH", "Laptop notebook sleeve", price=100),
                          _row("ONE", "Notebook stand", price=100),
                          _row("L", "Laptop bag", price=100)])
    assert index.expand("laptop") == [("laptop", 1.0), ("notebook", SYNONYM_WEIGHT)]
    found = index.match(["laptop"], [], 0.6, [])

    def part(word: str, doc: int) -> float:
        docs, weights = index.postings(word)
        return float(weights[list(docs).index(doc)])

    idf = index.idf("laptop")  # a synonym counts with the rarity of the word asked for
    assert found.scores[0] == pytest.approx(
        idf * max(part("laptop", 0), SYNONYM_WEIGHT * part("notebook", 0)))
    assert found.scores[1] == pytest.approx(idf * SYNONYM_WEIGHT * part("notebook", 1))
    assert found.hits[0] == found.hits[1] == frozenset({"laptop"})


def test_products_enter_the_index_in_merchant_and_product_order_whatever_order_they_were_stored_in(
        runtime: Runtime):
    # On PostgreSQL rows came back in the order they sat in the table's pages, so products
    # that rank exactly alike could swap places between databases and after a sync.
    with Session(runtime.engine) as session:
        merchant = create_merchant(session=session, merchant_in=MerchantCreate(
            slug="loja", name="Loja", market="BR"))
        session.flush()
        rows = [{**row.model_dump(exclude={"id", "document"}), "merchant_id": merchant.id,
                 "document": {}} for row, _ in CATALOG[:3]]
        replace_catalog(session=session, merchant=merchant, rows=rows[::-1])
        session.commit()
    with Session(runtime.engine) as session:
        listed = [p.product_id for p, _ in products_for_market(session=session, market="BR")]
        streamed = [p.product_id for p, _ in iter_products_for_market(session=session,
                                                                      market="BR")]
    assert listed == streamed == sorted(r["product_id"] for r in rows)
