# Two commands for a newcomer: `make demo` (one whole connect on moto + simulated TikTok) and `make test`.
# Everything else installs itself: uv from PyPI, the project venv from uv.lock, SAM CLI as a uv tool.

PY      ?= python3.13
UV      := $(PY) -m uv
UV_VERSION  := 0.13.8
SAM_VERSION := 1.170.0
SAM     := $(HOME)/.local/bin/sam
export PATH := $(HOME)/.local/bin:$(PATH)
LAYER_PATH := shared:.
# pip-audit needs PyPI's per-release JSON API. Where it is unreachable (as on this workplace's machines), `warn`
# prints "NOT AUDITED" loudly instead of failing; a real finding always fails. Set `fail` where the API works.
AUDIT_UNREACHABLE ?= warn

.PHONY: demo test test-fast lint setup tools clean

# PROVIDER=instagram (or any shipped network): the same story for that network, in memory (local/demo.py).
PROVIDER ?= tiktok
demo: .venv/.synced
	PROVIDER=$(PROVIDER) PYTHONPATH=$(LAYER_PATH) $(UV) run --frozen python -m local.demo

# The whole stack on http://127.0.0.1:3000 until Ctrl-C: gateway + dashboard (/dev/), moto, simulated TikTok and networks.
.PHONY: dev
dev: .venv/.synced
	PYTHONPATH=shared:. $(UV) run --frozen python -m local.dev

# How long `make test` takes, said before it starts; the time it took, said when it ends (passed or failed).
# Measured 2026-12-01 on 2 cores: 10 min 42 s for 1,452 tests (pytest 10 min 27 s) with the machine otherwise
# quiet (load ~2); 14-22 min while other test suites ran beside it (load 3-9).
TEST_ESTIMATE := about 11 minutes on 2 cores, up to 20 on a busy machine (make test-fast skips the sam build checks)
test:
	@echo "make test: ruff, lint-imports, security checks, then every test: $(TEST_ESTIMATE)."
	@start=$$(date +%s); $(MAKE) --no-print-directory test-steps; status=$$?; \
	  took=$$(( $$(date +%s) - start )); \
	  if [ $$status -eq 0 ]; then outcome=passed; else outcome=FAILED; fi; \
	  echo "make test: $$outcome in $$((took / 60)) min $$((took % 60)) s."; exit $$status

.PHONY: test-steps
test-steps: .venv/.synced $(SAM)
	$(UV) run --frozen ruff check .
	PYTHONPATH=$(LAYER_PATH) $(UV) run --frozen lint-imports
	AUDIT_UNREACHABLE=$(AUDIT_UNREACHABLE) bash local/security_checks.sh
	$(UV) run --frozen pytest

# Unit and integration tests only (no sam build): the quick loop while coding.
test-fast: .venv/.synced
	$(UV) run --frozen pytest -m "not build"

lint: .venv/.synced
	$(UV) run --frozen ruff check .
	PYTHONPATH=$(LAYER_PATH) $(UV) run --frozen lint-imports

setup: .venv/.synced $(SAM)

# Benchmarks (cold imports, sweep reads, refresh throughput, cost model, write units, cold start, policies, worker tuning): figures printed, nothing asserted.
.PHONY: bench
bench: .venv/.synced
	PYTHONPATH=shared:. $(UV) run --frozen python -m local.bench

.venv/.synced: pyproject.toml uv.lock
	@$(PY) -m uv --version >/dev/null 2>&1 || $(PY) -m pip install --quiet --disable-pip-version-check "uv==$(UV_VERSION)"
	$(UV) sync --frozen
	@touch $@

$(SAM):
	@$(PY) -m uv --version >/dev/null 2>&1 || $(PY) -m pip install --quiet --disable-pip-version-check "uv==$(UV_VERSION)"
	$(UV) tool install --quiet "aws-sam-cli==$(SAM_VERSION)"

# Deploying: the SAM CLI installed above ($(SAM)), on a samconfig.toml environment (ENV=dev or prod). AWS
# credentials and region come from your usual AWS configuration. GUIDED=1 asks for the parameters and saves them
# (the first deploy of prod: AllowedReturnOrigins has no default).
ENV    ?= dev
GUIDED ?=
FN     ?=
.PHONY: deploy logs delete sync
deploy: $(SAM)
	$(SAM) build --config-env $(ENV)
	$(SAM) deploy --config-env $(ENV)$(if $(GUIDED), --guided)

# Follows the logs of every function of template.yaml (or FN=BackendApiFunction, one) as they arrive. Named, not
# left to SAM's scan of the stack, which would also try the HTTP API's access log (README, "Following the logs").
FUNCTIONS = $(shell awk '/^  [A-Za-z0-9]+:$$/ {name = substr($$1, 1, length($$1) - 1)} \
                         /Type: AWS::Serverless::Function$$/ {print name}' $(wildcard template.yaml) </dev/null)
logs: $(SAM)
	$(SAM) logs --config-env $(ENV) --tail $(addprefix --name ,$(or $(FN),$(FUNCTIONS)))

# Deletes the stack; the retained resources stay (README, "Deleting the stack").
delete: $(SAM)
	$(SAM) delete --config-env $(ENV)

# dev only: code changes go to the functions as you save them, bypassing CloudFormation (the stack drifts from
# the template until the next `make deploy`).
sync: $(SAM)
	$(if $(filter dev,$(ENV)),,$(error sam sync is for the dev stack only (ENV=$(ENV)): use make deploy ENV=$(ENV)))
	$(SAM) sync --config-env dev --watch

clean:
	rm -rf .venv .aws-sam .pytest_cache .ruff_cache
