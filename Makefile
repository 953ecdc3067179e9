# Two commands do everything on a fresh machine: `make demo` and `make test`.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test lint typecheck bench soak clean redis

$(BIN)/python:
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip

$(STAMP): $(BIN)/python pyproject.toml
	$(BIN)/pip install -q -e '.[test]'
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/python -m trio_tts.cli.demo

test: $(STAMP) redis
	$(BIN)/ruff check trio_tts bridges tests benchmarks examples
	$(BIN)/mypy
	$(BIN)/python -m pytest -q

lint: $(STAMP)
	$(BIN)/ruff check trio_tts bridges tests benchmarks examples

typecheck: $(STAMP)
	$(BIN)/mypy

# 100,000 turns at concurrency 100 through a local server process, with connection drops and
# server errors; every byte verified. Not part of `make test` (it runs a 2,000-turn version).
soak: $(STAMP)
	$(BIN)/python benchmarks/soak.py --turns 100000 --concurrency 100 --max-seconds 900 \
		--json soak.json

# The benchmark (benchmarks/README in the top README): LiveKit 1.8.3 and matplotlib live in
# their own venv so the project's dependencies stay clean. Six clients (the pool over both
# transports, the raw aiohttp client...) ~25 minutes on 2 cores, then the LiveKit plugins
# (official 1.8.9 vs ours, ~8 minutes) and the asyncio bridge per event (~1 minute), the
# transports alone under load, ~1 minute, then
# ElevenLabs: the pool vs the official LiveKit plugin (project venv), ~2.5 minutes.
BENCH_VENV := benchmarks/.venv-livekit
$(BENCH_VENV)/.installed:
	$(PY) -m venv $(BENCH_VENV)
	$(BENCH_VENV)/bin/pip install -q --upgrade pip
	$(BENCH_VENV)/bin/pip install -q "livekit-plugins-inworld==1.8.3" matplotlib
	touch $@

bench: $(STAMP) $(BENCH_VENV)/.installed
	$(BIN)/python benchmarks/run.py
	$(BIN)/python benchmarks/bench_livekit_plugin.py --md benchmarks/results/livekit_plugin.md
	$(BIN)/python benchmarks/bench_livekit_plugin.py --concurrency 20,50 --scenarios firehose --buffers \
		--md benchmarks/results/livekit_buffers.md
	$(BIN)/python benchmarks/bench_bridge.py --turns 60 --append benchmarks/results/livekit_plugin.md
	$(BIN)/python benchmarks/bench_transport.py --only load --md benchmarks/results/transport.md
	$(BIN)/python benchmarks/bench_elevenlabs.py --md benchmarks/results/elevenlabs.md
	$(BIN)/python benchmarks/update_readme.py

clean:
	rm -rf $(VENV) build dist *.egg-info

# The fleet-quota tests start their own redis-server: install the Debian package when missing.
redis:
	@command -v redis-server >/dev/null || { \
		SUDO=$$([ "$$(id -u)" = 0 ] || echo sudo); \
		$$SUDO apt-get update -qq && \
		$$SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq redis-server; }
