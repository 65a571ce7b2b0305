# `make run` sets everything up and reproduces every pipeline; `make test` sets up and tests.
# `make help` lists every target.

SHELL := /bin/bash
.DEFAULT_GOAL := help

# Everything runs inside the project's venv; tool state stays in the repository, telemetry off.
VENV := .venv
export PATH := $(CURDIR)/$(VENV)/bin:$(PATH)
export MLFLOW_DISABLE_TELEMETRY := true
export DO_NOT_TRACK := true
export GX_ANALYTICS_ENABLED := false
export BENTOML_DO_NOT_TRACK := true
export BENTOML_HOME := $(CURDIR)/bentoml
export DVC_NO_ANALYTICS := 1
export DVC_SITE_CACHE_DIR := $(CURDIR)/.dvc/site-cache
export UV_PROJECT_ENVIRONMENT := $(CURDIR)/$(VENV)

# uv from the PATH, else a copy installed from PyPI into .tools/ (nothing goes into $HOME)
UV := $(or $(shell command -v uv 2>/dev/null),$(CURDIR)/.tools/bin/uv)
HOST ?= 127.0.0.1
MLFLOW_PORT ?= 5000
DASHBOARD_PORT ?= 8000
REQUESTS ?= 1000
WINDOWS ?= 1
DRIFT ?= 0

.PHONY: help setup chromium postgresql prometheus java stack stack-down stack-status stack-import run repro test test-fast lint format ui serve bento simulate monitor dashboards retrain lineage batch-score bench bench-services bench-monitoring bench-faults bench-overload bench-soak bench-team bench-batch data-record data-rebuild data-reset clean-state

help: ## List the targets
	@grep -hE '^[a-zA-Z_-]+:.*?## ' $(MAKEFILE_LIST) \
	  | awk 'BEGIN {FS = ":.*?## "}; {printf "  \033[36m%-14s\033[0m %s\n", $$1, $$2}'

$(CURDIR)/.tools/bin/uv:
	python3 -m venv .tools
	.tools/bin/python -m pip install --quiet uv

# --inexact: a target's optional group (team) stays installed when another target syncs
$(VENV)/.synced: pyproject.toml uv.lock | $(UV)
	$(UV) sync --frozen --inexact --quiet
	@touch $@

$(VENV)/.synced-team: pyproject.toml uv.lock | $(UV)
	$(UV) sync --frozen --inexact --group team --quiet
	@touch $@

$(VENV)/.synced-spark: pyproject.toml uv.lock | $(UV)
	$(UV) sync --frozen --inexact --group spark --quiet
	@touch $@

# Team mode (docs/team.md): STACK=team points every target at the services `make stack` started,
# through the address and credentials it wrote to .stack/team.env; without it, nothing changes.
ifdef STACK
STACK_ENV := .stack/$(STACK).env
ifeq ($(filter stack stack-down stack-status help,$(MAKECMDGOALS)),)
ifeq ($(wildcard $(STACK_ENV)),)
$(error STACK=$(STACK), but $(STACK_ENV) does not exist: start the stack with `make stack` first)
endif
endif
-include $(STACK_ENV)
# every setting the file holds: the server's address and credentials, BentoML's store, and the
# team's DVC remote with its S3 endpoint when there is one
export $(shell sed -n 's/^\([A-Za-z_][A-Za-z0-9_]*\)=.*/\1/p' $(STACK_ENV) 2>/dev/null)
TEAM_DEPS := $(VENV)/.synced-team
endif

setup: $(VENV)/.synced $(TEAM_DEPS) ## Install the locked environment, configure DVC, fetch the data (idempotent)
	@dvc config --local core.site_cache_dir "$(CURDIR)/.dvc/site-cache"
	@python -m projects.core.bootstrap

# Every project's pipeline, from its first stage down. Unlike a bare `dvc repro`, this never
# records a changed data/raw into data.dvc before validation has judged it. projects/core/recovery
# runs it as the only pipeline run in the repository (a second one waits) and first repairs what
# a killed run left: RUNNING MLflow runs, unevaluated model versions, DVC's lock files.
REPRO := python -m projects.core.recovery -- dvc repro --downstream --glob '*-prepare'

run: setup ## Set up, then reproduce every project's pipeline
	$(REPRO)

repro: ## Reproduce the pipelines (no set-up)
	$(REPRO)

test: setup $(VENV)/.synced-team $(VENV)/.synced-spark chromium postgresql prometheus java ## Set up, then run every test (the team stack's tests too)
	pytest

test-fast: setup ## Run the tests, skipping the slow end-to-end and service ones
	pytest -m "not e2e and not service"

chromium: ## Install headless Chromium from Debian's packages, for the dashboard test (needs root or sudo)
	@command -v chromium >/dev/null 2>&1 || { \
	  sudo=$$([ "$$(id -u)" = 0 ] || echo sudo); \
	  $$sudo apt-get update -qq && $$sudo apt-get install -y -qq --no-install-recommends chromium; }

postgresql: ## Install PostgreSQL from Debian's packages, for the stack (needs root or sudo)
	@ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || { \
	  sudo=$$([ "$$(id -u)" = 0 ] || echo sudo); \
	  $$sudo apt-get update -qq && $$sudo apt-get install -y -qq --no-install-recommends postgresql; }

java: ## Install Java 17 from Debian's packages (openjdk-17-jre-headless), for Spark (needs root or sudo)
	@command -v java >/dev/null 2>&1 || [ -x "$$JAVA_HOME/bin/java" ] || { \
	  sudo=$$([ "$$(id -u)" = 0 ] || echo sudo); \
	  $$sudo mkdir -p /usr/share/man/man1; \
	  $$sudo apt-get update -qq && $$sudo apt-get install -y -qq --no-install-recommends openjdk-17-jre-headless; }

prometheus: ## Install Prometheus from Debian's packages, for the stack (needs root or sudo)
	@command -v prometheus >/dev/null 2>&1 || { \
	  sudo=$$([ "$$(id -u)" = 0 ] || echo sudo); \
	  $$sudo apt-get update -qq && $$sudo apt-get install -y -qq --no-install-recommends prometheus; }

stack: setup $(VENV)/.synced-team postgresql prometheus ## Start the team's services on 127.0.0.1 under .stack/: PostgreSQL, MLflow server with auth, Prometheus, Evidently UI (docs/team.md)
	python -m stack up

stack-import: setup $(VENV)/.synced-team ## Copy the embedded store's models, runs and aliases, and the data version, to the stack
	python -m stack import

stack-down: ## Stop what `make stack` started (the data stays for the next `make stack`)
	@python -m stack down

stack-status: ## Show what of the stack runs where
	@python -m stack status

lint: $(VENV)/.synced ## ruff check and ruff format --check
	ruff check .
	ruff format --check .

format: $(VENV)/.synced ## Format and fix what ruff can
	ruff format .
	ruff check --fix .

ui: setup ## Open the MLflow UI on this repository's store (127.0.0.1:5000; HOST=, MLFLOW_PORT=; with STACK=team, the server's)
ifneq ($(filter http://% https://%,$(MLFLOW_TRACKING_URI)),)
	@echo "the MLflow UI is the tracking server's: $(MLFLOW_TRACKING_URI)$(if $(STACK_ENV), (user and password in $(STACK_ENV)))"
else
	mlflow ui --host $(HOST) --port $(MLFLOW_PORT) --backend-store-uri \
	  "$$(python -c 'from projects.core.tracking import tracking_uri; print(tracking_uri())')"
endif

# Projects are discovered (projects/core/project.py): the Makefile names none. A project's port
# is in its config; <NAME>_PORT=... (e.g. SPAM_PORT=3101) overrides it, for serve and simulate.
projects-with = $$(python -m projects.core.project $(1))

serve: setup ## Serve every project's champion, each on its config's port (HOST=, <NAME>_PORT=)
	python -m services.pin
	python -m services.serve --host $(HOST)

bento: setup ## Build a Bento of each champion's service into BENTOML_HOME (see docs/services.md)
	python -m services.pin
	@for project in $(call projects-with,service); do \
	  bentoml build --output tag -f services/$$project/bentofile.yaml . || exit 1; done

simulate: setup ## Send held-out requests to the running services (REQUESTS=1000 WINDOWS=1; DRIFT=1 drifts them; ABUSE=1 adds abusive clients)
	python -m monitoring.simulate --requests $(REQUESTS) --windows $(WINDOWS) \
	  $(if $(filter 1,$(DRIFT)),--drift,--no-drift) --host $(HOST)

monitor: setup ## Judge each project's latest window against its reference; last line: the verdicts as JSON
	python -m monitoring.monitor

dashboards: setup ## Evidently UI over the monitoring workspace (127.0.0.1:8000; HOST=, DASHBOARD_PORT=)
	python -m monitoring.dashboards --host $(HOST) --port $(DASHBOARD_PORT)

retrain: setup ## Fold PROJECT's labelled production data into its raw data, rerun its pipeline
	@test -n "$(PROJECT)" || { echo "error: name the project: make retrain PROJECT=<name> (one of: $(call projects-with,feedback))" >&2; exit 2; }
	python -m monitoring.retrain --project $(PROJECT)

batch-score: setup $(VENV)/.synced-spark java ## Score INPUT (file, folder or glob) with PROJECT's @champion on Spark into OUTPUT (ENGINE=local: in process; SPARK_MASTER=; docs/batch.md)
	@test -n "$(PROJECT)" -a -n "$(INPUT)" -a -n "$(OUTPUT)" || { echo "error: give all three: make batch-score PROJECT=<one of: $(call projects-with,batch)> INPUT=<file, folder or glob> OUTPUT=<new folder>" >&2; exit 2; }
	python -m batch.job --project "$(PROJECT)" --input "$(INPUT)" --output "$(OUTPUT)" $(if $(ENGINE),--engine "$(ENGINE)") $(if $(SPARK_MASTER),--master "$(SPARK_MASTER)")

lineage: $(VENV)/.synced ## How prediction ID came to be: request log, model version, MLflow run, data, Bento (JSON=1)
	@test -n "$(ID)" || { echo "error: give the prediction id: make lineage ID=<prediction_id> (every answer of a service carries it)" >&2; exit 2; }
	@python -m monitoring.lineage $(if $(filter 1,$(JSON)),--json) -- '$(ID)'

bench: setup ## Measure each project's model against the targets in docs/ (slow; BENCH=<name> for one)
	@for project in $(or $(BENCH),$(call projects-with,bench)); do \
	  echo "== $$project"; python -m projects.$$project.bench || exit 1; done

bench-services: setup ## Measure the services against in-process calls and plain FastAPI (docs/services.md)
	python -m services.pin
	python -m bench.services_speed

bench-monitoring: setup ## Time the monitoring job on 100k requests against a plain Evidently report
	python -m bench.monitoring_speed

bench-faults: setup ## Drain on SIGTERM and recovery from a killed worker, under load (PROJECT=, OUT=file.json)
	python -m services.pin
	python -m bench.service_faults $(if $(PROJECT),--project $(PROJECT)) $(if $(OUT),--out $(OUT))

bench-overload: setup ## Each service at 4x the load it sustains: accepted p99, refusals, probes (PROJECT=, OUT=file.json)
	python -m services.pin
	python -m bench.service_overload $(if $(PROJECT),--project $(PROJECT)) $(if $(OUT),--out $(OUT))

bench-soak: setup ## Every service under a mix of requests for 10 minutes: errors, memory, request log (MINUTES=, OUT=file.json)
	python -m services.pin
	python -m bench.service_soak $(if $(MINUTES),--minutes $(MINUTES)) $(if $(OUT),--out $(OUT))

bench-team: setup $(VENV)/.synced-team postgresql prometheus ## Every pipeline on the embedded store, then on a stack of its own: time per stage (S3=1: artifacts in moto's S3)
	python -m bench.team_pipeline $(if $(filter 1,$(S3)),--s3)

bench-batch: setup $(VENV)/.synced-spark java ## Spark batch scoring of 1, 3 and 10 million generated HDFS log lines: lines/s, memory, local[1] vs local[2], in process (17 min; SIZES=, OUT=file.json; docs/batch.md)
	python -m bench.batch_scale $(if $(SIZES),--sizes $(SIZES)) $(if $(OUT),--out $(OUT))

data-record: $(VENV)/.synced ## Record data/raw as it is now as a new version in data.dvc
	python -m projects.core.bootstrap --record

data-rebuild: $(VENV)/.synced ## Rebuild data/raw from its sources (after changing a simulator's params) and record it
	python -m projects.core.bootstrap --rebuild

data-reset: $(VENV)/.synced ## Replace a changed data/raw with the version data.dvc records
	python -m projects.core.bootstrap --reset

clean-state: ## Remove the MLflow store and pipeline outputs (the data stays)
	rm -rf mlflow.db mlartifacts data/prepared data/reference models reports

# A project's own targets (its commands for real data, say) live in its folder, in project.mk.
include $(wildcard projects/*/project.mk)
