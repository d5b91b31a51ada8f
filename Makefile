# Every target sets itself up first: `make setup` is idempotent and cheap when nothing changed.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
# The repo's .venv and node_modules come first, so `cdk` runs on the pinned Node and CLI.
export PATH := $(CURDIR)/$(VENV)/bin:$(CURDIR)/node_modules/.bin:$(PATH)
# mkdocs-material prints a banner about its successor on every build; the pins stay as they are.
export NO_MKDOCS_2_WARNING := 1

.PHONY: setup browser test lint validate synth run bench screenshots docs clean

setup: $(VENV)/.installed node_modules/.installed browser

$(VENV)/.installed: requirements.txt
	@$(PYTHON) -c 'import sys; sys.exit(sys.version_info < (3, 11) and "Python 3.11 or newer is needed; set PYTHON=" or 0)'
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --disable-pip-version-check --upgrade pip==25.3
	$(VENV)/bin/pip install --quiet --disable-pip-version-check -r requirements.txt
	touch $@

# checkov pins its own boto3, which conflicts with requirements.txt's: it gets a virtualenv of its own.
CHECKOV_VENV := .build/checkov
$(CHECKOV_VENV)/.installed: requirements-checkov.txt
	$(PYTHON) -m venv $(CHECKOV_VENV)
	$(CHECKOV_VENV)/bin/pip install --quiet --disable-pip-version-check -r requirements-checkov.txt
	touch $@

node_modules/.installed: package.json package-lock.json
	npm ci --no-audit --no-fund --loglevel=error
	touch $@

# The console's tests and benchmark drive Debian's chromium through its driver. Installed with
# apt where this machine can (as root, or with sudo); elsewhere the tests fail saying what is missing.
CHROMIUM := /usr/bin/chromium
CHROMEDRIVER := /usr/bin/chromedriver
browser:
	@if [ -x $(CHROMIUM) ] && [ -x $(CHROMEDRIVER) ]; then exit 0; fi; \
	if ! command -v apt-get >/dev/null; then \
		echo "install chromium and its driver ($(CHROMIUM), $(CHROMEDRIVER)) for the console's tests"; exit 0; fi; \
	if [ "$$(id -u)" = 0 ]; then SUDO=; else SUDO="sudo -n"; fi; \
	$$SUDO apt-get update -qq && \
	DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq --no-install-recommends chromium chromium-driver

test: setup
	$(PY) -m pytest

lint: setup $(CHECKOV_VENV)/.installed
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .
	$(PY) -m mypy
	@# The layers of runtime/ and cdk_app/ (pyproject.toml); tests/test_layers.py runs it too.
	$(VENV)/bin/lint-imports
	@# cdk-nag runs inside the app: an unacknowledged finding fails this synth. Templates of an
	@# earlier synth go first, so cfn-lint sees only current stacks (the bundled layer stays cached).
	rm -f cdk.out/*.template.json
	cdk synth --quiet
	@# W3005 (DependsOn next to a GetAtt) is how CDK orders a role's policy before its function;
	@# the Atlas trigger's E3006 is ignored on that one resource, in its template metadata.
	$(VENV)/bin/cfn-lint --ignore-checks W3005 -- cdk.out/*.template.json
	@# checkov's CloudFormation checks; every check it skips says why in .checkov.yaml.
	$(CHECKOV_VENV)/bin/checkov --config-file .checkov.yaml --file cdk.out/*.template.json
	@# The docs site: a broken link or anchor, or a page missing from mkdocs.yml's nav, fails.
	$(PY) -m mkdocs build --strict --quiet --site-dir .build/site

validate: setup
	$(PY) -m cdk_app validate

synth: setup
	cdk synth --quiet

# `make run SPEC=workflows/nightly_report.yaml` runs another spec (a path from the repository root),
# `make run INPUT='{"mode": "fast"}'` with a run input (a JSON object).
SPEC ?= workflows/catch_the_fish.yaml
INPUT ?=
run: setup
	$(PY) -m cdk_app run "$(SPEC)"$(if $(INPUT), --input '$(subst ','\'',$(INPUT))')

bench: setup
	$(PY) -m benchmarks

# Rewrites docs/images/console-*.png, the pictures of the console in the README and docs/.
screenshots: setup
	$(PY) scripts/console_screenshots.py

# Serves the docs site (mkdocs.yml, docs/) on http://127.0.0.1:8000/, rebuilt on every edit.
docs: setup
	$(PY) -m mkdocs serve

clean:
	rm -rf cdk.out .build .pytest_cache .mypy_cache .ruff_cache
