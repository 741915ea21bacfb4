# Secure Your Server: `make run` (set up and run with demo data), `make test` (the whole suite).
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
HOST ?= 127.0.0.1
PORT ?= 8000

.PHONY: install catalogues system-deps run test bench lint clean-broker faults

install: $(VENV)/.installed catalogues

# The gettext catalogues (locale/*/LC_MESSAGES/django.po) compiled to .mo, in pure Python.
catalogues: $(VENV)/.installed
	@$(PY) manage.py catalogues compile >/dev/null

$(VENV)/.installed: pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	@$(PY) -m pip install --quiet --upgrade pip 2>/dev/null || true
	@$(PY) -m pip install --quiet -e '.[test]'
	@touch $@

# Fonts and libraries WeasyPrint needs for letters in every language (Noto, CJK included).
# Installed with apt when we may; otherwise we say what is missing and carry on.
system-deps:
	@bash scripts/system-deps.sh

run: install system-deps
	$(PY) manage.py migrate --noinput
	$(PY) manage.py load_demo
	$(PY) manage.py collectstatic --noinput -v0
	@bash scripts/run.sh $(HOST) $(PORT)

# Everything but the fault suite, which kills and restarts processes for minutes on end: it has
# its own target (below) and its own step in CI. Two passes: the tests that share a fixed
# resource (real peers on fixed 127.0.x.y addresses, integration workers on one Redis database)
# run one after another in a pass of their own; everything else on two processes.
test: install
	$(PY) -m pytest -m "not faults and not peers and not integration" $(PYTEST_ARGS)
	$(PY) -m pytest -n 0 -m "(peers or integration) and not faults" $(PYTEST_ARGS)

# Prints one JSON report on stdout (progress goes to stderr). Installs Debian's nmap for the
# side-by-side comparison when it may.
bench: install system-deps
	@bash scripts/bench-deps.sh >&2
	@bash .ci/install-peers.sh >&2 || echo "real peers unavailable: the bench skips them" >&2
	@$(PY) -m bench

# The fault suite on its own: real workers, beat, our own Redis, killed by PID. Progress goes to
# stderr; stdout is one JSON table (queued, sent, duplicated, lost, stuck, time to heal).
faults: install
	@mkdir -p var
	@rm -f var/faults.jsonl
	@FAULTS_REPORT=var/faults.jsonl $(PY) -m pytest tests/faults -m faults -q >&2; \
	status=$$?; \
	$(PY) -c "import json; rows = [json.loads(l) for l in open('var/faults.jsonl')]; print(json.dumps({'faults': rows}, indent=2))"; \
	exit $$status

lint: install
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .
	$(PY) -m mypy
