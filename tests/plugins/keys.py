"""Signing keys and settings for tests."""

from __future__ import annotations

import pytest

from schemas.settings import Settings
from schemas.tokens import Keyring


@pytest.fixture
def keyring() -> Keyring:
    return Keyring({"t1": b"test-secret-0123456789abcdef", "t0": b"older-secret-0123456789abcdef"}, "t1")


@pytest.fixture
def settings() -> Settings:
    """Settings with nothing read from the environment of the machine running the tests."""
    return Settings(_env_file=None, edge_id="test-edge", spool_dir=None)  # type: ignore[call-arg]
