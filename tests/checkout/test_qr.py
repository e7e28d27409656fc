import struct
import xml.etree.ElementTree as ET
import zlib
from decimal import Decimal

import pytest
import segno
import segno.helpers

from checkout import qr
from core.errors import InvalidInput

PIX = ("00020126580014br.gov.bcb.pix0136123e4567-e12b-12d1-a456-4266554400005204000053039"
       "865802BR5913Fulano de Tal6008BRASILIA62070503***63041D3D")
UPI = "upi://pay?pa=vitrine@okaxis&pn=Vitrine%20India&tr=VT123&am=123.45&cu=INR"
EPC_EXAMPLE_2 = ("BCD\n002\n2\nSCT\n\nFrançois D'Alsace S.A.\nFR1420041010050500013M02606\n"
                 "EUR12.3\n\n\nClient:Marie Louise La Lune")


def png_modules(data: bytes, *, scale: int) -> list[list[int]]:
    """Read back a 1-bit greyscale PNG as rows of modules (1 = dark), one pixel a module."""
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    pos, idat, header = 8, b"", b""
    while pos < len(data):
        length, kind = struct.unpack(">I4s", data[pos:pos + 8])
        chunk = data[pos + 8:pos + 8 + length]
        header = chunk if kind == b"IHDR" else header
        idat += chunk if kind == b"IDAT" else b""
        pos += 12 + length
    width, height, depth, colour = struct.unpack(">IIBB", header[:10])
    assert (depth, colour) == (1, 0)
    raw, stride = zlib.decompress(idat), (width + 7) // 8
    pixels, previous = [], bytes(stride)
    for y in range(height):
        kind, line = raw[y * (stride + 1)], bytearray(raw[y * (stride + 1) + 1:][:stride])
        assert kind in (0, 2)  # None or Up: all segno writes for a 1-bit image
        if kind == 2:
            line = bytearray((a + b) & 0xFF for a, b in zip(line, previous, strict=True))
        pixels.append(bytes(line))
        previous = bytes(line)
    return [[1 - ((pixels[y][x // 8] >> (7 - x % 8)) & 1)  # the middle pixel of each module
             for x in range(scale // 2, width, scale)]
            for y in range(scale // 2, height, scale)]


def with_border(code: segno.QRCode, border: int) -> list[list[int]]:
    size = len(code.matrix) + 2 * border
    blank = [[0] * size for _ in range(border)]
    return blank + [[0] * border + list(row) + [0] * border for row in code.matrix] + blank


@pytest.mark.parametrize("text", [PIX, UPI, EPC_EXAMPLE_2])
def test_png_shows_exactly_the_modules_of_the_payload(text):
    image = qr.png(text, scale=4, border=4)
    assert png_modules(image, scale=4) == with_border(qr.qr_code(text), 4)


def test_png_defaults_suit_a_phone_screen():
    code = qr.qr_code(PIX)
    image = qr.png(PIX)
    width, height = struct.unpack(">II", image[16:24])
    assert width == height == (len(code.matrix) + 2 * qr.BORDER) * qr.SCALE
    assert 200 <= width <= 1000


def test_epc_code_is_the_one_segno_makes_for_the_girocode():
    ours = qr.qr_code(EPC_EXAMPLE_2)
    theirs = segno.helpers.make_epc_qr(name="François D'Alsace S.A.",
                                       iban="FR1420041010050500013M02606",
                                       amount=Decimal("12.30"),
                                       text="Client:Marie Louise La Lune")
    assert ours.error == "M"
    assert ours.matrix == theirs.matrix


def test_epc_payload_is_encoded_in_the_charset_it_declares():
    assert qr.payload_bytes(EPC_EXAMPLE_2) == EPC_EXAMPLE_2.encode("iso-8859-1")
    utf8 = EPC_EXAMPLE_2.replace("\n2\n", "\n1\n", 1).replace("François", "Łukasz")
    assert qr.payload_bytes(utf8) == utf8.encode("utf-8")
    theirs = segno.helpers.make_epc_qr(name="Łukasz D'Alsace S.A.",
                                       iban="FR1420041010050500013M02606",
                                       amount=Decimal("12.30"),
                                       text="Client:Marie Louise La Lune", encoding=1)
    assert qr.qr_code(utf8).matrix == theirs.matrix


def test_other_payloads_get_at_least_error_correction_m():
    for text in (PIX, UPI):
        assert qr.qr_code(text).error in {"M", "Q", "H"}
        assert qr.qr_code(text).matrix == segno.make_qr(text.encode(), error="m").matrix


def test_svg_is_a_standalone_document_of_the_right_size():
    code = qr.qr_code(UPI)
    root = ET.fromstring(qr.svg(UPI, scale=5, border=2))
    assert root.tag == "{http://www.w3.org/2000/svg}svg"
    assert root.get("width") == root.get("height") == str((len(code.matrix) + 4) * 5)
    assert root.find("{http://www.w3.org/2000/svg}path") is not None


@pytest.mark.parametrize("text", [
    "",
    "x" * 3000,  # more than a version-40 code holds
    "BCD\n002\n9\nSCT\n\nName\nFR1420041010050500013M02606\nEUR1\n\n\nText",  # no charset 9
    "BCD\n002\n2\nSCT\n\nŁukasz\nFR1420041010050500013M02606\nEUR1\n\n\nText",  # not Latin-1
    "BCD\n002\n1\nSCT\n\n" + "x" * 400,  # past version 13, EPC's largest
])
def test_texts_no_code_can_carry_are_refused(text):
    with pytest.raises(InvalidInput):
        qr.png(text)
