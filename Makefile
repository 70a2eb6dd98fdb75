# Two commands do everything on a fresh machine with Python 3.11 and make:
#   make run    install, generate the demo data if absent, materialize the whole graph, print where outputs are
#   make test   install and run the tests
SHELL := /bin/bash
PYTHON ?= python3.11
VENV := .venv
PY := $(VENV)/bin/python
UV_VERSION := 0.13.9
SOURCE ?=
TRAIN_END ?=
WEIGHTS ?=
WINDOWS ?=
MODELS ?=
DEMO_SIZE ?= small
# the address the servers (dev, mlflow) bind to: loopback, unless given on the command line
# (make dev HOST=0.0.0.0); a HOST exported in the environment is ignored
ifneq ($(origin HOST),command line)
HOST := 127.0.0.1
endif
export DAGSTER_HOME := $(CURDIR)/data/dagster_home
export FORECASTING_ASSETS_HOME := $(CURDIR)
# the installer's downloads and temporary files stay inside the project too (uv's default cache is in $HOME,
# and it leaves lock files in /tmp); export UV_CACHE_DIR to share one cache between clones
export UV_CACHE_DIR ?= $(CURDIR)/data/.cache/uv
INSTALL_TMP := $(CURDIR)/data/.cache/install-tmp

.PHONY: install run test dev mlflow demo lock dagster-home clean-outputs bench-accuracy chromium audit docs bench-soak bench-load bench-scale bench-nightly postgresql

# --compile-bytecode: where PYTHONDONTWRITEBYTECODE is set (as on our CI machine), nothing would ever write the
# .pyc files, and every process — each run worker, code server, test subprocess — would compile dagster,
# pandas & co. from source again: 5 s instead of 2.2 s per import of the code location
$(VENV)/.installed: pyproject.toml requirements.lock
	@command -v $(PYTHON) >/dev/null || { echo "need $(PYTHON) (set PYTHON=...)"; exit 1; }
	$(PYTHON) -m venv $(VENV)
	@mkdir -p $(INSTALL_TMP)
	TMPDIR=$(INSTALL_TMP) $(VENV)/bin/pip install --quiet --disable-pip-version-check --no-cache-dir uv==$(UV_VERSION)
	TMPDIR=$(INSTALL_TMP) $(VENV)/bin/uv pip sync --quiet --compile-bytecode --python $(PY) requirements.lock
	TMPDIR=$(INSTALL_TMP) $(VENV)/bin/uv pip install --quiet --python $(PY) --no-deps -e .
	touch $@

install: $(VENV)/.installed

# the instance's storage is created here, once: two processes creating it at once (the webserver and the
# daemon of `make dev`) can stamp its schema twice and break every later run (dagster-io/dagster#27390)
# DAGSTER_YAML=deploy/postgres/dagster.yaml (with DAGSTER_HOME=<another folder>) keeps the instance in PostgreSQL
DAGSTER_YAML ?= dagster.yaml
dagster-home: install
	@mkdir -p $(DAGSTER_HOME)
	@cp $(DAGSTER_YAML) $(DAGSTER_HOME)/dagster.yaml
	@$(PY) -c "import dagster; dagster.DagsterInstance.get().dispose()"

data/demo/sales.csv: | install
	$(PY) -m forecasting_assets.demo_data --out data/demo --size $(DEMO_SIZE)

demo: data/demo/sales.csv

# SOURCE=path/to/folder runs on any source folder (M5 wide or long format); TRAIN_END=YYYY-MM-DD holds
# out the data after it and scores the forecasts on it; WEIGHTS=path/to/weights.csv uses M5 weights;
# WINDOWS=N backtests on N rolling-origin windows (default 3) to choose the strategy and reconciliation;
# MODELS=N averages N LightGBM models per strategy, each with its own seed (default 3; 1 fits three times faster).
run: install dagster-home $(if $(SOURCE),,demo)
	FORECASTING_SOURCE="$(SOURCE)" FORECASTING_TRAIN_END="$(TRAIN_END)" FORECASTING_WEIGHTS="$(WEIGHTS)" \
		FORECASTING_BACKTEST_WINDOWS="$(WINDOWS)" FORECASTING_LIGHTGBM_MODELS="$(MODELS)" $(VENV)/bin/dagster job execute -m forecasting_assets.definitions -j full_pipeline_job
	$(PY) -m forecasting_assets.report

# the daemon end-to-end test (webserver, daemon, browser) runs in its own pytest process; plain `pytest` leaves it out
test: install dagster-home chromium postgresql
	$(VENV)/bin/pytest -q
	$(VENV)/bin/pytest -q -m daemon --basetemp=data/.pytest-tmp-daemon

# Debian's PostgreSQL server binaries for the deployment tests (a throwaway server on 127.0.0.1 holds the Dagster
# instance; the Celery worker test runs on it); where apt-get cannot install them, those tests skip with the reason
postgresql:
	@ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || ! command -v apt-get >/dev/null 2>&1 || { \
		if [ "$$(id -u)" = 0 ]; then sudo=""; else sudo="sudo -n"; fi; \
		echo "installing Debian's postgresql for the deployment tests"; \
		( DEBIAN_FRONTEND=noninteractive $$sudo apt-get update -qq && \
		  DEBIAN_FRONTEND=noninteractive $$sudo apt-get install -y -qq --no-install-recommends postgresql ) >/dev/null 2>&1 \
		|| echo "could not install postgresql: the PostgreSQL and Celery deployment tests will skip"; }

# Debian's chromium for the browser test (Playwright drives it; no browser download). Where apt-get cannot
# install it (no root, no Debian), the browser test skips and says why.
chromium:
	@command -v chromium >/dev/null 2>&1 || ! command -v apt-get >/dev/null 2>&1 || { \
		if [ "$$(id -u)" = 0 ]; then sudo=""; else sudo="sudo -n"; fi; \
		echo "installing Debian's chromium for the browser test"; \
		( DEBIAN_FRONTEND=noninteractive $$sudo apt-get update -qq && \
		  DEBIAN_FRONTEND=noninteractive $$sudo apt-get install -y -qq chromium ) >/dev/null 2>&1 \
		|| echo "could not install chromium: the browser test will skip"; }

# the UI and the daemon (schedules and sensors live) on http://127.0.0.1:3000
dev: install dagster-home
	$(VENV)/bin/dagster dev -w workspace.yaml -h $(HOST) -p 3000

mlflow: install
	$(VENV)/bin/mlflow ui --host $(HOST) --port 5000 --backend-store-uri sqlite:///$(CURDIR)/data/mlflow.db

# M5 accuracy: the graph on ../shared/data/m5 trained to d_$(CUTOFF), scored on the next 28 days
CUTOFF ?= 1913
bench-accuracy: install
	$(PY) -m forecasting_assets.benchmarks.m5_accuracy --cutoff $(CUTOFF) --horizon 28 --out data/bench/m5_accuracy

# REFRESHES nightly refreshes back to back on tiny demo data (one new landed day each, one process):
# prints time, memory, files and rows per refresh and what grew; figures in data/bench/soak.json
REFRESHES ?= 20
bench-soak: install
	$(PY) -m forecasting_assets.benchmarks.soak --refreshes $(REFRESHES) --out data/bench/soak

# what loading the code location costs on top of `import dagster` (fresh processes, side by side; target 1.5 s)
bench-load: install
	$(PY) -m forecasting_assets.benchmarks.load_time --repeats 7

# the whole graph at growing sizes (M5-shaped demo data; SIZES=30490 runs the M5 size alone); figures in
# data/bench/scale.json, the project homes under data/bench/scale/n<size>/ (kept for bench-nightly)
SIZES ?= 1000,5000,30490
bench-scale: install
	$(PY) -m forecasting_assets.benchmarks.scale --sizes $(SIZES)

# one new day into the materialized project of size NIGHTLY_SIZE (run bench-scale for that size first)
NIGHTLY_SIZE ?= 30490
bench-nightly: install
	$(PY) -m forecasting_assets.benchmarks.nightly --size $(NIGHTLY_SIZE)

# re-resolve the pinned dependency set into the lock file
lock: install
	TMPDIR=$(INSTALL_TMP) $(VENV)/bin/uv pip compile pyproject.toml --extra dev --python-version 3.11 -o requirements.lock

# known vulnerabilities of the locked dependencies: pip-audit asks PyPI's JSON API (pypi.org/pypi/NAME/VERSION/json)
# for each pin. Exits non-zero when one is found, and (--strict) when a package could not be audited, rather
# than report "no known vulnerabilities" for packages never checked. AUDIT_ARGS="--ignore-vuln ID" accepts one;
# AUDIT_ARGS="-s osv --osv-url URL" asks an OSV mirror instead.
AUDIT_ARGS ?=
audit: install
	$(VENV)/bin/pip-audit -r requirements.lock --no-deps --disable-pip --strict --progress-spinner off \
		--cache-dir data/.cache/pip-audit $(AUDIT_ARGS) \
	|| { echo "make audit: failed: known vulnerabilities are listed above, or a package could not be audited" \
		"(the error above names it: pip-audit needs PyPI's per-version JSON API)" >&2; exit 1; }

# docs/bad-input.md from the bad-input cases of the tests (a test fails when it is out of date)
docs: install
	$(PY) -m forecasting_assets_tests.bad_inputs > docs/.bad-input.md.tmp && mv docs/.bad-input.md.tmp docs/bad-input.md

clean-outputs:
	rm -rf data/outputs data/warehouse.duckdb
