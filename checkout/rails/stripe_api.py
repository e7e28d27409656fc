"""What every rail that goes through Stripe shares: its webhook signature, its SDK over an
injected `httpx.Client`, and its errors in Vitrine's terms.

The official `stripe` package makes the API calls; `HttpxTransport` gives it a client whose
timeouts the rail chose and whose transport tests replace (`httpx.MockTransport`), so no
test fakes the library itself.
"""

from __future__ import annotations

import hmac
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any, TypeVar

import httpx
import stripe
from pydantic import BaseModel, Field, ValidationError

from checkout.rails import WebhookRequest, read_event
from checkout.signatures import hmac_sha256_hex
from core.errors import InvalidInput, PayerRefused, PaymentProviderError, SignatureError

SIGNATURE_HEADER = "Stripe-Signature"
TOLERANCE_SECONDS = 300
STRIPE_API = "https://api.stripe.com"
# Stripe's answer when it cannot charge that amount in that currency: the order, not Stripe,
# is at fault, so the shopper hears the rail refused it rather than "try again later".
AMOUNT_CODES = frozenset({"amount_too_small", "amount_too_large", "invalid_charge_amount",
                          "invalid_charge_amount_no_decimal_compatible"})
StripeObject = TypeVar("StripeObject", bound=BaseModel)


def signature_header(*, secret: str, body: bytes, timestamp: int) -> str:
    """The `Stripe-Signature` Stripe sends with `body` (for tests and local replays)."""
    return f"t={timestamp},v1={hmac_sha256_hex(secret, str(timestamp).encode() + b'.' + body)}"


def verify_signature(*, secret: str, header: str | None, body: bytes, now: float,
                     tolerance: int = TOLERANCE_SECONDS) -> None:
    """Check `Stripe-Signature: t=<unix>,v1=<hex>[,v1=<hex>...]` on the raw body.

    Each v1 is hex HMAC-SHA256(secret, f"{t}.{body}"); any one matching passes (Stripe
    signs with every live secret while one is being rolled). `t` must be within
    `tolerance` seconds of `now` either way: a future timestamp is as suspect as an old one.

    Raises:
        SignatureError: missing, malformed (no `t`, more than one, or no v1), no v1 that
            matches, or `t` outside the tolerance.
    """
    if not header:
        raise SignatureError(f"missing {SIGNATURE_HEADER}")
    pairs = [part.strip().partition("=") for part in header.split(",")]
    stamps = [value for key, _, value in pairs if key == "t"]
    # Bytes: compare_digest refuses a str holding anything but ASCII, and a forged one may.
    signatures = [value.encode("utf-8", "replace") for key, _, value in pairs if key == "v1"]
    # Two `t`s would leave which one was signed to the parser: refuse rather than guess.
    if len(stamps) != 1 or not (stamps[0].isascii() and stamps[0].isdigit()) or not signatures:
        raise SignatureError(f"malformed {SIGNATURE_HEADER}")
    expected = hmac_sha256_hex(secret, stamps[0].encode() + b"." + body).encode()
    # Every candidate is compared, so the time taken does not tell which one matched.
    if not any([hmac.compare_digest(expected, given) for given in signatures]):
        raise SignatureError(f"no {SIGNATURE_HEADER} v1 matches")
    if abs(now - int(stamps[0])) > tolerance:
        raise SignatureError(f"{SIGNATURE_HEADER} timestamp is outside the replay window")


class EventData(BaseModel):
    object: dict[str, Any]


class StripeEvent(BaseModel):
    """The envelope of every Stripe webhook; `data.object` is read by each rail."""

    id: str = Field(min_length=1, max_length=200)
    type: str = Field(min_length=1, max_length=200)
    data: EventData


def read_webhook(request: WebhookRequest, *, secret: str,
                 tolerance: int = TOLERANCE_SECONDS) -> StripeEvent:
    """A Stripe webhook, its signature checked before its body is parsed.

    Raises:
        SignatureError: see `verify_signature`; nothing was read.
        InvalidInput: signed, but not a Stripe event.
    """
    verify_signature(secret=secret, header=request.header(SIGNATURE_HEADER),
                     body=request.body, now=request.received_at, tolerance=tolerance)
    return read_event(StripeEvent, request.body)


class HttpxTransport(stripe.HTTPClient):
    """The `stripe` library's HTTP client interface over an `httpx.Client` (its own
    `HTTPXClient` builds a client we could neither configure nor fake).

    A client passed in is the caller's to close; without one, the transport makes its own
    with `timeout` and closes it on `close()`.
    """

    name = "vitrine-httpx"

    def __init__(self, client: httpx.Client | None = None, *,
                 timeout: httpx.Timeout | None = None) -> None:
        super().__init__()
        self.owns_client = client is None
        self.client = client or httpx.Client(timeout=timeout or httpx.Timeout(10.0, connect=5.0))

    def request(self, method: str, url: str, headers: Mapping[str, str] | None,
                post_data: Any = None, *, _usage: list[str] | None = None
                ) -> tuple[str, int, Mapping[str, str]]:
        try:
            response = self.client.request(method, url, headers=headers, content=post_data)
        except httpx.HTTPError as exc:
            raise stripe.APIConnectionError(f"could not reach Stripe: {exc!r}",
                                            should_retry=True) from exc
        return response.text, response.status_code, response.headers

    def request_stream(self, method: str, url: str, headers: Mapping[str, str] | None,
                       post_data: Any = None, *, _usage: list[str] | None = None
                       ) -> tuple[Any, int, Mapping[str, str]]:
        content, status, response_headers = self.request(method, url, headers, post_data)
        return iter([content]), status, response_headers

    def close(self) -> None:
        if self.owns_client:
            self.client.close()


def stripe_client(api_key: str, *, transport: HttpxTransport, api_base: str = STRIPE_API,
                  max_network_retries: int) -> stripe.StripeClient:
    """Stripe's SDK client, speaking to `api_base` through `transport`.

    Every POST a rail sends carries an idempotency key, so the library may retry it.
    """
    return stripe.StripeClient(api_key, base_addresses={"api": api_base},
                               http_client=transport, max_network_retries=max_network_retries)


@contextmanager
def calling_stripe(what: str, *, order_is_input: bool = False,
                   **context: Any) -> Iterator[None]:
    """Translate the SDK's exceptions into Vitrine's, saying what was being done.

    Args:
        what: the call, as in "could not <what>".
        order_is_input: the call carries an order's amount and currency, so Stripe refusing
            those is the order's fault (`InvalidInput`), not the provider's.
        context: kept on the raised error (provider, order, txid...), with Stripe's error
            code, HTTP status and request id.

    Raises:
        InvalidInput: Stripe cannot charge that amount in that currency (`order_is_input`).
        PayerRefused: Stripe refused the payer's name or e-mail (`order_is_input`).
        PaymentProviderError: any other failure: unreachable, refused, or a server error.
    """
    try:
        yield
    except stripe.StripeError as exc:
        context |= {"code": exc.code, "http_status": exc.http_status,
                    "request_id": exc.request_id}
        # Stripe names a nested parameter `line_items[0][price_data][currency]`.
        param = (getattr(exc, "param", None) or "").replace("]", "").rsplit("[", 1)[-1]
        if order_is_input and isinstance(exc, stripe.InvalidRequestError) and (
                exc.code in AMOUNT_CODES or param == "currency"):
            raise InvalidInput(f"Stripe cannot take this order: {exc.user_message}",
                               **context) from exc
        full_param = getattr(exc, "param", None) or ""
        if order_is_input and isinstance(exc, stripe.InvalidRequestError) and (
                "billing_details" in full_param or exc.code == "email_invalid"):
            raise PayerRefused(f"Stripe refused the payer's details: {exc.user_message}",
                               **context) from exc
        raise PaymentProviderError(f"could not {what}: {exc.user_message or exc}",
                                   **context) from exc


def read_answer(model: type[StripeObject], found: stripe.StripeObject,
                **context: Any) -> StripeObject:
    """An object from Stripe's API, checked for the fields a rail reads.

    Raises:
        PaymentProviderError: Stripe answered with something that is not one.
    """
    try:
        return model.model_validate(found.to_dict())
    except ValidationError as exc:
        first = exc.errors()[0]
        raise PaymentProviderError(
            f"Stripe answered with no {model.__name__}: "
            f"{'.'.join(map(str, first['loc']))}: {first['msg']}", **context) from None
