"""Test-wide fixtures come from per-area plugin files."""

pytest_plugins = ["tests.plugins.kafka", "tests.plugins.clickhouse", "tests.plugins.keys", "tests.plugins.edge",
                  "tests.plugins.collector"]
