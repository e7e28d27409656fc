"""Vitrine's exceptions: real failures only; expected outcomes are values.

    VitrineError
    ├── InvalidInput            bad input from a shopper, merchant or operator (has a reason)
    │   ├── PayerRefused        a payment provider refused the payer's name or e-mail
    │   ├── UnknownMarket
    │   └── FeedError           a file that is not a readable product feed
    ├── NotFound                a merchant, product, checkout or order that does not exist
    ├── SignatureError          a webhook whose signature does not verify
    ├── AdapterError            a merchant's catalog could not be reached or answered badly
    │   └── AdapterTimeout      ... or did not answer before the deadline
    └── PaymentProviderError    a payment provider could not be reached or refused a request
"""

from __future__ import annotations

from typing import Any


class VitrineError(Exception):
    """Root of every exception Vitrine raises on purpose; carries context for the logs."""

    def __init__(self, reason: str, **context: Any) -> None:
        super().__init__(reason)
        self.reason = reason
        self.context = context


class InvalidInput(VitrineError):
    """The input cannot be used; `reason` says why in words a caller can act on."""


class PayerRefused(InvalidInput):
    """A payment provider refused the payer's name or e-mail: ask the shopper again."""


class UnknownMarket(InvalidInput):
    """A market code that Vitrine has no configuration for."""


class FeedError(InvalidInput):
    """A file or payload that is not a product feed Vitrine can read."""


class NotFound(VitrineError):
    """A merchant, product, checkout or order that does not exist."""


class SignatureError(VitrineError):
    """A webhook whose signature is missing or does not verify."""


class AdapterError(VitrineError):
    """A merchant's catalog could not be reached or answered with an error."""


class AdapterTimeout(AdapterError):
    """A merchant's catalog did not answer before the deadline."""


class PaymentProviderError(VitrineError):
    """A payment provider could not be reached, or refused a request it should take."""
