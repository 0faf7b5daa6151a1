# pixeltrack: `make run` tries it on the embedded default, `make test` proves it on real parts.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
DATA   ?= .pixeltrack
PORT   ?= 8080
KAFKA_DIR ?= .kafka

.PHONY: run test browser unit lint typecheck kafka kafka-stop kafka-jars bench-classify bench-pipeline bench-edge bench-faults clean

$(BIN)/pixeltrack: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $@

venv: $(BIN)/pixeltrack

kafka-jars:
	deploy/kafka/kafka.sh jars

run: $(BIN)/pixeltrack
	$(BIN)/pixeltrack serve --data $(DATA) --port $(PORT)

# The dashboard's browser test drives Debian's headless Chromium; installed here when missing (as root).
browser:
	@command -v chromium >/dev/null 2>&1 || { [ "$$(id -u)" = 0 ] && apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium fonts-dejavu-core >/dev/null; } || \
	  echo "chromium not installed: the dashboard browser test will be skipped"

test: $(BIN)/pixeltrack kafka-jars browser
	$(BIN)/ruff check ingest processors schemas pixeltrack tests bench
	$(BIN)/mypy
	$(BIN)/pytest -q

unit: $(BIN)/pixeltrack
	$(BIN)/pytest -q tests/unit

lint: $(BIN)/pixeltrack
	$(BIN)/ruff check ingest processors schemas pixeltrack tests bench

typecheck: $(BIN)/pixeltrack
	$(BIN)/mypy

kafka: kafka-jars
	@deploy/kafka/kafka.sh start $(KAFKA_DIR)

kafka-stop:
	deploy/kafka/kafka.sh stop $(KAFKA_DIR)

bench-classify: $(BIN)/pixeltrack
	$(BIN)/python bench/bench_classify.py

bench-pipeline: $(BIN)/pixeltrack kafka-jars
	$(BIN)/python bench/bench_pipeline.py

bench-edge: $(BIN)/pixeltrack kafka-jars
	$(BIN)/python bench/bench_edge.py

bench-faults: $(BIN)/pixeltrack kafka-jars
	$(BIN)/python bench/bench_faults.py

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache .mypy_cache .ruff_cache
