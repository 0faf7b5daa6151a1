"""Test-wide fixtures come from per-area plugin files."""

from schemas import native

# First, before the plugins and tests import any hot module: the suite runs compiled when a current build
# is there (`make test` builds one, and tests/unit/test_native.py checks it ran), else as plain Python.
native.activate()

pytest_plugins = ["tests.plugins.kafka", "tests.plugins.clickhouse", "tests.plugins.keys", "tests.plugins.edge",
                  "tests.plugins.collector", "tests.plugins.esp"]
