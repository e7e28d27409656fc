"""One module per way a merchant's catalog is reached (feed files today)."""
