# The two commands a new machine needs: `make demo` and `make test`.
# Both create .venv and install Vitrine into it first.

PYTHON ?= $(shell command -v python3.11 || command -v python3.12 || command -v python3.13 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp

.PHONY: install demo test lint bench clean locales

$(STAMP): pyproject.toml
	@$(PYTHON) -c 'import sys; assert sys.version_info >= (3, 11), "Vitrine needs Python 3.11 or newer"'
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	@touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(BIN)/vitrine serve

test: lint
	$(BIN)/python -m pytest

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/mypy

bench: $(STAMP)
	$(BIN)/python bench/recommend.py
	$(BIN)/python bench/quality.py

clean:
	rm -rf $(VENV) var .pytest_cache *.egg-info

# Gettext catalogs: extract the strings, merge them into each language's .po (translators
# edit those), and check every one is translated. Vitrine reads the .po files directly.
locales: $(STAMP)
	$(BIN)/pybabel extract -F babel.cfg -k N_ -k gettext -k ngettext:1,2 \
		--ignore-dirs=".venv tests bench" --no-location --sort-output \
		-o locales/messages.pot .
	$(BIN)/pybabel update -i locales/messages.pot -d locales -D messages --no-fuzzy-matching
	$(BIN)/pybabel compile --statistics -d locales -D messages
	rm -f locales/*/LC_MESSAGES/*.mo
