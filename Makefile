# The two commands: `make up` runs revloop on embedded defaults; `make test` runs the test suite.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
# The real-browser test drives Debian's Chromium (never a downloaded browser).
CHROMIUM ?= /usr/bin/chromium
SUDO   := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
APT    := DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get

.PHONY: up test eval install browser clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e '.[test]'
	touch $(STAMP)

install: $(STAMP)

$(CHROMIUM):
	$(APT) install -y -qq chromium chromium-driver >/dev/null || \
	  ($(APT) update -qq && $(APT) install -y -qq chromium chromium-driver >/dev/null)

browser: $(CHROMIUM)

## Install, migrate, seed a demo if the database is empty, start API + worker + review app.
up: install
	$(BIN)/revloop up

## Install what the tests need (Python packages, Debian Chromium) and run them (SQLite and PostgreSQL),
## on PYTEST_WORKERS processes (pytest-xdist; a file's tests stay on one worker).
PYTEST_WORKERS ?= 2
test: install browser
	$(BIN)/ruff check .
	$(BIN)/python -m pytest -n $(PYTEST_WORKERS) --dist loadfile $(PYTEST_ARGS)
	$(MAKE) eval

## Run the offline eval suites; exits non-zero when a suite misses its thresholds.
eval: install
	$(BIN)/revloop eval run all

clean:
	rm -rf $(VENV) var build *.egg-info
