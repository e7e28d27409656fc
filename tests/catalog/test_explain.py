from catalog.explain import reason_for
from catalog.search import SearchRequest
from core.i18n import Translator
from core.markets import get_market
from tests.factories import ucp_product, write_jsonl


def _ranked(runtime, tmp_path, product, **request):
    from catalog.merchants import add_merchant_from_feed

    add_merchant_from_feed(engine=runtime.engine, name="Loja", market="BR",
                           feed=write_jsonl(tmp_path / "f.jsonl", [product]))
    req = SearchRequest(market="BR", currency="BRL", **request)
    [ranked] = runtime.search.search(req)
    return ranked, req


def test_reason_names_interest_and_recipient_from_tags_in_portuguese(runtime, tmp_path):
    ranked, req = _ranked(runtime, tmp_path, ucp_product(
        tags=["recipient:mother", "interest:gardening"], rating=4.7),
        tags=["recipient:mother", "interest:gardening"])
    reason = reason_for(ranked, req, get_market("BR"), Translator("pt"))
    assert "mães" in reason and "jardinagem" in reason and "4,7" in reason


def test_reason_uses_the_merchants_category_not_the_google_taxonomy(runtime, tmp_path):
    product = ucp_product(title="Fone Bluetooth JBL", tags=[], rating=None, categories=[
        {"value": "Electronics > Audio > Headphones", "taxonomy": "google_product_category"},
        {"value": "Eletrônicos > Fones de Ouvido", "taxonomy": "merchant"}],
        metadata={"brand": "JBL"})
    ranked, req = _ranked(runtime, tmp_path, product, terms=["fone"])
    reason = reason_for(ranked, req, get_market("BR"), Translator("pt"))
    assert "Fones de Ouvido" in reason and "JBL" in reason and "Headphones" not in reason


def test_reason_states_only_facts_the_product_has(runtime, tmp_path):
    ranked, req = _ranked(runtime, tmp_path, ucp_product(tags=[], rating=None),
                          terms=["regador"], budget_max=10000)
    reason = reason_for(ranked, req, get_market("BR"), Translator("pt"))
    assert "★" not in reason and "avalia" not in reason and "dentro do orçamento" in reason


def test_reason_names_the_signals_that_matched_in_the_shoppers_language(runtime, tmp_path):
    ranked, req = _ranked(runtime, tmp_path, ucp_product(
        tags=["interest:gardening"], rating=4.7), tags=["interest:gardening"], budget_max=20000)
    reason = reason_for(ranked, req, get_market("BR"), Translator("pt"))
    assert reason == "Para quem ama jardinagem · 4,7★ em 100 avaliações · dentro do orçamento"


def test_reason_says_a_brand_was_asked_for_only_when_it_was(runtime, tmp_path):
    ranked, req = _ranked(runtime, tmp_path, ucp_product(tags=[], rating=None),
                          terms=["regador"], brands=["tramontina"])
    reason = reason_for(ranked, req, get_market("BR"), Translator("es"))
    assert "Tramontina, como pediste" in reason
