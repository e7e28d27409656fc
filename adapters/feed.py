"""Product feeds from files: UCP/ACP JSON Lines, Google Merchant Center TSV and RSS 2.0 / Atom
XML with the Google `g:` namespace, each optionally gzip.

Parsing streams the file row by row; every row is validated into the UCP `Product` model and a
row that fails is reported with its line number and reason instead of stopping the import.
XML items are reported by their number in the feed (the parser gives no line for an item), and
their reason says so.
"""

from __future__ import annotations

import csv
import gzip
import io
import json
import re
import xml.etree.ElementTree as ET
import zlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, cast
from urllib.parse import urljoin, urlparse
from xml.parsers import expat

from pydantic import ValidationError

from adapters.product import Product, validation_reason
from core.errors import FeedError, InvalidInput
from core.money import money_from_major

GMC_REQUIRED = ("id", "title", "price")
GMC_PRICE_RE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s+([A-Z]{3})\s*$")
GMC_AVAILABLE = {"in_stock", "in stock", "preorder", "backorder"}
MAX_REPORTED_ERRORS = 1000
# A description may be long; past csv's 128 KB default one row would abort the whole feed.
csv.field_size_limit(16 * 2**20)
GOOGLE_NS = "http://base.google.com/ns/1.0"
ATOM_NS = "http://www.w3.org/2005/Atom"
XML_ROOTS = ("rss", f"{{{ATOM_NS}}}feed")
XML_ITEMS = ("item", f"{{{ATOM_NS}}}entry")


@dataclass(frozen=True)
class RowError:
    line: int
    reason: str


@dataclass
class FeedReport:
    """What an import did: products imported and each rejected row with its reason."""

    imported: int = 0
    rejected: int = 0
    errors: list[RowError] = field(default_factory=list)

    def add_error(self, error: RowError) -> None:
        self.rejected += 1
        if len(self.errors) < MAX_REPORTED_ERRORS:
            self.errors.append(error)

    def as_dict(self) -> dict:
        return {
            "imported": self.imported,
            "rejected": self.rejected,
            "errors": [{"line": e.line, "reason": e.reason} for e in self.errors],
        }


def feed_format(path: Path) -> str:
    """'jsonl', 'tsv' or 'xml' from the file name (a trailing `.gz` is allowed).

    Raises:
        FeedError: the extension is not one of the supported feed formats.
    """
    name = path.name.lower()
    if name.endswith(".gz"):
        name = name[:-3]
    if name.endswith((".jsonl", ".ndjson")):
        return "jsonl"
    if name.endswith((".tsv", ".txt")):
        return "tsv"
    if name.endswith(".xml"):
        return "xml"
    raise FeedError(f"{path.name}: not a supported feed (use .jsonl, .tsv or .xml, "
                    f"optionally .gz)")


def _open_bytes(path: Path) -> IO[bytes]:
    try:
        return cast(IO[bytes], gzip.open(path, "rb") if path.name.lower().endswith(".gz")
                    else path.open("rb"))
    except OSError as exc:
        raise FeedError(f"{path}: cannot open feed ({exc.strerror or exc})") from None


def _open_text(path: Path) -> IO[str]:
    raw = _open_bytes(path)
    # utf-8-sig: spreadsheet exports often start with a byte-order mark.
    return io.TextIOWrapper(raw, encoding="utf-8-sig", errors="strict", newline="")


def _resolve(url: str | None, base_url: str | None) -> str | None:
    if not url:
        return url
    resolved = urljoin(base_url.rstrip("/") + "/", url.lstrip("/")) \
        if base_url and not urlparse(url).scheme else url
    if not is_web_link(resolved):
        raise ValueError(f"link {url!r} is not an absolute http(s) URL")
    return resolved


def is_web_link(url: str) -> bool:
    """Only web links reach a shopper's screen: never javascript:, data: or file: links."""
    parsed = urlparse(url)
    return parsed.scheme in ("http", "https") and bool(parsed.netloc)


def _finish(product: Product, base_url: str | None) -> Product:
    product.url = _resolve(product.url, base_url)
    for item in product.media:
        item.url = _resolve(item.url, base_url) or item.url
    return product


def _jsonl_rows(text: IO[str], base_url: str | None) -> Iterator[tuple[int, Product | RowError]]:
    for line_no, line in enumerate(text, start=1):
        if not line.strip():
            continue
        try:
            doc = json.loads(line)
        except json.JSONDecodeError as exc:
            yield line_no, RowError(line_no, f"not valid JSON ({exc.msg})")
            continue
        except RecursionError:
            yield line_no, RowError(line_no, "JSON nested too deeply")
            continue
        if not isinstance(doc, dict):
            yield line_no, RowError(line_no, "not a JSON object")
            continue
        try:
            yield line_no, _finish(Product.model_validate(doc), base_url)
        except ValidationError as exc:
            yield line_no, RowError(line_no, validation_reason(exc))
        except ValueError as exc:
            yield line_no, RowError(line_no, str(exc))


def _gmc_tags(row: dict[str, str]) -> list[str]:
    tags: list[str] = []
    for key in ("custom_label_0", "custom_label_1", "custom_label_2", "custom_label_3",
                "custom_label_4"):
        tags.extend(t.strip() for t in (row.get(key) or "").split(",") if t.strip())
    return tags


def gmc_row_to_product(row: dict[str, str]) -> Product:
    """Map one Google Merchant Center row to the UCP product shape.

    Raises:
        ValueError: a required field is missing or the price is not like `49.95 USD`.
    """
    missing = [k for k in GMC_REQUIRED if not (row.get(k) or "").strip()]
    if missing:
        raise ValueError(f"missing {', '.join(missing)}")
    price_text = (row.get("sale_price") or "").strip() or row["price"]
    match = GMC_PRICE_RE.match(price_text)
    if not match:
        raise ValueError(f"price {price_text!r} is not like '49.95 USD'")
    try:
        price = money_from_major(match.group(1), match.group(2))
    except InvalidInput as exc:
        raise ValueError(exc.reason) from None
    available = (row.get("availability") or "in_stock").strip().lower() in GMC_AVAILABLE
    doc: dict = {
        "id": row["id"].strip(),
        "title": row["title"].strip(),
        "description": {"plain": (row.get("description") or "").strip()},
        "url": (row.get("link") or "").strip() or None,
        "categories": [{"value": v.strip(), "taxonomy": t} for v, t in (
            (row.get("product_type") or "", "merchant"),
            (row.get("google_product_category") or "", "google_product_category"),
        ) if v.strip()],
        "media": [{"type": "image", "url": row["image_link"].strip(), "alt_text": row["title"]}]
        if (row.get("image_link") or "").strip() else [],
        "variants": [{
            "id": row["id"].strip(),
            "title": row["title"].strip(),
            "price": price.as_dict(),
            "availability": {"available": available,
                             "status": (row.get("availability") or "in_stock").strip()},
            "sku": (row.get("mpn") or "").strip() or None,
        }],
        "tags": _gmc_tags(row),
        "metadata": {k: row[k].strip() for k in ("brand", "gtin", "mpn", "condition")
                     if (row.get(k) or "").strip()},
    }
    rating = (row.get("product_rating") or "").strip()
    if rating:
        count = (row.get("product_rating_count") or "").strip()
        doc["rating"] = {"value": rating, "scale_max": 5, "count": int(count) if count else None}
    return Product.model_validate(doc)


def _tsv_rows(text: IO[str], base_url: str | None) -> Iterator[tuple[int, Product | RowError]]:
    reader = csv.reader(text, delimiter="\t", quoting=csv.QUOTE_NONE)
    try:
        header = [h.strip().lower() for h in next(reader)]
    except StopIteration:
        return
    missing = [k for k in GMC_REQUIRED if k not in header]
    if missing:
        raise FeedError(f"not a Google Merchant Center TSV feed: header lacks {', '.join(missing)}")
    for cells in reader:
        line_no = reader.line_num
        if not any(c.strip() for c in cells):
            continue
        if len(cells) != len(header):
            yield line_no, RowError(line_no, f"has {len(cells)} fields, header has {len(header)}")
            continue
        try:
            row = dict(zip(header, cells, strict=True))
            yield line_no, _finish(gmc_row_to_product(row), base_url)
        except ValidationError as exc:
            yield line_no, RowError(line_no, validation_reason(exc))
        except (ValueError, InvalidInput) as exc:
            yield line_no, RowError(line_no, str(exc))


class _RootStarted(Exception):
    """The prolog is over: the root element has started, no DOCTYPE can follow."""


class _DoctypeRefusingReader:
    """Hands a feed's bytes to `iterparse`, refusing a DOCTYPE before the tree parser sees it.

    Every entity attack (billion laughs, external entities, external DTDs) needs a DOCTYPE, and
    a product feed never needs one. `iterparse` offers no hook for it, so a second expat parser
    reads the same bytes first, only up to the root element, and stops the feed at
    `<!DOCTYPE` before its internal subset is read.
    """

    def __init__(self, raw: IO[bytes], name: str) -> None:
        self._raw = raw
        self._name = name
        self._prolog: expat.XMLParserType | None = expat.ParserCreate()
        self._prolog.StartDoctypeDeclHandler = self._refuse_doctype
        self._prolog.StartElementHandler = self._root_started

    def _refuse_doctype(self, name: str, *_: object) -> None:
        raise FeedError(f"{self._name}: XML feeds with a DOCTYPE (<!DOCTYPE {name}>) are refused; "
                        f"entity and DTD declarations are not allowed in a product feed")

    def _root_started(self, *_: object) -> None:
        raise _RootStarted

    def read(self, size: int = -1) -> bytes:
        data = self._raw.read(size)
        if self._prolog is not None:
            try:
                self._prolog.Parse(data, not data)
            except _RootStarted:
                self._prolog = None
            except expat.ExpatError as exc:
                raise FeedError(f"{self._name}: malformed XML ({exc})", line=exc.lineno) from None
        return data


def _xml_text(element: ET.Element) -> str:
    return "".join(element.itertext()).strip()


def _xml_item_row(item: ET.Element) -> dict[str, str]:
    """The `g:` fields of one item as a GMC row, RSS/Atom elements filling the gaps."""
    row: dict[str, str] = {}
    plain: dict[str, str] = {}
    for child in item:  # direct children only: `g:shipping` has a `g:price` of its own
        namespace, _, local = child.tag[1:].partition("}") if child.tag.startswith("{") \
            else ("", "", child.tag)
        if namespace == GOOGLE_NS:
            value = _xml_text(child)
            if value and local not in row:
                row[local] = value
        elif namespace == ATOM_NS and local == "link":
            if child.get("rel", "alternate") == "alternate" and child.get("href"):
                plain.setdefault("link", child.get("href", "").strip())
        elif namespace in ("", ATOM_NS) and local in ("title", "description", "summary",
                                                       "content", "link"):
            value = _xml_text(child)
            if value:
                plain.setdefault(local, value)
    for key, fallbacks in (("title", ("title",)), ("link", ("link",)),
                           ("description", ("description", "summary", "content"))):
        found = next((plain[f] for f in fallbacks if f in plain), None)
        if key not in row and found is not None:
            row[key] = found
    return row


def _xml_rows(raw: IO[bytes], name: str, base_url: str | None
              ) -> Iterator[tuple[int, Product | RowError]]:
    open_elements: list[ET.Element] = []
    in_item = 0
    number = 0
    reader = _DoctypeRefusingReader(raw, name)
    for event, element in ET.iterparse(reader, events=("start", "end")):
        if event == "start":
            if not open_elements and element.tag not in XML_ROOTS:
                raise FeedError(f"{name}: not an RSS 2.0 or Atom feed "
                                f"(the root element is <{element.tag}>)")
            open_elements.append(element)
            if element.tag in XML_ITEMS:
                in_item += 1  # an item nested in an item belongs to the outer one
            continue
        open_elements.pop()
        if in_item and element.tag in XML_ITEMS:
            in_item -= 1
            if not in_item:
                number += 1
                yield number, _xml_item(element, number, base_url)
        if not in_item and open_elements:
            # Drop every finished element outside an item, so a feed of a million items
            # never holds more than one of them.
            element.clear()
            open_elements[-1].remove(element)


def _xml_item(item: ET.Element, number: int, base_url: str | None) -> Product | RowError:
    where = f"item {number} (counted in items: the XML parser gives no line)"
    try:
        return _finish(gmc_row_to_product(_xml_item_row(item)), base_url)
    except ValidationError as exc:
        return RowError(number, f"{where}: {validation_reason(exc)}")
    except (ValueError, InvalidInput) as exc:
        return RowError(number, f"{where}: {exc}")


def read_feed(path: Path, *, base_url: str | None = None
              ) -> Iterator[tuple[int, Product | RowError]]:
    """Stream `(line, Product | RowError)` from a feed file.

    For XML feeds the number is the item's position among the feed's items (1, 2, ...), as
    the streaming XML parser gives no line for an item; the rows' reasons say so.

    Args:
        path: a `.jsonl`/`.ndjson`, `.tsv` or `.xml` (RSS 2.0 or Atom with the Google `g:`
            namespace) file, optionally gzip-compressed.
        base_url: links that are site-relative (`/media/x.svg`) are resolved against it;
            without it they make the row invalid.

    Raises:
        FeedError: the file cannot be opened, decompressed or decoded, or is not a feed; an
            XML feed is malformed (the reason has its line) or declares a DOCTYPE.
    """
    fmt = feed_format(path)
    stream: IO[str] | IO[bytes]
    if fmt == "xml":
        stream = _open_bytes(path)
        rows = _xml_rows(stream, path.name, base_url)
    else:
        stream = _open_text(path)
        rows = _jsonl_rows(stream, base_url) if fmt == "jsonl" else _tsv_rows(stream, base_url)
    try:
        yield from rows
    except (OSError, EOFError, zlib.error) as exc:
        raise FeedError(f"{path.name}: cannot read feed ({exc})") from None
    except UnicodeDecodeError:
        raise FeedError(f"{path.name}: not a UTF-8 text feed") from None
    except csv.Error as exc:
        raise FeedError(f"{path.name}: malformed TSV ({exc})") from None
    except ET.ParseError as exc:
        raise FeedError(f"{path.name}: malformed XML ({exc})", line=exc.position[0]) from None
    finally:
        stream.close()
