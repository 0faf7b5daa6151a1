"""Contracts shared by the edge and the processors: tokens, hit records, topics, DDL, settings."""
