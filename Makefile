# pixeltrack: `make run` tries it on the embedded default, `make test` proves it on real parts.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
DATA   ?= .pixeltrack
PORT   ?= 8080
KAFKA_DIR ?= .kafka

# The processors' hot path compiled with mypyc (schemas/native.py): built whenever the build on disk is
# not one native.activate() would use (missing, incomplete, or any source of schemas/ or processors/ changed).
NATIVE_CURRENT := PIXELTRACK_NATIVE=1 $(BIN)/python -c "import sys; from schemas import native; sys.exit(native.activate() != native.COMPILED)"

.PHONY: run test native browser unit lint typecheck kafka kafka-stop kafka-jars bench-classify bench-truth bench-pipeline bench-edge bench-faults bench-dead-letters clean

$(BIN)/pixeltrack: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $@

venv: $(BIN)/pixeltrack

native: $(BIN)/pixeltrack
	@$(NATIVE_CURRENT) || $(BIN)/python deploy/native/build.py

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
test: $(BIN)/pixeltrack native kafka-jars browser
	$(BIN)/ruff check ingest processors schemas pixeltrack tests bench deploy/native
	$(BIN)/mypy
	PIXELTRACK_EXPECT_NATIVE=1 $(BIN)/pytest -q

unit: $(BIN)/pixeltrack
	$(BIN)/pytest -q tests/unit

lint: $(BIN)/pixeltrack
	$(BIN)/ruff check ingest processors schemas pixeltrack tests bench deploy/native

typecheck: $(BIN)/pixeltrack
	$(BIN)/mypy

# A local broker for `pixeltrack edge/api/process/triggers` (docs/production.md): on 127.0.0.1:9092 when
# that port is free, else on a free port. Its address is in KAFKA_DIR/bootstrap; with the default
# KAFKA_DIR (.kafka) the commands run from this folder read it there when PIXELTRACK_KAFKA_BOOTSTRAP is
# not set (else it says the line to export). A KAFKA_DIR started before keeps its port. `make test` runs
# brokers of its own.
KAFKA_PORT ?= 9092
kafka: kafka-jars
	@port=$(KAFKA_PORT); \
	if [ ! -f $(KAFKA_DIR)/server.properties ] && ! python3 -c "import socket,sys; s=socket.socket(); \
	    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1); s.bind(('127.0.0.1', $$port))" 2>/dev/null; then \
	  echo "port $$port is taken: starting the broker on a free port"; port=0; fi; \
	addr=$$(deploy/kafka/kafka.sh start $(KAFKA_DIR) $$port) || exit 1; \
	echo "Kafka broker on $$addr (data and log in $(KAFKA_DIR)/; stop it with: make kafka-stop$(if $(filter-out .kafka,$(KAFKA_DIR)), KAFKA_DIR=$(KAFKA_DIR)))"; \
	if [ "$(KAFKA_DIR)" = ".kafka" ]; then \
	  echo "pixeltrack edge, api, process and triggers run from this folder find it (.kafka/bootstrap)"; \
	  echo "unless PIXELTRACK_KAFKA_BOOTSTRAP is set; elsewhere: export PIXELTRACK_KAFKA_BOOTSTRAP=$$addr"; \
	elif [ "$$addr" = "127.0.0.1:9092" ]; then \
	  echo "that is the default PIXELTRACK_KAFKA_BOOTSTRAP: pixeltrack edge, api, process and triggers find it"; \
	else \
	  echo "before pixeltrack edge, api, process and triggers run: export PIXELTRACK_KAFKA_BOOTSTRAP=$$addr"; \
	fi

kafka-stop:
	deploy/kafka/kafka.sh stop $(KAFKA_DIR)

bench-classify: $(BIN)/pixeltrack native
	$(BIN)/python bench/bench_classify.py

bench-truth: $(BIN)/pixeltrack native
	$(BIN)/python bench/bench_truth.py

bench-pipeline: $(BIN)/pixeltrack native kafka-jars
	$(BIN)/python bench/bench_pipeline.py

bench-edge: $(BIN)/pixeltrack native kafka-jars
	$(BIN)/python bench/bench_edge.py

bench-faults: $(BIN)/pixeltrack native kafka-jars
	$(BIN)/python bench/bench_faults.py

bench-dead-letters: $(BIN)/pixeltrack native
	$(BIN)/python bench/bench_dead_letters.py

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache .mypy_cache .ruff_cache
