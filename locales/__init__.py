"""Gettext catalogs (en is the source language; pt_BR and es are translations)."""
