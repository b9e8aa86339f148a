# Two commands on a fresh machine: `make dev` and `make test`. Both install what they need.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

# GraphiQL and the console are built from console/ into gateway/static/{graphiql,console}/,
# which the gateway serves and the Python package ships. npm ci runs when the lock file
# changes, the build when any source does; each step leaves a stamp so an unchanged tree
# rebuilds nothing.
CONSOLE := console
CONSOLE_MODULES := $(CONSOLE)/node_modules/.installed
CONSOLE_SOURCES := $(CONSOLE)/package.json $(CONSOLE)/tsconfig.json $(shell find $(CONSOLE)/src -type f)
FRONTEND := gateway/static/.built

# The graphql-http audit suite's npm packages (tests/test_http_audit.py runs it).
HTTP_AUDIT := tests/http_audit
HTTP_AUDIT_MODULES := $(HTTP_AUDIT)/node_modules/.installed

# The browser tests drive Debian's Chromium: installed when missing if make runs as root;
# otherwise it stops with one line saying how to install it.
CHROMIUM := /usr/bin/chromium

.PHONY: dev test lint bench install frontend clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[embedded,test]'
	touch $(STAMP)

$(CONSOLE_MODULES): $(CONSOLE)/package.json $(CONSOLE)/package-lock.json
	@command -v npm >/dev/null || { echo "Building console/ needs Node.js 20.19+ and npm"; exit 1; }
	npm ci --prefix $(CONSOLE) --no-audit --no-fund
	touch $@

$(FRONTEND): $(CONSOLE_MODULES) $(CONSOLE_SOURCES)
	npm run --prefix $(CONSOLE) build
	touch $@

$(HTTP_AUDIT)/node_modules/.installed: $(HTTP_AUDIT)/package-lock.json
	npm ci --prefix $(HTTP_AUDIT) --no-audit --no-fund
	touch $@

$(CHROMIUM):
	@test "$$(id -u)" = 0 || { echo "The browser tests need Debian's chromium: run 'sudo apt-get install chromium', or make test as root"; exit 1; }
	apt-get update
	apt-get install -y --no-install-recommends chromium

install: $(STAMP)

frontend: $(FRONTEND)

dev: $(STAMP) $(FRONTEND)
	$(BIN)/loom dev --seed-demo

test: $(STAMP) $(FRONTEND) $(CHROMIUM) $(HTTP_AUDIT_MODULES)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/pytest -n 2 --dist loadfile

bench: $(STAMP)
	$(BIN)/python bench/http_baseline.py

clean:
	rm -rf $(VENV) .loom $(CONSOLE)/node_modules $(HTTP_AUDIT)/node_modules gateway/static/graphiql
