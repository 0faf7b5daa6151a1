"""Contracts shared by the edge and the processors: tokens, hit records, topics, DDL, settings."""

# The compiled hot path, when built and current (see schemas.native): imported before any of its modules.
import schemas.native  # noqa: F401
