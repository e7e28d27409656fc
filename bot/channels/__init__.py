"""Channels: each turns its platform's messages into `Assistant.handle` calls and back."""
