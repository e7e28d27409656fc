"""Revisions, oldest first; Alembic reads them from this folder, not by import."""
