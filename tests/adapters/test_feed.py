import gzip
import tracemalloc
from pathlib import Path
from xml.sax.saxutils import escape

import pytest
from sqlmodel import Session, select

from adapters.feed import feed_format, gmc_row_to_product, read_feed
from catalog.merchants import add_merchant_from_feed
from catalog.models import CatalogProduct, Merchant
from core.errors import FeedError, InvalidInput
from tests.conftest import SHARED
from tests.factories import ucp_product, write_jsonl, write_tsv


def _products(runtime, slug):
    with Session(runtime.engine) as session:
        merchant = session.exec(select(Merchant).where(Merchant.slug == slug)).one()
        rows = session.exec(select(CatalogProduct)
                            .where(CatalogProduct.merchant_id == merchant.id)).all()
        return {r.product_id: r for r in rows}


def test_jsonl_feed_imports_products_in_the_ucp_shape(runtime, tmp_path):
    feed = write_jsonl(tmp_path / "shop.jsonl", [
        ucp_product("A1", "Regador", 8990, rating=4.6),
        ucp_product("A2", "Luva de Jardinagem", 2990, available=False),
    ])
    merchant, report = add_merchant_from_feed(engine=runtime.engine, name="Loja", market="BR",
                                              feed=feed)
    assert (merchant.slug, report.imported, report.rejected) == ("loja", 2, 0)
    rows = _products(runtime, "loja")
    assert rows["A1"].price_amount == 8990 and rows["A1"].currency == "BRL"
    assert rows["A1"].rating_value == 4.6 and rows["A1"].brand == "Tramontina"
    assert rows["A1"].image_url == "https://shop.example/img/A1.jpg"
    assert rows["A2"].in_stock is False


def test_bad_rows_are_reported_with_line_and_reason_and_good_rows_kept(runtime, tmp_path):
    feed = write_jsonl(tmp_path / "shop.jsonl", [
        ucp_product("OK1"),
        "{not json",
        ucp_product("NEG", amount=-5),
        {"id": "NOVAR", "title": "No variants", "variants": []},
        ucp_product("USD", currency="USD"),
        ucp_product("FLOAT", amount=12.5),
        ucp_product("OK1", title="duplicate id"),
        "[1, 2]",
        ucp_product("OK2"),
    ])
    _, report = add_merchant_from_feed(engine=runtime.engine, name="Loja", market="BR", feed=feed)
    assert report.imported == 2
    reasons = {e.line: e.reason for e in report.errors}
    assert set(reasons) == {2, 3, 4, 5, 6, 7, 8}
    assert "not valid JSON" in reasons[2]
    assert "amount" in reasons[3]
    assert "variants" in reasons[4]
    assert "USD" in reasons[5] and "BRL" in reasons[5]
    assert "amount" in reasons[6]
    assert "duplicate id 'OK1'" in reasons[7]
    assert "not a JSON object" in reasons[8]
    assert set(_products(runtime, "loja")) == {"OK1", "OK2"}


def test_gmc_tsv_gz_feed_with_prices_like_49_95_usd(runtime, tmp_path):
    feed = write_tsv(tmp_path / "gmc.tsv.gz", [
        ["G1", "Kindle Paperwhite", "E-reader 6.8 in", "https://s.example/g1",
         "https://s.example/g1.jpg", "in_stock", "149.99 USD", "Amazon", "Electronics > Readers",
         "recipient:mother,interest:reading"],
        ["G2", "Headphones", "Wireless", "https://s.example/g2", "https://s.example/g2.jpg",
         "out_of_stock", "49.95 USD", "Sony", "Electronics", ""],
        ["G3", "Bad price", "x", "https://s.example/g3", "", "in_stock", "49,95 dollars", "X",
         "", ""],
        ["G4", "Too few fields"],
    ], gz=True)
    _, report = add_merchant_from_feed(engine=runtime.engine, name="Gifts", market="US", feed=feed)
    assert report.imported == 2
    assert [(e.line, "price" in e.reason or "fields" in e.reason) for e in report.errors] == \
        [(4, True), (5, True)]
    rows = _products(runtime, "gifts")
    assert rows["G1"].price_amount == 14999 and rows["G1"].currency == "USD"
    assert "recipient:mother" in rows["G1"].tags and rows["G1"].categories == \
        "Electronics > Readers"
    assert rows["G2"].in_stock is False


def test_gmc_row_mapping_reads_ratings_and_labels():
    product = gmc_row_to_product({"id": "X", "title": "T", "price": "10.00 BRL",
                                  "product_rating": "4.5", "product_rating_count": "12",
                                  "custom_label_0": "age:senior, interest:tea",
                                  "brand": "Natura"})
    assert product.rating and product.rating.value == 4.5 and product.rating.count == 12
    assert product.tags == ["age:senior", "interest:tea"] and product.brand == "Natura"


def test_site_relative_links_are_resolved_against_the_base_url(tmp_path):
    feed = write_jsonl(tmp_path / "f.jsonl", [ucp_product(
        "R1", media=[{"type": "image", "url": "/media/demo/x.svg"}], url="/p/r1")])
    [(line, product)] = list(read_feed(feed, base_url="http://vitrine.local:8000"))
    assert product.image_url() == "http://vitrine.local:8000/media/demo/x.svg"
    [(line, error)] = list(read_feed(feed))
    assert "not an absolute" in error.reason


@pytest.mark.parametrize("name, content, message", [
    ("catalog.csv", b"id,title\n", "not a supported feed"),
    ("feed.jsonl", b"\x89PNG\r\n\x1a\n\x00\x00binary", "UTF-8"),
    ("feed.jsonl", b"hello\nworld\n", "no valid products"),
    ("feed.tsv", b"sku\tname\n1\tx\n", "header lacks"),
    ("feed.jsonl.gz", b"not gzip at all", "cannot read"),
    ("feed.jsonl", b"", "no valid products"),
])
def test_a_file_that_is_not_a_feed_is_refused_with_a_reason(runtime, tmp_path, name, content,
                                                            message):
    path = tmp_path / name
    path.write_bytes(content)
    with pytest.raises(FeedError, match=message):
        add_merchant_from_feed(engine=runtime.engine, name="Loja", market="BR", feed=path)
    with Session(runtime.engine) as session:
        assert session.exec(select(Merchant)).all() == []  # nothing half-written


def test_a_failed_reimport_leaves_the_old_catalog_intact(runtime, tmp_path):
    good = write_jsonl(tmp_path / "good.jsonl", [ucp_product("A1"), ucp_product("A2")])
    add_merchant_from_feed(engine=runtime.engine, name="Loja", market="BR", feed=good)
    # A feed that breaks off half-way (truncated gzip) after some valid rows.
    whole = gzip.compress(("\n".join(
        __import__("json").dumps(ucp_product(f"N{i}")) for i in range(2000)) + "\n").encode())
    broken = tmp_path / "broken.jsonl.gz"
    broken.write_bytes(whole[: len(whole) // 2])
    with pytest.raises(FeedError, match="cannot read"):
        add_merchant_from_feed(engine=runtime.engine, name="Loja", market="BR", feed=broken,
                               slug="loja", replace=True)
    assert set(_products(runtime, "loja")) == {"A1", "A2"}


def test_adding_the_same_merchant_twice_is_refused(runtime, tmp_path):
    feed = write_jsonl(tmp_path / "f.jsonl", [ucp_product()])
    add_merchant_from_feed(engine=runtime.engine, name="Loja", market="BR", feed=feed)
    with pytest.raises(InvalidInput, match="already exists"):
        add_merchant_from_feed(engine=runtime.engine, name="Loja", market="BR", feed=feed)


def test_missing_feed_and_unknown_market_are_refused(runtime, tmp_path):
    with pytest.raises(FeedError, match="not found"):
        add_merchant_from_feed(engine=runtime.engine, name="Loja", market="BR",
                               feed=tmp_path / "nope.jsonl")
    feed = write_jsonl(tmp_path / "f.jsonl", [ucp_product()])
    with pytest.raises(InvalidInput, match="unknown market"):
        add_merchant_from_feed(engine=runtime.engine, name="Loja", market="XX", feed=feed)


ICECAT = SHARED / "data" / "icecat"


@pytest.mark.skipif(not ICECAT.is_dir(), reason="shared Icecat data not present")
@pytest.mark.parametrize("name", ["products.ucp.jsonl.gz", "products.gmc.tsv.gz"])
def test_the_icecat_feeds_read_in_both_formats(name):
    seen = 0
    for line, item in read_feed(ICECAT / name):
        assert not hasattr(item, "reason"), (line, item)
        assert item.currency == "USD"
        seen += 1
        if seen == 500:
            break
    assert seen == 500


def test_demo_feeds_import_without_rejections(demo_runtime):
    with Session(demo_runtime.engine) as session:
        merchants = session.exec(select(Merchant)).all()
    assert {m.market for m in merchants} >= {"BR", "AR", "US"}
    assert sum(m.product_count for m in merchants) >= 150
    demo_dir = Path(__file__).resolve().parents[2] / "catalog" / "demo"
    for feed in (demo_dir / "feeds").iterdir():
        assert all(not hasattr(item, "reason")
                   for _, item in read_feed(feed, base_url="http://x")), feed


def test_a_corrupt_gzip_stream_is_a_feed_error(runtime, tmp_path):
    path = tmp_path / "c.jsonl.gz"
    path.write_bytes(b"\x1f\x8b\x08\x00garbage-that-is-not-deflate")
    with pytest.raises(FeedError):
        add_merchant_from_feed(engine=runtime.engine, name="Loja", market="BR", feed=path)


def test_a_byte_order_mark_does_not_hide_the_header(runtime, tmp_path):
    tsv = tmp_path / "bom.tsv"
    tsv.write_bytes("\ufeffid\ttitle\tprice\tlink\n1\tCaneca\t10.00 BRL\thttps://x.example/1\n"
                    .encode())
    jsonl = tmp_path / "bom.jsonl"
    jsonl.write_bytes(("\ufeff" + __import__("json").dumps(ucp_product("B1")) + "\n").encode())
    assert add_merchant_from_feed(engine=runtime.engine, name="A", market="BR",
                                  feed=tsv)[1].imported == 1
    assert add_merchant_from_feed(engine=runtime.engine, name="B", market="BR",
                                  feed=jsonl)[1].imported == 1


@pytest.mark.parametrize("link", ["javascript:alert(1)", "data:text/html,<b>x</b>",
                                  "file:///etc/passwd"])
def test_only_web_links_are_accepted_even_with_a_base_url(tmp_path, link):
    feed = write_jsonl(tmp_path / "f.jsonl", [ucp_product("J", url=link)])
    [(_, item)] = list(read_feed(feed, base_url="https://shop.example"))
    assert "not an absolute" in item.reason


def test_infinite_ratings_are_rejected(tmp_path):
    feed = write_jsonl(tmp_path / "f.jsonl", [
        '{"id": "X", "title": "T", "variants": [{"id": "X", "title": "T", "price": '
        '{"amount": 100, "currency": "BRL"}}], "rating": {"value": 1e308, "scale_max": 1e309}}'])
    [(_, item)] = list(read_feed(feed))
    assert "rating" in item.reason


def test_a_merchant_name_too_long_is_refused_with_a_reason(runtime, tmp_path):
    feed = write_jsonl(tmp_path / "f.jsonl", [ucp_product()])
    with pytest.raises(InvalidInput, match="1 to 200"):
        add_merchant_from_feed(engine=runtime.engine, name="L" * 300, market="BR", feed=feed)


# RSS 2.0 / Atom XML feeds with the Google `g:` namespace

G_NS = 'xmlns:g="http://base.google.com/ns/1.0"'


def g_fields(fields: dict[str, str]) -> str:
    return "".join(f"<g:{k}>{escape(v)}</g:{k}>" for k, v in fields.items())


def rss(items: list[str], prolog: str = "") -> str:
    return (f'<?xml version="1.0" encoding="UTF-8"?>\n{prolog}<rss version="2.0" {G_NS}>\n'
            f"<channel>\n<title>Loja</title>\n<link>https://s.example</link>\n"
            + "".join(f"<item>{item}</item>\n" for item in items) + "</channel>\n</rss>\n")


def atom(entries: list[str]) -> str:
    return (f'<?xml version="1.0"?>\n<feed xmlns="http://www.w3.org/2005/Atom" {G_NS}>\n'
            "<title>Loja</title>\n"
            + "".join(f"<entry>{entry}</entry>\n" for entry in entries) + "</feed>\n")


def write_xml(path: Path, text: str) -> Path:
    if path.name.endswith(".gz"):
        path.write_bytes(gzip.compress(text.encode()))
    else:
        path.write_text(text, encoding="utf-8")
    return path


GMC_ROW = {
    "id": "G1", "title": "Kindle Paperwhite", "description": "E-reader 6.8 in",
    "link": "https://s.example/g1", "image_link": "https://s.example/g1.jpg",
    "availability": "in stock", "price": "149.99 USD", "sale_price": "129.99 USD",
    "brand": "Amazon", "gtin": "0840080520000", "mpn": "B08KTZ8249",
    "product_type": "Electronics > Readers", "google_product_category": "Electronics",
    "condition": "new", "custom_label_0": "recipient:mother, interest:reading",
    "custom_label_4": "occasion:birthday", "product_rating": "4.7",
    "product_rating_count": "1200",
}


@pytest.mark.parametrize("name", ["feed.xml", "feed.xml.gz", "FEED.XML"])
def test_feed_format_accepts_xml_feeds(name):
    assert feed_format(Path(name)) == "xml"


@pytest.mark.parametrize("name", ["gmc.xml", "gmc.xml.gz"])
def test_an_rss_item_maps_exactly_as_the_same_tsv_row(tmp_path, name):
    feed = write_xml(tmp_path / name, rss([g_fields(GMC_ROW)]))
    [(number, product)] = list(read_feed(feed))
    assert number == 1
    assert product == gmc_row_to_product(GMC_ROW)
    assert product.variants[0].price.amount == 12999 and product.rating.count == 1200
    assert product.tags == ["recipient:mother", "interest:reading", "occasion:birthday"]


def test_rss_title_link_and_description_fill_in_for_missing_g_fields(tmp_path):
    feed = write_xml(tmp_path / "f.xml", rss([
        "<title>Caneca</title><link>https://s.example/c</link>"
        "<description><![CDATA[Caneca <b>esmaltada</b>]]></description>"
        + g_fields({"id": "C1", "price": "10.00 BRL"}),
        # g: wins over the plain element; a nested g:price (shipping) is not the item's.
        "<title>Plain title</title>" + g_fields({"id": "C2", "title": "Google title"})
        + "<g:shipping><g:country>BR</g:country><g:price>5.00 BRL</g:price></g:shipping>"
        + g_fields({"price": "20.00 BRL"}),
    ]))
    [(_, c1), (_, c2)] = list(read_feed(feed))
    assert (c1.title, c1.url, c1.description.plain) == \
        ("Caneca", "https://s.example/c", "Caneca <b>esmaltada</b>")
    assert (c2.title, c2.variants[0].price.amount) == ("Google title", 2000)


def test_an_atom_gz_feed_imports_through_the_merchant_import(runtime, tmp_path):
    feed = write_xml(tmp_path / "shop.xml.gz", atom([
        '<title>Regador</title><link rel="alternate" href="/p/a1"/>'
        '<link rel="self" href="https://s.example/feed/a1"/><summary>Regador 2 L</summary>'
        + g_fields({"id": "A1", "price": "89.90 BRL", "image_link": "/img/a1.jpg",
                    "availability": "out of stock"}),
        "<title>Luva</title>" + g_fields({"id": "A2", "price": "29.90 BRL"}),
    ]))
    _, report = add_merchant_from_feed(engine=runtime.engine, name="Loja", market="BR",
                                       feed=feed, base_url="https://s.example")
    assert (report.imported, report.rejected) == (2, 0)
    rows = _products(runtime, "loja")
    assert rows["A1"].price_amount == 8990 and rows["A1"].in_stock is False
    assert rows["A1"].image_url == "https://s.example/img/a1.jpg"
    assert rows["A2"].in_stock is True


def test_bad_xml_items_are_reported_by_item_number_with_a_reason(runtime, tmp_path):
    feed = write_xml(tmp_path / "shop.xml", rss([
        g_fields({"id": "OK1", "title": "Caneca", "price": "10.00 BRL"}),
        g_fields({"id": "NOPRICE", "title": "Sem preço"}),
        g_fields({"id": "BAD", "title": "Preço ruim", "price": "10,00 reais"}),
        g_fields({"id": "JS", "title": "Link", "price": "1.00 BRL",
                  "link": "javascript:alert(1)"}),
        g_fields({"id": "OK2", "title": "Prato", "price": "12.00 BRL"}),
    ]))
    _, report = add_merchant_from_feed(engine=runtime.engine, name="Loja", market="BR", feed=feed)
    assert report.imported == 2
    reasons = {e.line: e.reason for e in report.errors}
    assert set(reasons) == {2, 3, 4}
    assert all(r.startswith(f"item {n} (counted in items") for n, r in reasons.items())
    assert "missing price" in reasons[2]
    assert "is not like '49.95 USD'" in reasons[3]
    assert "not an absolute" in reasons[4]
    assert set(_products(runtime, "loja")) == {"OK1", "OK2"}


def test_malformed_xml_is_a_feed_error_with_its_line(tmp_path):
    feed = write_xml(tmp_path / "f.xml", rss([
        g_fields({"id": "1", "title": "Ok", "price": "1.00 USD"}),
        "<g:id>2</g:id><title>Broken</titel>",
    ]))
    items = read_feed(feed)
    with pytest.raises(FeedError, match=r"malformed XML .*line 7") as caught:
        list(items)
    assert caught.value.context["line"] == 7


@pytest.mark.parametrize("content, message", [
    ("", "malformed XML"),
    ('{"id": "not xml"}', "malformed XML"),
    ("<html><body>Not found</body></html>", "not an RSS 2.0 or Atom feed"),
    ("<rss><channel><item><title>&nbsp;</title></item></channel></rss>", "undefined entity"),
])
def test_an_xml_file_that_is_not_a_feed_is_refused(tmp_path, content, message):
    feed = write_xml(tmp_path / "f.xml", content)
    with pytest.raises(FeedError, match=message):
        list(read_feed(feed))


def test_a_truncated_xml_gz_feed_is_a_feed_error(tmp_path):
    whole = gzip.compress(rss([g_fields({"id": str(i), "title": "T", "price": "1.00 USD"})
                               for i in range(2000)]).encode())
    feed = tmp_path / "f.xml.gz"
    feed.write_bytes(whole[: len(whole) // 2])
    with pytest.raises(FeedError, match="cannot read"):
        list(read_feed(feed))


BILLION_LAUGHS = '<!DOCTYPE rss [<!ENTITY lol "lol">' + "".join(
    f'<!ENTITY lol{i} "{("&lol" + str(i - 1) + ";") * 10}">' for i in range(2, 10)
).replace("&lol1;", "&lol;") + "]>\n"
ITEM_WITH = g_fields({"id": "X", "price": "1.00 USD"}) + "<title>{}</title>"


@pytest.mark.parametrize("prolog, body", [
    (BILLION_LAUGHS, "&lol9;"),
    ('<!DOCTYPE rss [<!ENTITY xxe SYSTEM "file://{secret}">]>\n', "&xxe;"),
    ('<!DOCTYPE rss [<!ENTITY % dtd SYSTEM "http://127.0.0.1:9/evil.dtd"> %dtd;]>\n', "x"),
    ('<!DOCTYPE rss SYSTEM "file://{secret}">\n', "x"),
], ids=["billion-laughs", "xxe-file", "xxe-parameter-entity", "external-dtd"])
def test_a_doctype_is_refused_so_entity_attacks_cannot_run(tmp_path, prolog, body):
    # The stdlib alone (expat 2.5) stops billion laughs at its amplification limit and leaves
    # external entities undefined; a feed never needs a DOCTYPE, so it is refused outright.
    secret = tmp_path / "secret.txt"
    secret.write_text("TOP-SECRET")
    feed = write_xml(tmp_path / "evil.xml",
                     rss([ITEM_WITH.format(body)], prolog=prolog.format(secret=secret)))
    with pytest.raises(FeedError, match="DOCTYPE") as caught:
        list(read_feed(feed))
    assert "TOP-SECRET" not in str(caught.value) and "lollol" not in str(caught.value)


def test_a_doctype_after_a_long_prolog_is_still_refused(tmp_path):
    # The DOCTYPE arrives in a later read than the start of the file.
    prolog = "<!--" + "x" * 100_000 + "-->\n" + BILLION_LAUGHS
    feed = write_xml(tmp_path / "evil.xml.gz", rss([ITEM_WITH.format("&lol9;")], prolog=prolog))
    with pytest.raises(FeedError, match="DOCTYPE"):
        list(read_feed(feed))


def _peak_bytes_reading(feed: Path) -> int:
    tracemalloc.start()
    try:
        for _ in read_feed(feed):
            pass
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def test_an_xml_feed_is_read_without_keeping_its_items(tmp_path):
    def feed(n: int) -> Path:
        items = [g_fields({"id": f"P{i}", "title": f"Produto {i}", "price": "9.90 BRL",
                           "description": "Descrição " * 10, "link": f"https://s.example/{i}"})
                 for i in range(n)]
        return write_xml(tmp_path / f"f{n}.xml", rss(items))

    small, large = feed(300), feed(4000)
    _peak_bytes_reading(small)  # the first validation builds pydantic's caches
    # Kept items would cost about a kilobyte each; a streaming read costs the same for both.
    assert _peak_bytes_reading(large) - _peak_bytes_reading(small) < 1_000_000


def test_a_deeply_nested_line_or_a_huge_field_is_one_bad_row(runtime, tmp_path):
    jsonl = write_jsonl(tmp_path / "deep.jsonl", ["[" * 100_000, ucp_product("OK")])
    _, report = add_merchant_from_feed(engine=runtime.engine, name="A", market="BR", feed=jsonl)
    assert report.imported == 1 and report.errors[0].line == 1
    long_description = "x" * 300_000
    tsv = write_tsv(tmp_path / "big.tsv", [
        ["1", "Caneca", long_description, "https://x.example/1", "", "in_stock", "10.00 BRL",
         "", "", ""]])
    _, report = add_merchant_from_feed(engine=runtime.engine, name="B", market="BR", feed=tsv)
    assert report.imported == 1
