"""The Kafka topics the deploy files create: every topic the code names, enough partitions for the
processors, and hits.dlq kept short and bounded in bytes alike in compose and Kubernetes."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from schemas.topics import HITS_DLQ_CONFIG, MIB, Topics
from tests.unit.deploy.deployfiles import ROOT, compose, k8s_objects, topics_created, topics_script_configs

# Every topic schemas.topics names, without a prefix.
TOPICS = {getattr(Topics(), name) for name, attr in vars(Topics).items() if isinstance(attr, property)}


def _k8s(kind: str, name: str) -> dict[str, Any]:
    return next(o for o in k8s_objects() if o["kind"] == kind and o["metadata"]["name"] == name)


def _topics_scripts() -> dict[str, str]:
    """The topics scripts of compose (its `$$` unescaped, as compose does) and of the Kubernetes Job."""
    return {"compose": compose()["services"]["kafka-topics"]["command"][0].replace("$$", "$"),
            "k8s": _k8s("Job", "kafka-topics")["spec"]["template"]["spec"]["containers"][0]["args"][0]}


def test_compose_creates_every_topic_with_partitions() -> None:
    services = compose()["services"]
    assert services["kafka"]["environment"]["KAFKA_AUTO_CREATE_TOPICS_ENABLE"] == "false"
    created = topics_created(services["kafka-topics"]["command"][0])
    assert set(created) == TOPICS
    assert created[Topics().hits_raw] >= services["processors"]["deploy"]["replicas"]


def test_k8s_topics_job_creates_every_topic() -> None:
    container = _k8s("Job", "kafka-topics")["spec"]["template"]["spec"]["containers"][0]
    created = topics_created(container["args"][0])
    assert set(created) == TOPICS
    assert "${PIXELTRACK_TOPIC_PREFIX}" in container["args"][0], "topic names honour the settings' prefix"
    assert created[Topics().hits_raw] >= _k8s("Deployment", "processors")["spec"]["replicas"]


@pytest.mark.parametrize("where", ["compose", "k8s"])
def test_the_dead_letter_topic_is_kept_short_and_bounded_in_bytes(where: str, tmp_path: Path) -> None:
    # hits.dlq takes every junk request unsampled: its retention and size bound are schemas.topics',
    # set on the topic whether the script creates it or finds it (an older install's 14 days, unbounded).
    configs = topics_script_configs(_topics_scripts()[where], tmp_path)
    assert set(configs) == TOPICS
    dlq = configs[Topics().hits_dlq]
    assert {k: dlq.get(k) for k in HITS_DLQ_CONFIG} == HITS_DLQ_CONFIG
    assert int(dlq["retention.ms"]) <= int(configs[Topics().hits_raw]["retention.ms"])
    # retention.bytes deletes a partition's closed segments only: a segment is a small part of the bound
    assert int(dlq["segment.bytes"]) * 4 <= int(dlq["retention.bytes"])


def test_the_deploy_doc_says_the_dead_letter_topics_bounds() -> None:
    row = next(line for line in (ROOT / "docs" / "deploy.md").read_text(encoding="utf-8").splitlines()
               if line.startswith(f"| `{Topics().hits_dlq}` |"))
    assert f"{int(HITS_DLQ_CONFIG['retention.ms']) // 86_400_000} days" in row
    assert f"{int(HITS_DLQ_CONFIG['retention.bytes']) // MIB} MiB a partition" in row
