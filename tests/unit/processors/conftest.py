"""Fixtures for the processors' unit tests: network lists, an enricher and classifiers."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest

from processors.behaviour import Classifier
from processors.classify import ClassifierConfig
from processors.enrich import Enricher
from processors.networks import NetworkLists


@pytest.fixture(scope="session")
def networks() -> NetworkLists:
    return NetworkLists.load()


@pytest.fixture(scope="session")
def enricher(networks: NetworkLists) -> Iterator[Enricher]:
    e = Enricher(networks=networks)
    yield e
    e.close()


@pytest.fixture
def make_classifier(networks: NetworkLists, enricher: Enricher) -> Callable[..., Classifier]:
    """A fresh classifier (its own state) over the shared lists and enricher; keyword args go to the config."""

    def make(**config: Any) -> Classifier:
        return Classifier(ClassifierConfig(**config), networks, enricher)

    return make


@pytest.fixture
def classifier(make_classifier: Callable[..., Classifier]) -> Classifier:
    return make_classifier()
