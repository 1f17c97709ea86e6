# incident-console: every target sets up what it needs by itself.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: demo test lint fmt sysdeps venv snapshot check-config clean screenshots soak

demo: $(STAMP) sysdeps
	$(BIN)/incident-console demo

test: $(STAMP) sysdeps
	$(BIN)/ruff check console panels tests bench scripts
	$(BIN)/pytest -n 2 --dist loadfile -m "not serial" --durations=25
	$(BIN)/pytest -m serial --durations=10

venv: $(STAMP)

# Re-installs only when pyproject.toml changed; a second run costs a stat().
$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -e '.[test]'
	touch $@

# screenshots/ from the real app on the demo stack: SVG (Textual) and PNG (Debian chromium, headless)
screenshots: $(STAMP) sysdeps
	@scripts/ensure-system-packages.sh chromium
	$(BIN)/python scripts/screenshots.py

# Soak (issue 8): the headless console and the engine on a fresh demo stack, every refresh at
# 0.1 s, every scenario cycling; fails on a descriptor/task leak, RSS growth or any exception.
# Report in soak-out/ (soak-report.txt, soak-report.json). CI runs DURATION=3m (tests/test_soak.py).
DURATION ?= 30m
soak: $(STAMP) sysdeps
	$(BIN)/python -m bench.soak --duration $(DURATION) --out soak-out

sysdeps:
	@scripts/ensure-system-packages.sh prometheus prometheus-alertmanager prometheus-postgres-exporter \
		prometheus-blackbox-exporter prometheus-node-exporter postgresql chromium

check-config: $(STAMP)
	$(BIN)/incident-console check-config config/console.yaml

lint: $(STAMP)
	$(BIN)/ruff check console panels tests bench scripts
	$(BIN)/ruff format --check console panels tests bench scripts

fmt: $(STAMP)
	$(BIN)/ruff format console panels tests bench scripts
	$(BIN)/ruff check --fix console panels tests bench scripts

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache *.egg-info

# Benchmarks side by side with pg_activity (issue 7): their own venv, with pg_activity from PyPI.
.PHONY: bench bench-quick bench-serve
BENCH_VENV  := bench/.venv
BENCH_STAMP := $(BENCH_VENV)/.installed

bench: $(BENCH_STAMP) sysdeps
	$(BENCH_VENV)/bin/python -m bench.run --mode full

bench-quick: $(BENCH_STAMP) sysdeps
	$(BENCH_VENV)/bin/python -m bench.run --mode quick

# serve with 1, 4 and 10 viewers: the backends' load (one engine) and what a viewer costs: writes bench/SERVE_RESULTS.md
bench-serve: $(STAMP) sysdeps
	$(BIN)/python bench/serve_viewers.py

$(BENCH_STAMP): pyproject.toml bench/requirements.txt
	test -x $(BENCH_VENV)/bin/python || $(PYTHON) -m venv $(BENCH_VENV)
	$(BENCH_VENV)/bin/python -m pip install --quiet --disable-pip-version-check -e . -r bench/requirements.txt
	touch $@
