"""Readers of the files under deploy/ shared by the deploy tests."""

from __future__ import annotations

import asyncio
import inspect
import itertools
import json
import os
import re
import subprocess
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import yaml

from ingest.app import create_app
from ingest.publisher import QueuePublisher
from pixeltrack.sender.sdk import Message, Tracker
from schemas import native, reasons, tokens
from schemas.settings import Settings
from schemas.tokens import Keyring

ROOT = Path(__file__).resolve().parents[3]
DEPLOY = ROOT / "deploy"
K8S = DEPLOY / "k8s"
SETTING_VARS = {f"PIXELTRACK_{name.upper()}" for name in Settings.model_fields}
# Environment read outside the settings: whether the compiled hot path is used, and where it is.
# Variables read outside the settings: the compiled hot path's switches, and the local Kafka scripts' own.
PROCESS_VARS = set(native.ENVIRONMENT) | {
    v for script in (ROOT / "deploy" / "kafka").glob("*.sh") for v in re.findall(r"\$\{(PIXELTRACK_[A-Z_]+)",
                                                                                 script.read_text())}
# Settings that must come from a secret store, never from a plain value in a manifest.
SECRET_SETTINGS = {"PIXELTRACK_SIGNING_KEYS", "PIXELTRACK_API_KEYS", "PIXELTRACK_CLICKHOUSE_DSN"}
# What the Grafana dashboard reads: the analyst views, and `events` for reasons (no aggregate keeps them).
ANALYST_VIEWS = {"campaign_summary", "campaign_hourly", "link_stats", "client_stats", "events"}
# A table or view named after FROM or JOIN (not a subquery, not a table function).
SQL_SOURCE = re.compile(r"\b(?:FROM|JOIN)\s+([A-Za-z_][\w.]*)\b(?!\s*\()", re.I)


def deploy_files(*suffixes: str) -> list[Path]:
    """Files under deploy/ with one of `suffixes`, without the Kafka jar cache."""
    return sorted(p for p in DEPLOY.rglob("*")
                  if p.is_file() and p.suffix in suffixes and ".cache" not in p.relative_to(DEPLOY).parts)


def load_yaml_documents(path: Path) -> list[Any]:
    return [d for d in yaml.safe_load_all(path.read_text(encoding="utf-8")) if d is not None]


def compose() -> dict[str, Any]:
    doc = yaml.safe_load((DEPLOY / "docker-compose.yml").read_text(encoding="utf-8"))
    assert isinstance(doc, dict)
    return doc


def k8s_objects() -> list[dict[str, Any]]:
    """Every object kustomization.yaml lists, in its order."""
    kustomization = yaml.safe_load((K8S / "kustomization.yaml").read_text(encoding="utf-8"))
    return [doc for name in kustomization["resources"] for doc in load_yaml_documents(K8S / name)]


def dashboard() -> dict[str, Any]:
    doc = json.loads((DEPLOY / "grafana" / "pixeltrack.json").read_text(encoding="utf-8"))
    assert isinstance(doc, dict)
    return doc


def pod_specs(objects: list[dict[str, Any]]) -> Iterator[tuple[dict[str, Any], dict[str, Any]]]:
    """(workload, pod template) of every Deployment, StatefulSet and Job."""
    for obj in objects:
        if obj["kind"] in ("Deployment", "StatefulSet", "Job"):
            yield obj, obj["spec"]["template"]


def env_example() -> dict[str, str]:
    out = {}
    for line in (DEPLOY / ".env.example").read_text(encoding="utf-8").splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            key, sep, value = line.partition("=")
            assert sep, f".env.example: {line!r} is not KEY=VALUE"
            out[key.strip()] = value.strip()
    return out


def grafana_panels(doc: dict[str, Any]) -> Iterator[dict[str, Any]]:
    for panel in doc["panels"]:
        yield panel
        yield from panel.get("panels", [])


def grafana_sql(doc: dict[str, Any]) -> list[str]:
    """Every ClickHouse query of the dashboard: panel targets and template variables."""
    out = []
    for panel in grafana_panels(doc):
        for target in panel.get("targets", []):
            if target.get("datasource", {}).get("type") == "grafana-clickhouse-datasource":
                out.append(target["rawSql"])
    for var in doc["templating"]["list"]:
        if var.get("datasource", {}).get("type") == "grafana-clickhouse-datasource":
            out.append(var["query"]["rawSql"])
    return out


def grafana_promql(doc: dict[str, Any]) -> list[str]:
    return [t["expr"] for p in grafana_panels(doc) for t in p.get("targets", [])
            if t.get("datasource", {}).get("type") == "prometheus"]


def topics_created(script: str) -> dict[str, int]:
    """topic → partitions of the `create NAME PARTITIONS RETENTION` lines of a topics script."""
    return {name: int(parts) for name, parts in re.findall(r"^\s*create\s+(\S+)\s+(\d+)\s", script, re.M)}


# Stands in for kafka-topics.sh and kafka-configs.sh: notes its arguments, one a line, a blank line after.
_NOTE_ARGS = '#!/bin/sh\nfor a in "$@"; do printf "%s\\n" "$a"; done >> "$CALLS"\necho >> "$CALLS"\n'


def topics_script_configs(script: str, folder: Path) -> dict[str, dict[str, str]]:
    """topic → the configs a topics script leaves it with, the script run by bash against stand-ins for
    kafka-topics.sh and kafka-configs.sh (under an empty topic prefix): each --create's --config, then
    each --alter's --add-config over them. Compose's `$$` must be unescaped by the caller."""
    stub, calls = folder / "kafka-tool", folder / "calls"
    stub.write_text(_NOTE_ARGS)
    stub.chmod(0o755)
    for tool in ("kafka-topics.sh", "kafka-configs.sh"):
        script = script.replace(f"/opt/kafka/bin/{tool}", str(stub))
    env = {"PATH": os.environ["PATH"], "CALLS": str(calls), "PIXELTRACK_KAFKA_BOOTSTRAP": "kafka:9092",
           "PIXELTRACK_TOPIC_PREFIX": ""}
    subprocess.run(["bash", "-c", script], env=env, check=True, timeout=30)
    configs: dict[str, dict[str, str]] = {}
    for call in calls.read_text().split("\n\n"):
        args = call.split("\n")
        pairs = list(itertools.pairwise(args))
        if "--create" in args:
            configs[dict(pairs)["--topic"]] = _key_values(v for k, v in pairs if k == "--config")
        elif "--alter" in args:
            configs[dict(pairs)["--entity-name"]].update(
                _key_values(c for k, v in pairs if k == "--add-config" for c in v.split(",")))
    return configs


def _key_values(items: Iterable[str]) -> dict[str, str]:
    """"k=v" items as a dict."""
    return {k: v for k, _, v in (item.partition("=") for item in items)}


def first_segment(path: str) -> str:
    """"/o/abc.gif" → "/o/", "/healthz" → "/healthz": the part a proxy routes on."""
    head, sep, _ = path.lstrip("/").partition("/")
    return f"/{head}{sep}"


def minted_prefixes() -> set[str]:
    """The path prefix of every URL the SDK's Tracker mints (what `pixeltrack link` and `instrument`
    print too): each public `*_url` method is called, so a new kind of link is found without being named
    here, plus one prefix per token kind of schemas.tokens."""
    tracker = Tracker("https://t.example.com", Keyring({"k1": b"k" * 32}, "k1"))
    message = Message(campaign="c", message="m", recipient="r")
    minted: set[str] = set()
    for name, method in inspect.getmembers(tracker, inspect.ismethod):
        if name.startswith("_") or not name.endswith("_url"):
            continue
        required = [p for p in inspect.signature(method).parameters.values()
                    if p.default is inspect.Parameter.empty][1:]  # after the message
        url = method(message, *(["https://example.com/landing"] * len(required)))
        minted.add(first_segment(url.removeprefix(tracker.base_url)))
    minted |= {f"/{code}/" for code in tokens._KIND_CODE.values()}
    return minted


def edge_route_prefixes() -> set[str]:
    """The first path segment of every route of the edge's route table."""
    settings = Settings(signing_keys="k1:" + "a" * 43, spool_dir=None)
    app = create_app(settings, publisher=QueuePublisher(asyncio.Queue()))
    return {first_segment(r.canonical) for r in app.router.resources()}


def grafana_label_overrides() -> list[dict[str, Any]]:
    """The "Why machines" panel's value mappings: each source and reason code shown with the words
    schemas/reasons.py gives it (a machine's reading, as the panel lists machines only)."""
    def mapping(labels: dict[str, str]) -> list[dict[str, Any]]:
        return [{"type": "value", "options": {code: {"text": text, "index": i}
                                              for i, (code, text) in enumerate(sorted(labels.items()))}}]

    fields = {"source": {code: reasons.source(code).label for code in reasons.SOURCES},
              "reason": {code: reasons.reason(code).label for code in reasons.REASONS}}
    return [{"matcher": {"id": "byName", "options": name},
             "properties": [{"id": "mappings", "value": mapping(labels)}]} for name, labels in fields.items()]


def write_grafana_labels() -> None:
    """Rewrite the Grafana dashboard's reason and source labels from schemas/reasons.py."""
    path = DEPLOY / "grafana" / "pixeltrack.json"
    doc = json.loads(path.read_text())
    (panel,) = [p for p in grafana_panels(doc) if p["title"].startswith("Why machines")]
    panel["fieldConfig"]["overrides"] = grafana_label_overrides()
    path.write_text(json.dumps(doc, indent=2, ensure_ascii=False) + "\n")


if __name__ == "__main__":  # python -m tests.unit.deploy.deployfiles: after a reason or source is added
    write_grafana_labels()
