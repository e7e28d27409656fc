"""QR codes for the `qr` text of `PaymentInstructions` (a Pix BR Code, a UPI link, an EPC
"GiroCode"), as PNG bytes or SVG text for a chat channel or a web page.

The rail decides what the code says; this module only decides how it is drawn:
- An EPC069-12 payload (it starts with "BCD") declares its character set on its third
  line, so it is encoded in exactly that set, and drawn at error correction M, which the
  standard fixes (and no larger than version 13, which its 331 bytes fit at M).
- Anything else is encoded as UTF-8 at error correction M at least; segno raises the
  level when the same symbol size holds more, which costs nothing on screen.

The default scale (8 px a module) and the four-module quiet zone the QR standard asks for
make a version-10 code about 520 px wide: sharp on a phone, and scannable off another
phone's screen.
"""

from __future__ import annotations

import io

import segno

from core.errors import InvalidInput

SCALE = 8
BORDER = 4  # modules of quiet zone (ISO/IEC 18004)
EPC_CHARSETS = ("utf-8", "iso-8859-1", "iso-8859-2", "iso-8859-4", "iso-8859-5",
                "iso-8859-7", "iso-8859-10", "iso-8859-15")  # EPC069-12 charset 1..8
EPC_MAX_VERSION = 13


def is_epc(text: str) -> bool:
    """Whether the text is an EPC069-12 credit-transfer payload."""
    return text.startswith("BCD\n")


def payload_bytes(text: str) -> bytes:
    """The exact bytes a QR code of this text carries.

    Raises:
        InvalidInput: an EPC payload whose declared character set is missing, unknown, or
            cannot hold its text.
    """
    if not is_epc(text):
        return text.encode("utf-8")
    lines = text.split("\n")
    charset = lines[2] if len(lines) > 2 else ""
    if not (charset.isdigit() and 1 <= int(charset) <= len(EPC_CHARSETS)):
        raise InvalidInput(f"EPC payload declares no known character set: {charset!r}")
    encoding = EPC_CHARSETS[int(charset) - 1]
    try:
        return text.encode(encoding)
    except UnicodeEncodeError:
        raise InvalidInput(f"EPC payload does not fit its declared {encoding}") from None


def qr_code(text: str) -> segno.QRCode:
    """The QR code of a payment text, at the error correction its scheme requires.

    Raises:
        InvalidInput: empty, or too long for any QR code (or for an EPC one: version 13).
    """
    if not text:
        raise InvalidInput("nothing to put in a QR code")
    epc = is_epc(text)
    try:
        code = segno.make_qr(payload_bytes(text), error="m", boost_error=not epc)
    except ValueError as exc:  # segno's DataOverflowError is a ValueError
        raise InvalidInput(f"text does not fit in a QR code: {exc}") from None
    if epc and isinstance(code.version, int) and code.version > EPC_MAX_VERSION:
        raise InvalidInput(f"EPC payload needs QR version {code.version}; at most 13 allowed")
    return code


def png(text: str, *, scale: int = SCALE, border: int = BORDER) -> bytes:
    """The QR code of a payment text as a PNG image (black on white, 1 bit a pixel)."""
    out = io.BytesIO()
    qr_code(text).save(out, kind="png", scale=scale, border=border)
    return out.getvalue()


def svg(text: str, *, scale: int = SCALE, border: int = BORDER) -> str:
    """The QR code of a payment text as a standalone SVG document (no XML declaration, so
    it can also be inlined in HTML)."""
    out = io.BytesIO()
    qr_code(text).save(out, kind="svg", scale=scale, border=border, xmldecl=False,
                       title="QR code", encoding="utf-8")
    return out.getvalue().decode("utf-8")
