# The two commands: `make run` (everything, embedded defaults) and `make test` (the whole suite, CI's
# command). `make test-fast` is the inner loop: lint, types, and the suite without browser or slow tests.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

# The suite runs against the real servers on this machine unless told otherwise.
test test-fast typecheck check-services fuzz: export DATABASE_URL ?= postgres://postgres@127.0.0.1:5432/test
test test-fast typecheck check-services fuzz: export REDIS_URL ?= redis://127.0.0.1:6379/0

.PHONY: run test test-fast typecheck fuzz lint format venv system-deps check-services clean

$(STAMP): requirements.txt requirements-dev.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements-dev.txt
	touch $(STAMP)

venv: $(STAMP)

# Debian packages the tests drive: headless Chromium (admin browser tests), docker-compose
# (validates docker-compose.yml without an engine) and dovecot-imapd (the IMAP server the reply
# poller's tests start on their own port, tests/tracking/test_imap.py). Installed only when missing.
system-deps:
	@missing=""; \
	command -v chromium >/dev/null 2>&1 || missing="$$missing chromium"; \
	command -v docker-compose >/dev/null 2>&1 || missing="$$missing docker-compose"; \
	test -x /usr/lib/dovecot/imap || missing="$$missing dovecot-imapd"; \
	if [ -n "$$missing" ]; then \
	  echo "Installing Debian packages:$$missing"; \
	  SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq $$missing >/dev/null; \
	fi

check-services: $(STAMP)
	$(PY) scripts/check_services.py

# Migrations are generated code and skipped by ruff's config, except those holding hand-written
# code (RunPython, RunSQL): those are linted here, long lines allowed.
MIGRATIONS_WITH_CODE = $(shell grep -l -E 'RunPython|RunSQL' */migrations/0*.py)

lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff check --extend-ignore E501 $(MIGRATIONS_WITH_CODE)
	$(VENV)/bin/ruff format --check .

# mypy with the Django and DRF plugins on every application module (pyproject.toml [tool.mypy]:
# the app packages, migrations excluded); incremental, its cache in .mypy_cache (git-ignored).
typecheck: $(STAMP)
	$(VENV)/bin/mypy

format: $(STAMP)
	$(VENV)/bin/ruff check --fix .
	$(VENV)/bin/ruff format .

# Two processes (pytest-xdist), one per core, each a test installation of its own (its own test
# database, Redis key prefix and queue names: campaigns_project/test_settings.py); a file's tests
# stay together in one process. TEST_WORKERS=0 runs them in this process.
TEST_WORKERS ?= 2
test: $(STAMP) system-deps check-services lint typecheck
	$(VENV)/bin/pytest -p no:cacheprovider --create-db -n $(TEST_WORKERS) --dist loadfile

# No browser, no slow end-to-end tests (processes started, servers killed, the long fuzz).
test-fast: $(STAMP) check-services lint typecheck
	$(VENV)/bin/pytest -p no:cacheprovider -n $(TEST_WORKERS) --dist loadfile -m "not browser and not slow and not faults" --ignore=tests/browser

# The long fuzz run: schemathesis with more examples and the stateful phase, random seed, against
# gunicorn on its own port and database (scripts/fuzz.py). `make test` runs a short one.
FUZZ_EXAMPLES ?= 100
FUZZ_MAX_TIME ?= 900
fuzz: $(STAMP) check-services
	$(PY) scripts/fuzz.py --max-examples $(FUZZ_EXAMPLES) --stateful --max-time $(FUZZ_MAX_TIME)

# Runs web + worker + beat on SQLite, a reachable Redis or an embedded one, and the sandboxes.
run: $(STAMP)
	$(PY) scripts/run_embedded.py

clean:
	rm -rf $(VENV) db.sqlite3 .run staticfiles
