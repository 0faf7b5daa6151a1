"""Processors: decode, enrich, classify and write hits to ClickHouse, exactly once."""
