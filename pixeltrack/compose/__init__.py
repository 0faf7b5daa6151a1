"""The composition root: every process pixeltrack runs is put together here from its Settings.

- build.py: what every process shares, derived from settings (keyrings, tenants, privacy key, processor)
- serve.py: `pixeltrack serve` (edge, API, processors, triggers, dashboard and chDB in one process)
- process.py: `pixeltrack process` (the Kafka processor)
- services.py: `pixeltrack api` and `pixeltrack triggers`
- dashboard.py: `pixeltrack dashboard` (the dashboard alone)

`pixeltrack edge` is ingest.workers.run_edge (the edge's own supervisor). The command modules
(pixeltrack/commands/) parse arguments and call in here; nothing here reads argv.
"""
