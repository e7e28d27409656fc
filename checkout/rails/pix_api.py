"""Dynamic Pix charges through the Banco Central's Pix API ("API Pix"), as every payment
service provider (PSP) exposes it: an immediate charge (`cob`) per order, its status, and
the return of its payment (`devolução`).

A dynamic charge expires, carries its amount on the PSP's side and can be looked up and
refunded, which a static BR Code cannot. The PSP's notice of the payment arrives on the
same Pix webhook as static codes' (`PixRail.parse_webhook`), quoting the charge's txid.

The API takes OAuth2 client credentials and, at every PSP, a client certificate (mutual
TLS): pass `cert` or a `client` already holding one.
"""

from __future__ import annotations

import hashlib
import re
import ssl
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

import httpx
from pydantic import BaseModel, Field, ValidationError

from checkout.models import Order
from checkout.rails import PaymentInstructions, RailEvent, RailOutcome, RefundOutcome, RefundResult
from checkout.rails.pix import MAX_AMOUNT_CENTS, PixPayment, cents
from core.errors import InvalidInput, PaymentProviderError, VitrineError
from core.money import Money

PROVIDER = "pix"
API_TXID_LENGTH = 35  # the API takes [a-zA-Z0-9]{26,35}; the longest leaves most digest
REMOVED_BY_US = "REMOVIDA_PELO_USUARIO_RECEBEDOR"
REMOVED = frozenset({REMOVED_BY_US, "REMOVIDA_PELO_PSP"})
REFUND_TAKEN = frozenset({"EM_PROCESSAMENTO", "DEVOLVIDO"})
# Answers that mean the request itself is wrong (the amount, the key, the txid); anything
# else (401, 403, 404, 429, 5xx) is the PSP or our credentials, and retrying may help.
CONTENT_REFUSALS = frozenset({400, 409, 422})
TOKEN_MARGIN_SECONDS = 60.0
Shape = TypeVar("Shape", bound=BaseModel)


def api_txid(txid: str) -> str:
    """The Pix API txid for one of Vitrine's (at most 25 characters, which the API refuses).

    Vitrine's txid followed by the hex SHA-256 of it, cut to 35 characters: the prefix
    keeps the charge searchable by Vitrine's reference at the PSP, and the digest makes
    the result reproducible from the txid alone, with no table of pairs to keep. A txid
    the API already takes (26-35 letters/digits) is used as it is, so deriving twice
    changes nothing.

    Raises:
        InvalidInput: not 1-35 ASCII letters and digits.
    """
    if not re.fullmatch(r"[A-Za-z0-9]{1,35}", txid):
        raise InvalidInput(f"a Pix txid has 1 to 35 letters and digits, not {txid!r}")
    digest = hashlib.sha256(txid.encode()).hexdigest()
    return txid if len(txid) >= 26 else (txid + digest)[:API_TXID_LENGTH]


def is_charge(order: Order) -> bool:
    """Whether the order was paid by an API charge: a static code's txid is too short."""
    return order.txid is not None and 26 <= len(order.txid) <= API_TXID_LENGTH


def refund_id(order_id: str) -> str:
    """The devolução id for an order's refund: the same on every retry, so a refund asked
    twice (a timeout, a second tap) is one refund at the PSP.

    The order id's letters and digits (readable in the PSP's dashboard), "D", then the hex
    SHA-256 of the whole id (ids differing only in dropped characters stay apart), cut to
    the 35 characters the API allows.
    """
    readable = re.sub(r"[^A-Za-z0-9]", "", order_id)[:19]
    return (readable + "D" + hashlib.sha256(order_id.encode()).hexdigest())[:API_TXID_LENGTH]


class Calendar(BaseModel):
    criacao: datetime | None = None
    expiracao: int = Field(default=86400, ge=1)


class ChargeAmount(BaseModel):
    original: str = ""


class Charge(BaseModel):
    """A `cob` as the API returns it; only what Vitrine reads."""

    txid: str
    status: str
    calendario: Calendar = Field(default_factory=Calendar)
    valor: ChargeAmount = Field(default_factory=ChargeAmount)
    pixCopiaECola: str | None = None
    pix: list[PixPayment] = Field(default_factory=list)


class Devolucao(BaseModel):
    id: str
    status: str
    motivo: str | None = None


class Token(BaseModel):
    access_token: str = Field(min_length=1)
    expires_in: int = Field(gt=0)


class PixApi:
    """One PSP's Pix API for one Pix key: creates charges, reads them, returns payments.

    Args:
        base_url: the PSP's API root (`/oauth/token` and `/v2/...` hang from it).
        client_id, client_secret: the OAuth2 client credentials the PSP issued.
        key: the receiving Pix key (registered at this PSP) every charge pays into.
        expires_in: how long the shopper has to pay a charge.
        scope: the OAuth2 scopes to ask for, for PSPs that want them named.
        cert: (certificate file, key file) for mutual TLS, used when no `client` is given.
        client: an `httpx.Client` (its timeouts, its certificate); the caller closes it.
        clock: Unix time, for the token's lifetime and the charge's expiry.
    """

    def __init__(self, *, base_url: str, client_id: str, client_secret: str, key: str,
                 expires_in: timedelta = timedelta(hours=1), scope: str | None = None,
                 cert: tuple[str, str] | None = None, client: httpx.Client | None = None,
                 clock: Callable[[], float] = time.time) -> None:
        self.base_url = base_url.rstrip("/")
        self.client_id = client_id
        self.client_secret = client_secret
        self.key = key
        self.expires_in = expires_in
        self.scope = scope
        self.owns_client = client is None
        self.client = client or _default_client(cert)
        self.clock = clock
        self._token: str | None = None
        self._token_until = 0.0
        self._token_lock = threading.Lock()  # the sweep and a confirmation may race

    def close(self) -> None:
        if self.owns_client:
            self.client.close()

    def initiate(self, order: Order, *, txid: str) -> PaymentInstructions:
        """Create the order's charge (`PUT /v2/cob/{txid}`).

        Raises:
            InvalidInput: not BRL, an amount the API cannot carry, or the PSP refused the
                charge's content.
            PaymentProviderError: the PSP could not be reached or failed.
        """
        if order.currency != "BRL":
            raise InvalidInput(f"Pix charges BRL only, not {order.currency}")
        if not 0 < order.total <= MAX_AMOUNT_CENTS:
            raise InvalidInput("a Pix amount is between R$ 0,01 and R$ 9.999.999.999,99")
        charge_txid = api_txid(txid)
        body = {
            "calendario": {"expiracao": int(self.expires_in.total_seconds())},
            # Money.to_decimal is exact: 14990 centavos is "149.90", never through a float.
            "valor": {"original": format(Money(order.total, "BRL").to_decimal(), "f")},
            "chave": self.key,
            # Shown by the payer's Brazilian bank app, like a BR Code's fields: Portuguese.
            "solicitacaoPagador": f"Pedido {order.id} - {order.merchant_name}"[:140],
        }
        try:
            charge = _read(Charge, self._call("PUT", f"/v2/cob/{charge_txid}", json=body,
                                              txid=charge_txid, refused=InvalidInput))
        except InvalidInput as refused:
            # A txid is unique at the PSP: a second tap, or a retry after a lost answer,
            # finds the charge already made. The same one, still open, is the answer.
            found = self._existing(charge_txid, body)
            if found is None:
                raise refused
            charge = found
        if charge.txid != charge_txid or not charge.pixCopiaECola:
            raise PaymentProviderError("the Pix API answered without this charge's code",
                                       provider=PROVIDER, txid=charge_txid)
        created = _utc(charge.calendario.criacao) or self._now()
        return PaymentInstructions(
            rail=PROVIDER, status="awaiting_payment", txid=charge_txid,
            copy_code=charge.pixCopiaECola, qr=charge.pixCopiaECola,
            expires_at=created + timedelta(seconds=charge.calendario.expiracao),
            provider_ref=charge_txid)

    def charge(self, txid: str) -> Charge:
        """The charge as the PSP has it now (`GET /v2/cob/{txid}`)."""
        return _read(Charge, self._call("GET", f"/v2/cob/{txid}", txid=txid))

    def _existing(self, charge_txid: str, body: dict[str, Any]) -> Charge | None:
        """The open charge already made for this txid with this amount, if any."""
        try:
            found = _read(Charge, self._call("GET", f"/v2/cob/{charge_txid}",
                                             txid=charge_txid))
        except (PaymentProviderError, InvalidInput):
            return None
        if found.status != "ATIVA" or found.valor.original != body["valor"]["original"]:
            return None
        return found

    def status(self, order: Order) -> RailEvent | None:
        """The charge's outcome: paid (named by the payment's end-to-end id, as the PSP's
        notice names it, so the two apply once), removed or expired, or None while open."""
        if not is_charge(order):
            return None  # a static code's: only the PSP's notice tells
        charge = self.charge(order.txid or "")
        if charge.status == "CONCLUIDA":
            paid = self._payment(charge)
            return RailEvent(event_id=paid.endToEndId, txid=charge.txid,
                             outcome=RailOutcome.CAPTURED, amount=paid_cents(paid),
                             currency="BRL", provider_ref=paid.endToEndId)
        if charge.status in REMOVED:
            created = _utc(charge.calendario.criacao)
            expired = created is not None and self._now() >= created + timedelta(
                seconds=charge.calendario.expiracao)
            return RailEvent(event_id=f"{charge.txid}:{charge.status}", txid=charge.txid,
                             outcome=RailOutcome.FAILED,
                             reason="expired" if expired else "removed",
                             provider_ref=charge.txid)
        return None  # ATIVA: the shopper may still pay

    def cancel(self, order: Order) -> bool:
        """Remove the order's open charge (`PATCH /v2/cob/{txid}` to
        `REMOVIDA_PELO_USUARIO_RECEBEDOR`), so that its code can no longer be paid.

        Returns:
            True once the charge is removed (or already was: by an earlier call, or by the
            PSP when it expired), or when the order has no code yet; False for an order
            paid by static code, which no API call can void.

        Raises:
            PaymentProviderError: the PSP could not be reached, failed, or refused because
                the charge was paid (`CONCLUIDA`) meanwhile.
        """
        if order.txid is None:
            return True  # no code was ever shown
        if not is_charge(order):
            return False
        context: dict[str, Any] = {"provider": PROVIDER, "order": order.id, "txid": order.txid}
        try:
            charge = _read(Charge, self._call(
                "PATCH", f"/v2/cob/{order.txid}", json={"status": REMOVED_BY_US},
                txid=order.txid, refused=InvalidInput))
        except InvalidInput as refused:
            # The API only removes an ATIVA charge, and PSPs word the refusal each their
            # own way: the charge itself says whether it was paid or is already gone.
            charge = self.charge(order.txid)
            if charge.status not in REMOVED | {"CONCLUIDA"}:
                raise PaymentProviderError(refused.reason, **refused.context) from refused
        if charge.status == "CONCLUIDA":
            raise PaymentProviderError("the Pix charge was paid before it could be removed",
                                       status=charge.status, **context)
        if charge.status not in REMOVED:
            raise PaymentProviderError(f"the PSP left the Pix charge {charge.status}",
                                       status=charge.status, **context)
        return True

    def refund(self, order: Order) -> RefundResult:
        """Return the order's payment (`PUT /v2/pix/{e2eid}/devolucao/{id}`), under an id
        derived from the order so that asking again never returns the money twice.

        Raises:
            PaymentProviderError: no payment to return, the PSP refused or failed.
        """
        if not is_charge(order):
            # Paid with a static code (before the API was configured): the PSP returns it
            # at the merchant's request, as without the API.
            return RefundResult(RefundOutcome.NOT_SUPPORTED)
        paid = self._payment(self.charge(order.txid or ""))
        back_id = refund_id(order.id)
        if any(back.id == back_id and back.status in REFUND_TAKEN for back in paid.devolucoes):
            return RefundResult(RefundOutcome.REFUNDED, provider_ref=back_id)
        body = {"valor": format(Money(order.total, "BRL").to_decimal(), "f")}
        back = _read(Devolucao, self._call(
            "PUT", f"/v2/pix/{paid.endToEndId}/devolucao/{back_id}", json=body,
            txid=order.txid))
        if back.status not in REFUND_TAKEN:
            raise PaymentProviderError(
                f"the PSP did not return the Pix payment: {back.status} {back.motivo or ''}",
                provider=PROVIDER, order=order.id, txid=order.txid)
        return RefundResult(RefundOutcome.REFUNDED, provider_ref=back_id)

    def access_token(self, *, renew: bool = False) -> str:
        """A bearer token, fetched with the client credentials and reused until shortly
        before it expires (every call would otherwise cost a second round trip)."""
        with self._token_lock:
            if self._token and not renew and self.clock() < self._token_until:
                return self._token
            form = {"grant_type": "client_credentials"} | (
                {"scope": self.scope} if self.scope else {})
            response = self._send("POST", "/oauth/token", txid=None, data=form,
                                  auth=(self.client_id, self.client_secret))
            # Refused credentials are ours to fix, not the shopper's: PaymentProviderError.
            token = _read(Token, _checked(response, refused=PaymentProviderError, context={
                "provider": PROVIDER, "request": "POST /oauth/token"}))
            # Renew a minute early (half the lifetime for short ones): a token that expires
            # in flight turns a good request into a 401.
            margin = min(TOKEN_MARGIN_SECONDS, token.expires_in / 2)
            self._token, self._token_until = token.access_token, \
                self.clock() + token.expires_in - margin
            return self._token

    def _payment(self, charge: Charge) -> PixPayment:
        if charge.status != "CONCLUIDA" or not charge.pix:
            raise PaymentProviderError(f"the Pix charge is {charge.status}, with no payment",
                                       provider=PROVIDER, txid=charge.txid)
        return charge.pix[0]  # a cob is paid once; the API lists that payment in `pix`

    def _call(self, method: str, path: str, *, txid: str | None,
              refused: type[VitrineError] = PaymentProviderError,
              **kwargs: Any) -> object:
        """One authorised call, its JSON answer. A 401 gets one fresh token (the PSP may
        have revoked ours early); a content refusal raises `refused`."""
        for renew in (False, True):
            headers = {"Authorization": f"Bearer {self.access_token(renew=renew)}"}
            response = self._send(method, path, txid=txid, headers=headers, **kwargs)
            if response.status_code != 401:
                break
        return _checked(response, refused=refused, context={
            "provider": PROVIDER, "txid": txid, "request": f"{method} {path}"})

    def _send(self, method: str, path: str, *, txid: str | None,
              **kwargs: Any) -> httpx.Response:
        try:
            return self.client.request(method, self.base_url + path, **kwargs)
        except httpx.HTTPError as exc:
            reason = "did not answer in time" if isinstance(exc, httpx.TimeoutException) \
                else f"could not be reached: {exc!r}"
            raise PaymentProviderError(f"the Pix API {reason}", provider=PROVIDER, txid=txid,
                                       request=f"{method} {path}") from exc

    def _now(self) -> datetime:
        return datetime.fromtimestamp(self.clock(), UTC)


def paid_cents(paid: PixPayment) -> int:
    """A payment's amount in centavos; a malformed one is the PSP's fault, not the order's."""
    try:
        return cents(paid.valor)
    except InvalidInput as exc:
        raise PaymentProviderError(exc.reason, provider=PROVIDER, txid=paid.txid) from None


def _default_client(cert: tuple[str, str] | None) -> httpx.Client:
    timeout = httpx.Timeout(10.0, connect=5.0)
    if cert is None:
        return httpx.Client(timeout=timeout)
    context = ssl.create_default_context()
    context.load_cert_chain(*cert)
    return httpx.Client(timeout=timeout, verify=context)


def _problem(response: httpx.Response) -> str:
    """The API's error (RFC 7807 `title`, `detail`, `violacoes`) in one line, for the logs."""
    try:
        body = response.json()
        parts = [body.get("title"), body.get("detail"), *(
            f"{v['propriedade']}: {v['razao']}" for v in body.get("violacoes") or [])]
    except (ValueError, AttributeError, TypeError, KeyError):
        parts = []
    return " - ".join(str(part) for part in parts if part)[:300] or response.text[:300]


def _checked(response: httpx.Response, *, refused: type[VitrineError],
             context: dict[str, Any]) -> object:
    """The answer's JSON, or its failure as Vitrine's exception."""
    if response.status_code in CONTENT_REFUSALS:
        raise refused(f"the Pix API refused {context['request']}: {_problem(response)}",
                      http_status=response.status_code, **context)
    if response.is_error:
        raise PaymentProviderError(
            f"the Pix API answered {response.status_code}: {_problem(response)}",
            http_status=response.status_code, **context)
    try:
        return response.json()
    except ValueError:
        raise PaymentProviderError("the Pix API answered with something not JSON",
                                   **context) from None


def _read(model: type[Shape], found: object) -> Shape:
    try:
        return model.model_validate(found)
    except ValidationError as exc:
        first = exc.errors()[0]
        raise PaymentProviderError(
            f"not a Pix API {model.__name__}: {'.'.join(map(str, first['loc']))}: "
            f"{first['msg']}", provider=PROVIDER) from None


def _utc(moment: datetime | None) -> datetime | None:
    """The API writes RFC 3339 with an offset; a PSP that leaves it out means UTC."""
    return moment.replace(tzinfo=UTC) if moment and not moment.tzinfo else moment
