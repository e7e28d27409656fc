"""Checkout: orders, one-tap approval, payment rails and payment webhooks."""
