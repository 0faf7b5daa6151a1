"""Processors: decode, enrich, classify and write hits to ClickHouse, exactly once."""

# The compiled hot path, when built and current (see schemas.native): imported before any of its modules.
import schemas.native  # noqa: F401
