import pytest

from catalog.policy import blocked_reason


@pytest.mark.parametrize("market, categories, tags", [
    ("US", ["Sporting Goods > Firearms"], []),
    ("BR", ["Esporte > Armas de Fogo"], []),
    ("AR", ["Regalos"], ["cigarrillo electrónico"]),
    ("CO", ["Moda > Réplicas de marca"], []),
    ("BR", ["Adult > Sex Toys"], []),
    ("US", ["Mature > Adult Content"], []),
])
def test_blocked_categories_are_caught_in_each_market(market, categories, tags):
    assert blocked_reason(market, categories=categories, tags=tags)


@pytest.mark.parametrize("market, categories, tags", [
    ("US", ["Garden > Tools"], ["interest:gardening"]),
    ("AR", ["Vinos"], ["vino"]),  # alcohol is a legal gift, not blocked
    ("BR", ["Livros > Romance"], ["armazenamento"]),  # "arma" only as a whole word
    ("US", ["Books > Young Adult"], []),  # a book shelf, not adult content
    ("BR", ["Roupas > Tamanho Adulto"], []),
    ("US", ["Toys > Water Guns"], []),  # regression: "guns" alone blocked water pistols
    ("BR", ["Fantasias > Pirata"], ["aroma tabaco e baunilha"]),
])
def test_ordinary_gifts_are_not_blocked(market, categories, tags):
    assert blocked_reason(market, categories=categories, tags=tags) is None


def test_blocked_rows_are_rejected_at_ingest_with_a_reason(runtime, tmp_path):
    from catalog.merchants import add_merchant_from_feed
    from tests.factories import ucp_product, write_jsonl

    feed = write_jsonl(tmp_path / "f.jsonl", [
        ucp_product("OK"),
        ucp_product("GUN", "Rifle .22", categories=[{"value": "Sporting Goods > Firearms"}]),
    ])
    _, report = add_merchant_from_feed(engine=runtime.engine, name="Loja", market="BR",
                                       feed=feed)
    assert report.imported == 1
    assert [(e.line, e.reason) for e in report.errors] == [(2, "blocked category: firearms")]


def test_products_in_a_newly_blocked_category_disappear_from_search(runtime, tmp_path,
                                                                  monkeypatch):
    import json

    from catalog import policy
    from catalog.merchants import add_merchant_from_feed
    from catalog.search import CatalogSearch, SearchRequest
    from tests.factories import ucp_product, write_jsonl

    feed = write_jsonl(tmp_path / "f.jsonl", [ucp_product(
        "N1", "Kit Novidade", categories=[{"value": "Lançamentos > Kits"}])])
    add_merchant_from_feed(engine=runtime.engine, name="Loja", market="BR", feed=feed)
    request = SearchRequest(market="BR", currency="BRL", terms=["kit"])
    assert len(runtime.search.search(request)) == 1

    stricter = tmp_path / "blocklist.json"
    stricter.write_text(json.dumps({"*": [], "BR": ["lancamentos"]}), encoding="utf-8")
    monkeypatch.setattr(policy, "BLOCKLIST_PATH", stricter)
    policy._patterns.cache_clear()
    try:
        assert CatalogSearch(runtime.engine).search(request) == []
    finally:
        monkeypatch.undo()
        policy._patterns.cache_clear()
