"""Small shared pieces: settings, database engine, money, markets, errors, translations."""
