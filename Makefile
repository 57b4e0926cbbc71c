# tracker: `make run` starts the app with demo data on SQLite; `make test` runs the suite.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
FLASK  := $(VENV)/bin/flask --app wsgi
HOST   ?= 127.0.0.1
PORT   ?= 5000

.PHONY: run test lint format install install-dev clean translations compile-translations bench

BABEL := $(VENV)/bin/pybabel
CATALOGS := tracker/translations

$(PY):
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip

$(VENV)/.installed: requirements.txt | $(PY)
	$(PY) -m pip install --quiet -r requirements.txt
	touch $@

$(VENV)/.installed-dev: requirements-dev.txt $(VENV)/.installed
	$(PY) -m pip install --quiet -r requirements-dev.txt
	touch $@

install: $(VENV)/.installed
install-dev: $(VENV)/.installed-dev

## Extract the marked strings and merge them into the French and Spanish catalogues (then translate the .po files).
translations: $(VENV)/.installed
	$(BABEL) extract -F babel.cfg -k _l -k lazy_gettext --no-location --sort-output --omit-header -o $(CATALOGS)/messages.pot .
	$(BABEL) update -i $(CATALOGS)/messages.pot -d $(CATALOGS) --no-fuzzy-matching --ignore-obsolete

## Build the .mo files the app reads (they are not committed).
compile-translations: $(VENV)/.installed
	$(BABEL) compile -d $(CATALOGS) --statistics

# Where `make run` answers (an IPv6 HOST in brackets).
SERVE_URL = http://$(if $(findstring :,$(HOST)),[$(HOST)],$(HOST)):$(PORT)

## Start the development server on http://$(HOST):$(PORT) with the demo data (SQLite by default).
## Its commands, the scheduler and the server run in the development configuration (without
## TRACKER_CONFIG the app runs as production); the secret key is made once in instance/secret_key.
## Links in mail, the calendar feed and the API point to that address unless TRACKER_BASE_URL is
## set (e.g. to the address other machines use, with HOST=0.0.0.0).
run: export TRACKER_CONFIG = development
run: export TRACKER_BASE_URL := $(or $(TRACKER_BASE_URL),$(SERVE_URL))
run: $(VENV)/.installed compile-translations
	$(FLASK) db upgrade
	$(FLASK) tracker seed-demo --if-empty
	@echo ""
	@echo "  tracker is starting on $(SERVE_URL); its links point to $$TRACKER_BASE_URL"
	@echo "  Sign in as focal.sg@demo.test, reviewer@demo.test, manager@demo.test or admin@demo.test"
	@echo "  with the password demo-password (every demo account is listed above)."
	@echo "  The scheduler runs beside it; without MAIL_SERVER, mail is written to instance/mail/."
	@echo ""
	@# The scheduler is its own process; stop it when the server stops (Ctrl-C).
	@trap 'kill $$scheduler 2>/dev/null' EXIT INT TERM; \
	$(FLASK) tracker scheduler & scheduler=$$!; \
	$(FLASK) run --host $(HOST) --port $(PORT)

## axe-core for the accessibility tests and vnu-jar for the HTML validity test, from package-lock.json.
AXE := node_modules/axe-core/axe.min.js
$(AXE): package.json package-lock.json
	@if command -v npm >/dev/null; then npm ci --no-audit --no-fund && touch $@; \
	else echo "npm is missing: the accessibility tests will be skipped (apt-get install nodejs npm)"; fi

## Run the whole suite on SQLite, and again on PostgreSQL when TEST_DATABASE_URL is set.
test: $(VENV)/.installed-dev compile-translations $(AXE)
	$(VENV)/bin/pytest $(PYTEST_ARGS)

## Measure tracker at N actions (default 12000): SQLite under instance/bench/, or DB=postgresql://…
## (else TEST_DATABASE_URL), which is emptied and rebuilt. Not part of `make test`; see README "Benchmark".
N  ?= 12000
DB ?=
bench: $(VENV)/.installed-dev compile-translations
	$(PY) -m bench --actions $(N) $(if $(DB),--database '$(DB)') $(BENCH_ARGS)

lint: $(VENV)/.installed-dev
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

format: $(VENV)/.installed-dev
	$(VENV)/bin/ruff check --fix .
	$(VENV)/bin/ruff format .

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache node_modules
