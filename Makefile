# The two commands of README.md: `make run` and `make test`. Both set everything up
# on a fresh machine (virtualenv in .venv, dependencies, database, model).
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
PORT ?= 8000
export PORT

.PHONY: run test test-sqlite test-postgres test-cluster install install-dev clean-venv

run: install
	$(PY) manage.py migrate --noinput
	$(PY) manage.py collectstatic --noinput --verbosity 0
	$(PY) manage.py prepare_model --fallback
	$(PY) manage.py ensure_admin
	@echo "Serving on http://127.0.0.1:$(PORT)/ with one background worker  (Ctrl-C stops both)"
	PATH="$(CURDIR)/$(VENV)/bin:$$PATH" $(VENV)/bin/honcho start -f Procfile -p $(PORT)

# The suite in both modes, then a live cluster: once embedded (SQLite, local files, the
# file cache, the filesystem broker), once scaled out on throwaway PostgreSQL, Redis and
# S3 servers, then two web nodes and a worker (README, "Scaling out").
test: test-sqlite test-postgres test-cluster

test-sqlite: install-dev
	scripts/ensure-chromium
	$(PY) -m pytest

# The framework-free engine's own tests read no database, store or cache: the first
# pass has run them, and running them again here would only cost minutes.
ENGINE_ONLY_TESTS := backends batching classifier equivalence images recognition weights
# Nor those whose subject is not where rows, files and counters live: the browser tests (the
# same views and scripts; serving images from the object store has tests of its own here),
# quantization, the classify command, and the gunicorn and Compose files.
VENDOR_NEUTRAL_TESTS := tests/e2e tests/test_engine_int8.py tests/test_cli_classify.py \
	tests/test_gunicorn_config.py tests/test_docker_compose.py
test-postgres: install-dev
	scripts/with-postgres scripts/with-redis scripts/with-s3 $(PY) -m pytest \
		$(foreach name,$(ENGINE_ONLY_TESTS),--ignore=tests/test_engine_$(name).py) \
		$(foreach path,$(VENDOR_NEUTRAL_TESTS),--ignore=$(path)) \
		--ignore=tests/test_fuzz_decoder.py

# The live cluster tests: two web nodes and a worker on throwaway PostgreSQL, Redis and S3
# servers (scripts/with-cluster; README, "Scaling out").
test-cluster: install-dev
	scripts/with-cluster $(PY) -m pytest tests/cluster

install: $(VENV)/.installed-run
install-dev: $(VENV)/.installed-dev

$(PY):
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip

# Stamps make the (large) install happen once per venv and again only when a
# requirements file changes.
$(VENV)/.installed-run: requirements.txt | $(PY)
	$(PY) -m pip install -r requirements.txt
	touch $@

$(VENV)/.installed-dev: requirements.txt requirements-dev.txt | $(PY)
	$(PY) -m pip install -r requirements-dev.txt
	touch $@ $(VENV)/.installed-run

clean-venv:
	rm -rf $(VENV)
