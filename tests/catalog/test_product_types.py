import pytest

from catalog.product_types import (
    InvalidProductTypes,
    ProductTypes,
    load_product_types,
    product_types,
)
from catalog.text import fold

KINDS = product_types()


@pytest.mark.parametrize("text, expected", [
    ("tênis", ["sneakers"]), ("tenis", ["sneakers"]), ("Zapatillas", ["sneakers"]),
    ("running shoes", ["sneakers"]), ("trainers", ["sneakers"]),
    ("Tênis de Corrida Olympikus Corre 3", ["sneakers"]),
    ("notebook", ["laptop"]), ("laptops", ["laptop"]), ("chromebook", ["laptop"]),
    ("fone de ouvido", ["headphones"]), ("fones de ouvido", ["headphones"]),
    ("auriculares", ["headphones"]), ("audífonos", ["headphones"]),
    ("perfume", ["perfume"]), ("colônia", ["perfume"]), ("fragancia", ["perfume"]),
    ("caneca", ["mug"]), ("tazas", ["mug"]), ("avental", ["apron"]), ("delantal", ["apron"]),
    ("livro de receitas", ["cookbook"]), ("recetario", ["cookbook"]),
    ("relógios", ["watch"]), ("relojes", ["watch"]), ("anéis", ["ring"]),
    ("juegos de mesa", ["board game"]), ("jogo de tabuleiro", ["board game"]),
])
def test_a_kind_is_found_in_any_language_with_plurals_and_without_accents(text, expected):
    assert KINDS.find(text) == expected


@pytest.mark.parametrize("text, expected", [
    # The longer phrase names the product; the word inside it does not.
    ("Laptop Sleeve 15.6", ["laptop bag"]), ("Capa para Notebook Dell", ["laptop bag"]),
    ("roupa de cama", ["bedding"]), ("gaming mouse pad", ["mouse pad"]),
    ("relógio inteligente", ["smartwatch"]), ("Garmin GPS Running Watch", ["smartwatch"]),
    ("ps4 games", ["video game"]), ("caixa de som bluetooth", ["speaker"]),
    ("HP External USB DVD RW Drive", ["optical drive"]),  # not a blank DVD-RW
    ("chá de bebê", ["tea"]),  # find() knows no occasions: the parser keeps those out
])
def test_multi_word_phrases_win_over_the_words_inside_them(text, expected):
    assert KINDS.find(text) == expected


def test_kinds_come_in_order_of_appearance_without_duplicates():
    title = "Set Matero en Bolso con Termo, Mate, Bombilla y Yerbera"
    assert KINDS.find(title) == ["mate set", "bag", "thermos", "mate gourd", "mate straw"]
    assert KINDS.find("caneca, caneca e mais uma caneca") == ["mug"]


def test_words_that_name_a_group_are_not_types_but_scan_reports_them():
    assert KINDS.find("roupas para minha mãe") == []
    [match] = KINDS.scan(fold("sin ropa"))
    assert (match.name, match.group) == ("clothing", True)
    assert "sin ropa"[match.start:match.end] == "ropa"


def test_expand_gives_a_type_itself_a_group_its_types_and_anything_else_nothing():
    assert KINDS.expand("perfume") == ["perfume"]
    assert "t-shirt" in KINDS.expand("clothing") and "headphones" in KINDS.expand("gadgets")
    assert KINDS.expand("spaceship") == []


def test_words_of_a_type_cover_every_language():
    words = KINDS.words("sneakers")
    assert {"sneakers", "tênis", "zapatillas", "running shoes"} <= set(words)
    assert set(KINDS.words("footwear")) >= set(words)  # a group: all its types' words
    assert KINDS.words("spaceship") == []


def test_every_word_in_the_file_finds_exactly_its_own_type():
    for name in KINDS.type_names:
        assert KINDS.find(name) == [name], name
        for word in KINDS.words(name):
            assert KINDS.find(word) == [name], (name, word)


def test_every_group_lists_known_types_and_every_type_belongs_somewhere_sensible():
    assert KINDS.groups_of("sneakers") == ["footwear", "sports"]
    for group in KINDS.group_names:
        assert all(KINDS.is_type(t) for t in KINDS.expand(group)), group


def test_match_at_reads_only_the_phrase_that_starts_there():
    text = fold("nada de perfume nem roupa")
    found = KINDS.match_at(text, len("nada de"))
    assert found is not None and found.name == "perfume"
    assert KINDS.match_at(text, 0) is None


def test_a_phrase_naming_two_kinds_is_refused():
    with pytest.raises(InvalidProductTypes, match="names both"):
        ProductTypes({"mug": {"en": ["mug"], "pt": ["caneca"], "es": ["taza"]},
                      "cup": {"en": ["cup"], "pt": ["xícara"], "es": ["tazas"]}}, {})


def test_a_type_missing_a_language_or_a_group_with_strangers_is_refused():
    mug = {"en": ["mug"], "pt": ["caneca"], "es": ["taza"]}
    with pytest.raises(InvalidProductTypes, match="no words in es"):
        ProductTypes({"mug": {"en": ["mug"], "pt": ["caneca"]}}, {})
    with pytest.raises(InvalidProductTypes, match="unknown types"):
        ProductTypes({"mug": mug}, {"drinkware": ["mug", "goblet"]})
    with pytest.raises(InvalidProductTypes, match="name of a type"):
        ProductTypes({"mug": mug}, {"mug": ["mug"]})


def test_the_shipped_file_loads():
    assert load_product_types().type_names == KINDS.type_names
    assert len(KINDS.type_names) > 150


def test_a_titles_stems_are_checked_for_a_kind_without_reading_the_text_again():
    from catalog.product_types import product_types
    from catalog.text import stems

    kinds = product_types()
    for title, names in (("HP Voodoo Laser Gaming mouse USB", True),
                         ("HP Compaq 6530b Notebook PC 35.8 cm", True),
                         ("Kit de Jardinagem com 5 Ferramentas", True),
                         ("ASUS ROG STRIX Z490-A Gaming LGA 1200", False),
                         ("Sony Dreams PlayStation 4 Basic", True)):
        title_stems = stems(title)
        assert kinds.names_a_type(title_stems) is names, title
        assert bool(kinds.find(title)) is names, title
