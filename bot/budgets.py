"""Money in what shoppers write: "até 200 reais", "no máximo R$150", "entre 100 e 200",
"menos de 30 mil pesos", "30 lucas", "under $50", "around 40 bucks".

Amounts are read the way people in these markets write them ("50.000", "1,299.90",
"149,90") and become integer minor units of the currency named, or of the market's.
"""

from __future__ import annotations

import re
from decimal import Decimal, InvalidOperation

from bot.intent import Budget, Intent
from catalog.text import fold
from core.errors import InvalidInput
from core.markets import Market
from core.money import Money, money_from_major

_NUM = r"(\d{1,3}(?:[.,]\d{3})+(?:[.,]\d{1,2})?|\d+(?:[.,]\d{1,2})?)"
_CUR_BEFORE = r"(r\$|us\$|u\$s|\$|brl|ars|cop|usd|mxn|eur|€)"
_CUR_AFTER = (r"(mil\s+pesos|mil\s+reais|reais|real|pesos|peso|dolares|dolar|dollars|dollar|"
              r"bucks|usd|brl|ars|cop|mxn|euros|eur|lucas|luca|mil|k)")
_AMOUNT = rf"(?:{_CUR_BEFORE}\s*)?{_NUM}(?:\s*{_CUR_AFTER}\b)?"

_MAX_WORDS = (r"orcamento de|orcamento|orcamento e de|presupuesto de|presupuesto|budget of|"
              r"budget is|budget|gastar ate|gastar hasta|spend up to|spend|"
              r"ate|no maximo|maximo|max|hasta|como maximo|menos de|menor que|abaixo de|"
              r"debajo de|por debajo de|no mas de|nao mais que|under|below|less than|up to|"
              r"que no pase de|que no pasen de|no pase de|no pasen de|sin pasar de|"
              r"que nao passe de|sem passar de|nao passar de|"
              r"no more than|at most|cheaper than|<=|<")
_MIN_WORDS = r"mais de|acima de|a partir de|mas de|desde|over|above|more than|at least|>=|>"
_AROUND_WORDS = (r"uns|umas|cerca de|por volta de|em torno de|mais ou menos|alrededor de|"
                 r"unos|unas|aproximadamente|aprox|around|about|roughly|approximately|~")

_RANGE_RE = re.compile(rf"(?<![a-z0-9])(?:entre|between|de|from)\s+{_AMOUNT}\s+"
                       rf"(?:e|y|and|a|to|-)\s+{_AMOUNT}")
_BOUND_RE = re.compile(rf"(?<![a-z0-9])(?P<op>{_MAX_WORDS}|{_MIN_WORDS}|{_AROUND_WORDS})\s*"
                       rf"{_AMOUNT}")
# "$50-$100", "R$100 a R$200": a range written with a dash or "a"/"to" between two amounts.
_DASH_RANGE_RE = re.compile(rf"(?<![a-z0-9]){_AMOUNT}\s*(?:-|–|a|to|ate|hasta)\s*{_AMOUNT}")
def _shared_unit(low: tuple[str | None, ...],
                 high: tuple[str | None, ...]) -> tuple[str | None, ...]:
    """"entre 50 y 100 lucas", "de 50 a 100 mil": a range's first amount, written bare, takes
    the unit of the second (thousands, a currency word)."""
    if low[0] is None and low[2] is None and high[2] is not None:
        return (low[0], low[1], high[2])
    return low


_PLAIN_RE = re.compile(rf"(?<![a-z0-9]){_AMOUNT}")
# "like 130 max", "200 no máximo": the ceiling written after the amount.
_POSTFIX_MAX_RE = re.compile(rf"(?<![a-z0-9]){_AMOUNT}\s*(?:max|maximo|no maximo|como maximo|"
                             rf"tops|at most)(?![a-z0-9])")
_SPEND_RE = re.compile(r"(?<![a-z])(?:tengo|tenho|i have|i've got|gastar|gasto|to spend|"
                       r"spend|budget|orcamento|presupuesto|disponho de|dispongo de)\s*$")
_NEGATION_RE = re.compile(r"(?<![a-z])(?:nada|nothing|nao|no|nunca|never|ninguno|nenhum)\s*$")
_MAX_SET = set(_MAX_WORDS.split("|"))
_MIN_SET = set(_MIN_WORDS.split("|"))

MAX_BUDGET_DIGITS = 12  # more than this is not a budget anyone means


def parse_number(text: str) -> Decimal:
    """Read "50.000", "1,299.90", "149,90", "49.95" the way people in these markets write them."""
    s = text
    if "." in s and "," in s:
        dec_sep = "." if s.rfind(".") > s.rfind(",") else ","
        thou_sep = "," if dec_sep == "." else "."
        return Decimal(s.replace(thou_sep, "").replace(dec_sep, "."))
    for sep in (".", ","):
        if sep in s:
            groups = s.split(sep)
            if all(len(g) == 3 for g in groups[1:]):
                return Decimal(s.replace(sep, ""))
            return Decimal(s.replace(sep, "."))
    return Decimal(s)


_AMOUNT_RE = re.compile(r"^\s*(?:r\$|us\$|\$|€|₹)?\s*(\d[\d.,]*)\s*(mil|k|reais|pesos|"
                        r"dolares|dollars|euros|rupees)?\s*$")


def parse_amount(text: str, market: Market) -> Money:
    """An amount the shopper typed alone ("500", "R$ 1.500,50", "30 mil") in the market's
    currency.

    Raises:
        InvalidInput: not an amount, or too large to be one anybody means.
    """
    found = _AMOUNT_RE.match(fold(text))
    if not found or sum(ch.isdigit() for ch in found.group(1)) > MAX_BUDGET_DIGITS:
        raise InvalidInput(f"not an amount: {text!r}")
    try:
        value = parse_number(found.group(1).rstrip(".,"))
    except InvalidOperation:
        raise InvalidInput(f"not an amount: {text!r}") from None
    if found.group(2) in ("mil", "k"):
        value *= 1000
    return money_from_major(value.quantize(Decimal("0.01")), market.currency)


def _currency(before: str | None, after: str | None, market: Market) -> str:
    marker = (before or after or "").replace(" ", "")
    if marker in ("r$", "reais", "real", "brl", "milreais"):
        return "BRL"
    if marker in ("us$", "u$s", "usd", "dolares", "dolar", "dollars", "dollar", "bucks"):
        return "USD"
    if marker in ("eur", "euros", "€"):
        return "EUR"
    if marker in ("ars", "cop", "mxn"):
        return marker.upper()
    return market.currency


def _amount(groups: tuple[str | None, ...], market: Market) -> tuple[int, str] | None:
    before, number, after = groups
    if number is None or sum(ch.isdigit() for ch in number) > MAX_BUDGET_DIGITS:
        return None
    value = parse_number(number)
    unit = (after or "").replace(" ", "")
    if unit in ("mil", "k", "milpesos", "milreais", "lucas", "luca"):
        value *= 1000
    currency = _currency(before, after if unit not in ("mil", "k") else None, market)
    try:
        return money_from_major(value.quantize(Decimal("0.01")), currency).amount, currency
    except InvalidInput:
        return None


def take_budget(s: str, intent: Intent, market: Market) -> str:
    """Read the budget from a folded message into `intent.budget`; returns the message without
    it. Ranges ("entre 100 e 200", "$50-$100"), bounds ("até 200", "under $50", "around 40
    bucks"), a ceiling after the amount ("200 no máximo") and a bare amount someone spends
    ("tengo 20 mil para...")."""
    match = _RANGE_RE.search(s)
    if match:
        low = _amount(_shared_unit(match.groups()[0:3], match.groups()[3:6]), market)
        high = _amount(match.groups()[3:6], market)
        if low and high:
            lo, hi = sorted((low[0], high[0]))
            intent.budget = Budget(currency=high[1], min=lo, max=hi)
            return s[:match.start()] + " " + s[match.end():]
    match = _DASH_RANGE_RE.search(s)
    if match and (match.group(1) or match.group(3) or match.group(4) or match.group(6)):
        low = _amount(_shared_unit(match.groups()[0:3], match.groups()[3:6]), market)
        high = _amount(match.groups()[3:6], market)
        if low and high and low[1] == high[1]:
            lo, hi = sorted((low[0], high[0]))
            intent.budget = Budget(currency=high[1], min=lo, max=hi)
            return s[:match.start()] + " " + s[match.end():]
    match = _BOUND_RE.search(s)
    if match:
        found = _amount(match.groups()[1:4], market)
        if found:
            op = re.sub(r"\s+", " ", match.group("op"))
            amount, currency = found
            # "nada acima de 600", "nothing over $50": a floor ruled out is a ceiling.
            negated = op in _MIN_SET and _NEGATION_RE.search(s[:match.start()])
            if op in _MAX_SET or negated:
                intent.budget = Budget(currency=currency, max=amount)
            elif op in _MIN_SET:
                intent.budget = Budget(currency=currency, min=amount)
            else:  # "around": allow a little above, and not much below
                intent.budget = Budget(currency=currency, min=amount // 2,
                                       max=amount * 115 // 100, amount=amount)
            return s[:match.start()] + " " + s[match.end():]
    match = _POSTFIX_MAX_RE.search(s)
    if match:
        found = _amount(match.groups(), market)
        if found:
            intent.budget = Budget(currency=found[1], max=found[0])
            return s[:match.start()] + " " + s[match.end():]
    for match in _PLAIN_RE.finditer(s):
        before, _, after = match.groups()
        # "10k" or "30 mil" alone is a distance or a count, not money, unless the words
        # before it spend it: "tengo 20 mil para...", "I have 50k for...".
        spent = _SPEND_RE.search(s[:match.start()])
        if before or spent or (after and after.replace(" ", "") not in ("mil", "k")):
            found = _amount(match.groups(), market)
            if found:
                intent.budget = Budget(currency=found[1], max=found[0])
                return s[:match.start()] + " " + s[match.end():]
    return s
