# The two commands of the README:
#   make dev    set up, then run payhook on its embedded default (local Redis, sandbox Shopify,
#               simulator PSP) and send a demo batch of capture sessions
#   make check  set up, then run lint (ruff), types (mypy --strict) and the tests (pytest)
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
DEMO ?= 20

.PHONY: setup promtool wrk chromium dev check lint types test bench bench-quick bench-throughput bench-drain bench-memory bench-fleet bench-dashboard bench-due-summary bench-house clean

$(BIN)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev,bench]'
	touch $@

setup: $(BIN)/.installed

# promtool checks docs/alerts.yml (tests/test_alerts.py). It comes with Debian's prometheus
# package; installing it needs root, and the tests say they skipped when it could not be had.
promtool:
	@command -v promtool >/dev/null 2>&1 || { \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	    export DEBIAN_FRONTEND=noninteractive; \
	    apt-get install -y -qq --no-install-recommends prometheus >/dev/null 2>&1 || \
	      { apt-get update -qq >/dev/null 2>&1 && \
	        apt-get install -y -qq --no-install-recommends prometheus >/dev/null 2>&1; } || \
	      echo "promtool: apt-get could not install prometheus; the alert rule tests will skip"; \
	  else \
	    echo "promtool: not root or no apt-get; install Debian's prometheus package for the alert rule tests"; \
	  fi; \
	}

# wrk is the suite's load generator (Debian's wrk package; installing it needs root). Without
# it the suite falls back to its Python generator and measures that against the bare server.
wrk:
	@command -v wrk >/dev/null 2>&1 || { \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	    export DEBIAN_FRONTEND=noninteractive; \
	    apt-get install -y -qq --no-install-recommends wrk >/dev/null 2>&1 || \
	      { apt-get update -qq >/dev/null 2>&1 && \
	        apt-get install -y -qq --no-install-recommends wrk >/dev/null 2>&1; } || \
	      echo "wrk: apt-get could not install it; the suite uses its Python load generator"; \
	  else \
	    echo "wrk: not root or no apt-get; the suite uses its Python load generator"; \
	  fi; \
	}

# The dashboard's browser tests (tests/integration/test_dashboard_browser.py) drive Debian's
# chromium through chromium-driver; like promtool, installing needs root, and the tests say
# they skipped when it could not be had.
chromium:
	@command -v chromedriver >/dev/null 2>&1 || { \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	    export DEBIAN_FRONTEND=noninteractive; \
	    apt-get install -y -qq --no-install-recommends chromium chromium-driver >/dev/null 2>&1 || \
	      { apt-get update -qq >/dev/null 2>&1 && \
	        apt-get install -y -qq --no-install-recommends chromium chromium-driver >/dev/null 2>&1; } || \
	      echo "chromium: apt-get could not install chromium; the dashboard browser tests will skip"; \
	  else \
	    echo "chromium: not root or no apt-get; install Debian's chromium and chromium-driver for the dashboard browser tests"; \
	  fi; \
	}

dev: setup
	$(BIN)/payhook dev --demo $(DEMO)

check: lint types test

lint: setup
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

types: setup
	$(BIN)/mypy

# The suite mostly waits (on workers, sandboxes and fault timings), so it runs on more
# processes than cores; each has its own redis-server (tests/conftest.py). TEST_WORKERS=0
# runs it in one process.
TEST_WORKERS ?= 4
test: setup promtool chromium
	$(BIN)/pytest -q -n $(TEST_WORKERS) --dist worksteal

# Every figure of docs/performance.md in one bounded run (about 8 minutes; bench-quick about
# 2): bench/results/<timestamp>.json, .md (the tables) and .png.
bench: setup wrk
	$(BIN)/python -m bench.suite

bench-quick: setup wrk
	$(BIN)/python -m bench.suite --quick

bench-throughput: setup
	$(BIN)/python -m bench.throughput

# One `payhook worker` draining 2000 queued captures, Shopify 0/100/300 ms x PSP 20/200 ms.
bench-drain: setup
	$(BIN)/python -m bench.drain

# Redis memory per finished session, and flat memory once retention applies.
bench-memory: setup
	$(BIN)/python -m bench.memory

# A primary and a replica: the replica WAIT's cost at intake, and 2 web + 2 worker processes
# against 1 + 1 on the same 1000 captures (docs/scaling.md).
bench-fleet: setup
	$(BIN)/python -m bench.fleet

# Every dashboard page timed against 20,000 sessions and 500 dead letters.
bench-dashboard: setup
	$(BIN)/python -m bench.dashboard

# One scrape's due-set summary, the old scan against the indexes, at 20,000 and 1,000,000
# sessions due (about a minute, at most three on a busy machine; about 1 GB of Redis).
bench-due-summary: setup
	$(BIN)/python -m bench.due_summary

# The house: each package's modules and lines, the imports between them and any against the
# layers tests/test_layers.py guards, and the modules one capture session stays in from its
# POST to the end of its run, with the Redis commands it costs (a few seconds).
bench-house: setup
	$(BIN)/python -m bench.house

clean:
	rm -rf $(VENV) .payhook .mypy_cache .ruff_cache .pytest_cache
