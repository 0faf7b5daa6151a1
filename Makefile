# pixeltrack: `make run` tries it on the embedded default, `make test` proves it on real parts.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
DATA   ?= .pixeltrack
PORT   ?= 8080
KAFKA_DIR ?= .kafka

# The processors' hot path compiled with mypyc (schemas/native.py lists the modules); rebuilt when a
# source of those packages changes (the build takes types from all of them).
NATIVE := build/native/manifest.json

.PHONY: run test native browser unit lint typecheck kafka kafka-stop kafka-jars bench-classify bench-pipeline bench-edge bench-faults clean

$(BIN)/pixeltrack: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $@

venv: $(BIN)/pixeltrack

$(NATIVE): $(BIN)/pixeltrack $(wildcard schemas/*.py processors/*.py) deploy/native/build.py
	$(BIN)/python deploy/native/build.py

native: $(NATIVE)

kafka-jars:
	deploy/kafka/kafka.sh jars

# Without a C compiler the build fails and serve runs the same modules as plain Python (slower).
run: $(BIN)/pixeltrack
	@$(MAKE) --no-print-directory native || echo "the compiled hot path was not built: running as plain Python"
	$(BIN)/pixeltrack serve --data $(DATA) --port $(PORT)

# The dashboard's browser test drives Debian's headless Chromium; installed here when missing (as root).
browser:
	@command -v chromium >/dev/null 2>&1 || { [ "$$(id -u)" = 0 ] && apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium fonts-dejavu-core >/dev/null; } || \
	  echo "chromium not installed: the dashboard browser test will be skipped"

# The suite runs on the compiled hot path (and checks it is), and compares it with plain Python.
test: $(BIN)/pixeltrack $(NATIVE) kafka-jars browser
	$(BIN)/ruff check ingest processors schemas pixeltrack tests bench deploy/native
	$(BIN)/mypy
	PIXELTRACK_EXPECT_NATIVE=1 $(BIN)/pytest -q

unit: $(BIN)/pixeltrack
	$(BIN)/pytest -q tests/unit

lint: $(BIN)/pixeltrack
	$(BIN)/ruff check ingest processors schemas pixeltrack tests bench deploy/native

typecheck: $(BIN)/pixeltrack
	$(BIN)/mypy

kafka: kafka-jars
	@deploy/kafka/kafka.sh start $(KAFKA_DIR)

kafka-stop:
	deploy/kafka/kafka.sh stop $(KAFKA_DIR)

bench-classify: $(BIN)/pixeltrack $(NATIVE)
	$(BIN)/python bench/bench_classify.py

bench-pipeline: $(BIN)/pixeltrack $(NATIVE) kafka-jars
	$(BIN)/python bench/bench_pipeline.py

bench-edge: $(BIN)/pixeltrack $(NATIVE) kafka-jars
	$(BIN)/python bench/bench_edge.py

bench-faults: $(BIN)/pixeltrack $(NATIVE) kafka-jars
	$(BIN)/python bench/bench_faults.py

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache .mypy_cache .ruff_cache
