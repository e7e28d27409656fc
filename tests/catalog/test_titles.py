import pytest

from catalog.titles import not_its_kind, split_specs


@pytest.mark.parametrize(("title", "name"), [
    # A name naming a kind, then two quantities or more: the specifications start there.
    ('HP Compaq 6530b Notebook PC 35.8 cm (14.1") Intel® Core™2 Duo 2 GB DDR2-SDRAM 160 GB',
     "HP Compaq 6530b Notebook PC "),
    ("Samsung GE89MST microwave 23 L 850 W Stainless steel", "Samsung GE89MST microwave "),
    # The words before the first quantity name no kind: it may be part of the name.
    ("Tripp Lite Portable 20,100mAh 3-Port Mobile Power Bank USB Battery 5V 2.4A", None),
    # One quantity is no list of specifications.
    ("Caneca de cerâmica azul 350 ml", None),
    ("Kingston A400 480 GB SSD", None),
    # A one-letter unit needs a space: "3400G" is a model, not grams.
    ("Notebook Acme 3400G 5W", None),
])
def test_a_title_is_cut_where_its_specifications_start(title, name):
    got = split_specs(title)
    if name is None:
        assert got == (title, "")
    else:
        assert got == (name, title[len(name):])


def test_a_kind_the_product_only_holds_or_serves_is_not_its_kind():
    assert not_its_kind("Sandberg FireWire for Laptop (3 ports)") == {"laptop"}
    assert not_its_kind("DualSense Controller for PS 5") == {"ps", "5", "ps5"}
    # Named again outside "for ...", it stays; "corrida" is no kind of product.
    assert not_its_kind("Laptop sleeve for laptop") == frozenset()
    assert not_its_kind("Tênis para corrida") == frozenset()
    # What follows a second quantity is a part; after the first, often the product itself.
    assert not_its_kind("Acme X1 8 GB DDR4-SDRAM 512 GB HDD+SSD Tower") == {"hdd", "ssd"}
    assert not_its_kind("Samsung 65 in TV 120 Hz") == frozenset()
    assert not_its_kind("Kingston A400 480 GB SSD") == frozenset()


def test_a_long_title_is_read_like_a_short_one():
    # Each kind looks back a few characters for "for", not at the whole title before it.
    assert not_its_kind("mouse " * 2000 + "for laptop") == {"laptop"}
    assert not_its_kind("for " * 2000 + "mouse") == not_its_kind("for mouse") == {"mous"}
