"""Vitrine's composition root: the runtime, the HTTP app and the command line."""
