# The two commands: `make run` and `make test`. Both install into .venv when needed.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip --disable-pip-version-check -q
# The CPU build of torch (a plain `torch` from PyPI is the multi-GB CUDA build); set TORCH_SPEC to change.
TORCH_SPEC ?= torch==2.13.0

.PHONY: run test lint typecheck unit bench bench-deps bench-telemetry clean

$(PY):
	$(PYTHON) -m venv $(VENV)

$(VENV)/.installed-run: pyproject.toml | $(PY)
	$(PIP) install '$(TORCH_SPEC)'
	$(PIP) install -e '.[local,scanner,pii]'
	$(PIP) install --no-deps toxic-comment-classifier==0.3.0 h5py
	touch $@

$(VENV)/.installed-test: pyproject.toml | $(PY)
	$(PIP) install '$(TORCH_SPEC)'
	$(PIP) install -e '.[test]'
	# The offline toxicity default: its wheel declares tensorflow, which the torch port does not need.
	$(PIP) install --no-deps toxic-comment-classifier==0.3.0 h5py
	# The review UI's browser tests drive Debian's chromium (`playwright install` cannot download here).
	test -x /usr/bin/chromium || { [ "$$(id -u)" = 0 ] && apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium; } || \
	  echo "chromium missing and not root: the browser tests will be skipped (apt-get install chromium)"
	# The dashboard tests run Debian's prometheus (promtool is in the same package) and type-check the
	# dashboards with tsc and @grafana/schema, pinned in dashboards/.tsc/package-lock.json.
	command -v prometheus >/dev/null && command -v npm >/dev/null || { [ "$$(id -u)" = 0 ] && apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq prometheus $$(command -v npm >/dev/null || echo nodejs npm); } || \
	  echo "prometheus or npm missing and not root: the dashboard tests will be skipped (apt-get install prometheus nodejs npm)"
	! command -v npm >/dev/null || npm ci --prefix dashboards/.tsc --no-audit --no-fund --loglevel=error
	# Shared cache and limiter tests run a real redis-server.
	command -v redis-server >/dev/null || { [ "$$(id -u)" = 0 ] && apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq redis-server; } || \
	  echo "redis-server missing and not root: the Redis tests will be skipped (apt-get install redis-server)"
	touch $@ $(VENV)/.installed-run

## run: the proxy in front of a local llama.cpp server with a tiny generated model
run: $(VENV)/.installed-run
	$(VENV)/bin/warden up

## test: lint, type-check and every test
test: $(VENV)/.installed-test lint typecheck unit

lint: $(VENV)/.installed-test
	$(PY) -m ruff check proxy detectors drift dashboards tests bench

# The packages, tests/ and the bench package, in one run (pyproject.toml's [tool.mypy]).
typecheck: $(VENV)/.installed-test
	$(PY) -m mypy

unit: $(VENV)/.installed-test
	$(PY) -m pytest -q

## bench: proxy overhead against nginx, a minimal relay and LiteLLM (needs bench-deps; minutes)
bench-deps: | $(PY)
	command -v wrk >/dev/null && command -v nginx >/dev/null || \
	  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq wrk nginx-light)
	# bench.quality_pii's labelled sentences; --no-deps: its generator's imports are already in the PII stack.
	$(PIP) install --no-deps presidio-evaluator==0.3.2

## bench-telemetry: rows/s into chDB, inserts/s per table, latency added by the telemetry writer (~2 min)
bench-telemetry: $(VENV)/.installed-test
	$(PY) -m bench.telemetry

bench: $(VENV)/.installed-test bench-deps
	$(PIP) install -e '.[bench]'
	$(PY) -m bench.proxy_overhead
	$(PY) -m bench.scanner

clean:
	rm -rf $(VENV) .warden .pytest_cache .mypy_cache .ruff_cache
