"""Alembic's environment for Vitrine's migrations.

`core.schema` runs it on a connection it holds (every start of Vitrine, `vitrine db ...`). The
`alembic` command, which developers use to write a revision (see docs/production.md), runs
it with none: it then works on VITRINE_DATABASE_URL and compares against every model.
"""

from alembic import context

from core.schema import foreign_keys_off, run_migrations

config = context.config
connection = config.attributes.get("connection")
if connection is not None:
    run_migrations(context, connection, config.attributes.get("metadata"))
else:
    from core.db import engine_url, make_engine
    from core.settings import get_settings
    from vitrine.runtime import model_metadata

    url = get_settings().database_url
    if context.is_offline_mode():  # `alembic upgrade --sql`: the SQL, for a DBA to run
        context.configure(url=engine_url(url), target_metadata=model_metadata(),
                          literal_binds=True)
        with context.begin_transaction():
            context.run_migrations()
    else:
        engine = make_engine(url)
        try:
            with engine.connect() as connection, foreign_keys_off(connection):
                run_migrations(context, connection, model_metadata())
                connection.commit()
        finally:
            engine.dispose()
