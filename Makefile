# The two commands a new machine needs: `make demo` and `make test`.
# Both create .venv and install Vitrine into it first.

PYTHON ?= $(shell command -v python3.11 || command -v python3.12 || command -v python3.13 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp

.PHONY: install demo test test-postgres require-test-database-url lint bench clean \
	locales locales-extract locales-update locales-compile

# Compiled translations (`.mo`), built from the `.po` files translators edit; not committed.
CATALOGS := $(patsubst %.po,%.mo,$(wildcard locales/*/LC_MESSAGES/messages.po))

$(STAMP): pyproject.toml
	@$(PYTHON) -c 'import sys; assert sys.version_info >= (3, 11), "Vitrine needs Python 3.11 or newer"'
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	@touch $(STAMP)

install: $(STAMP)

demo: $(STAMP) $(CATALOGS)
	VITRINE_LOG_FORMAT=$${VITRINE_LOG_FORMAT:-text} $(BIN)/vitrine serve

test: lint $(CATALOGS)
	$(BIN)/python -m pytest

# The same suite against PostgreSQL: each test gets a database of its own, made on the server
# VITRINE_TEST_DATABASE_URL names (its role must be allowed to CREATE DATABASE) and dropped
# after it. Extra pytest arguments go in PYTEST_ARGS.
test-postgres: require-test-database-url $(STAMP) $(CATALOGS)
	$(BIN)/python -m pytest $(PYTEST_ARGS)

require-test-database-url:
	@test -n "$$VITRINE_TEST_DATABASE_URL" || { \
		echo "make test-postgres: set VITRINE_TEST_DATABASE_URL to a PostgreSQL server whose" \
			"role may CREATE DATABASE, e.g." \
			"postgresql+psycopg://vitrine:vitrine@127.0.0.1:5432/vitrine" >&2; exit 2; }

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/mypy

bench: $(STAMP)
	$(BIN)/python bench/recommend.py
	$(BIN)/python bench/quality.py

clean:
	rm -rf $(VENV) var .pytest_cache *.egg-info $(CATALOGS)

locales/%/LC_MESSAGES/messages.mo: locales/%/LC_MESSAGES/messages.po $(STAMP)
	$(BIN)/pybabel compile -d locales -D messages -l $*

# Gettext catalogs: extract the strings into the template, merge it into each language's
# .po (translators edit those), compile them; `make locales` does all three and shows how
# much of each language is translated.
locales-extract: $(STAMP)
	$(BIN)/pybabel extract -F babel.cfg -k N_ -k gettext -k ngettext:1,2 \
		--ignore-dirs=".venv tests bench" --no-location --sort-output \
		-o locales/messages.pot .

locales-update: locales-extract
	$(BIN)/pybabel update -i locales/messages.pot -d locales -D messages --no-fuzzy-matching

locales-compile: $(STAMP)
	$(BIN)/pybabel compile --statistics -d locales -D messages

locales: locales-update
	$(MAKE) locales-compile
