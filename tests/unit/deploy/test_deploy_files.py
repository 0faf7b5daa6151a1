"""The deploy files parse and agree with the code: settings, topics, probes, metrics and views."""

from __future__ import annotations

import base64
import ipaddress
import json
import re
from pathlib import Path
from typing import Any

import pytest
import yaml
from prometheus_client.metrics import MetricWrapperBase

from ingest import metrics as edge_metrics
from processors import metrics as processor_metrics
from schemas.settings import Settings
from schemas.tokens import Keyring
from tests.plugins.clickhouse import ClickHouseDb
from tests.unit.deploy.deployfiles import (
    ANALYST_VIEWS,
    DEPLOY,
    K8S,
    PROCESS_VARS,
    SECRET_SETTINGS,
    SETTING_VARS,
    SQL_SOURCE,
    compose,
    dashboard,
    deploy_files,
    edge_route_prefixes,
    env_example,
    grafana_label_overrides,
    grafana_panels,
    grafana_promql,
    grafana_sql,
    k8s_objects,
    load_yaml_documents,
    minted_prefixes,
    pod_specs,
)

EXPECTED_FILES = {
    "docker-compose.yml", "grafana/pixeltrack.json", "k8s/kustomization.yaml", "k8s/edge-statefulset.yaml",
    "k8s/configmap.yaml", "k8s/secret.yaml", "k8s/migrate-job.yaml",
}
# Variables of compose's ${...} interpolation: ${NAME}, ${NAME:-default}, ${NAME:?error} ($$ escapes).
COMPOSE_VAR = re.compile(r"(?<!\$)\$\{([A-Za-z_][A-Za-z0-9_]*)(?:(:?[-?])([^}]*))?\}")


def settings_from(env: dict[str, str]) -> Settings:
    """Settings validated from PIXELTRACK_* variables (CIDRs, numbers, DSN shape, choices)."""
    return Settings(**{k.removeprefix("PIXELTRACK_").lower(): v for k, v in env.items()})


# --- every file parses ---------------------------------------------------------------------------

@pytest.mark.parametrize("path", deploy_files(".yml", ".yaml", ".json"), ids=lambda p: str(p.relative_to(DEPLOY)))
def test_deploy_file_parses(path: Path) -> None:
    if path.suffix == ".json":
        assert isinstance(json.loads(path.read_text(encoding="utf-8")), dict)
    else:
        docs = load_yaml_documents(path)
        assert docs, f"{path} holds no YAML document"
        assert all(isinstance(d, dict) for d in docs)


def test_the_deploy_files_are_there() -> None:
    found = {str(p.relative_to(DEPLOY)) for p in deploy_files(".yml", ".yaml", ".json")}
    assert found >= EXPECTED_FILES


@pytest.mark.parametrize("doc", ["docs/deploy.md", "deploy/clickhouse/README.md"])
def test_deploy_docs_name_real_files_and_settings(doc: str) -> None:
    text = (DEPLOY.parent / doc).read_text(encoding="utf-8")
    # deploy/.env is the operator's copy of deploy/.env.example, never in the repository.
    paths = set(re.findall(r"(?<![\w/.])deploy/[\w./-]*\w", text)) - {"deploy/.env"}
    assert paths, f"{doc} names no deploy file"
    assert all((DEPLOY.parent / p).exists() for p in paths), [p for p in paths if not (DEPLOY.parent / p).exists()]
    named = set(re.findall(r"\bPIXELTRACK_[A-Z][A-Z_]*\b", text))
    unknown = named - SETTING_VARS - PROCESS_VARS
    assert not unknown, f"{doc} names {unknown}, which are not settings"


# --- docker compose ----------------------------------------------------------------------------

def test_compose_runs_every_part() -> None:
    services = compose()["services"]
    assert {"kafka", "kafka-topics", "clickhouse", "migrate", "edge-1", "edge-2", "lb", "api", "processors",
            "dashboard"} <= set(services)
    assert services["kafka"]["image"].startswith("apache/kafka:")
    assert set(services["kafka"]["environment"]["KAFKA_PROCESS_ROLES"].split(",")) == {"broker", "controller"}
    cluster_id = services["kafka"]["environment"]["CLUSTER_ID"]
    assert len(base64.urlsafe_b64decode(cluster_id + "==")) == 16, "a KRaft cluster id is 16 bytes, base64url"
    assert services["clickhouse"]["image"].startswith("clickhouse/clickhouse-server:")
    assert services["migrate"]["command"] == ["migrate"]
    assert services["migrate"]["restart"] == "no"
    assert services["api"]["command"] == ["api"]
    assert services["processors"]["command"] == ["process"]
    assert services["processors"]["deploy"]["replicas"] == 2
    assert services["processors"]["depends_on"]["migrate"]["condition"] == "service_completed_successfully"
    assert services["dashboard"]["command"][0] == "dashboard"


def test_compose_has_two_edges_behind_the_load_balancer() -> None:
    doc = compose()
    services = doc["services"]
    edges = sorted(name for name, s in services.items() if s.get("command") == ["edge"])
    assert edges == ["edge-1", "edge-2"]
    lb = services["lb"]
    assert "8080:8080" in lb["ports"]
    assert all("ports" not in services[e] for e in edges), "only the load balancer is reachable from outside"
    assert set(edges) <= set(lb["depends_on"])

    mounts = [v.split(":") for v in lb["volumes"]]
    config = next(DEPLOY / src for src, dst, *_ in mounts if dst.endswith("haproxy.cfg"))
    cfg = config.read_text(encoding="utf-8")
    servers = set(re.findall(r"^\s*server\s+\S+\s+([\w.-]+):(\d+)", cfg, re.M))
    assert servers == {(e, "8080") for e in edges}
    assert re.search(r"http-check send meth GET uri /readyz", cfg), "the LB must follow the edges' readiness"
    assert re.search(r"http-request set-header X-Forwarded-For .*%\[src\]", cfg)

    lb_ip = ipaddress.ip_address(lb["networks"]["pixeltrack"]["ipv4_address"])
    subnet = ipaddress.ip_network(doc["networks"]["pixeltrack"]["ipam"]["config"][0]["subnet"])
    assert lb_ip in subnet
    for e in edges:
        env = services[e]["environment"]
        trusted = [ipaddress.ip_network(c) for c in settings_from(
            {"PIXELTRACK_TRUSTED_PROXIES": env["PIXELTRACK_TRUSTED_PROXIES"]}).trusted_proxies]
        assert any(lb_ip in net for net in trusted), f"{e} must trust the LB's X-Forwarded-For"
        assert not any(net.prefixlen == 0 for net in trusted), f"{e} must not trust every address"
        assert env["PIXELTRACK_EDGE_HOST"] == "0.0.0.0"


def test_compose_gives_each_edge_its_own_spool_volume() -> None:
    doc = compose()
    services = doc["services"]
    spools = []
    for e in ("edge-1", "edge-2"):
        spool_dir = services[e]["environment"]["PIXELTRACK_SPOOL_DIR"]
        volume = next(v.split(":")[0] for v in services[e]["volumes"] if v.split(":")[1] == spool_dir)
        assert volume in doc["volumes"], f"{e}: the spool is a named volume"
        spools.append(volume)
    assert len(set(spools)) == 2, "two edges never share one journal"
    assert any(v.split(":")[1] == "/var/lib/clickhouse" for v in services["clickhouse"]["volumes"])
    assert any(v.split(":")[1] == "/var/lib/kafka/data" for v in services["kafka"]["volumes"])


def test_compose_publishes_the_dashboard_on_loopback_only() -> None:
    """The dashboard has no login: its port is bound to 127.0.0.1, never to every interface."""
    ports = compose()["services"]["dashboard"].get("ports", [])
    for port in ports:
        assert str(port).startswith("127.0.0.1:"), f"dashboard port {port!r} is published on every interface"


def test_compose_healthchecks() -> None:
    services = compose()["services"]
    for name in ("kafka", "clickhouse", "edge-1", "edge-2", "lb", "api", "dashboard"):
        assert "healthcheck" in services[name], f"{name} has no healthcheck"
    assert "/readyz" in " ".join(services["edge-1"]["healthcheck"]["test"])
    assert "/v1/health" in " ".join(services["api"]["healthcheck"]["test"])
    # SIGTERM drains within 10 s and stops the producer within 5 s: the grace period covers both.
    assert int(services["edge-1"]["stop_grace_period"].removesuffix("s")) >= 20


def test_compose_sets_only_real_settings_and_takes_secrets_from_the_env_file() -> None:
    services = compose()["services"]
    example = env_example()
    for name, service in services.items():
        env: dict[str, str] = service.get("environment", {})
        pixeltrack = {k: str(v) for k, v in env.items() if k.startswith("PIXELTRACK_")}
        assert set(pixeltrack) <= SETTING_VARS, f"{name}: {set(pixeltrack) - SETTING_VARS} are not settings"
        for key in SECRET_SETTINGS & set(pixeltrack):
            required = [m[0] for m in COMPOSE_VAR.finditer(pixeltrack[key]) if m[2] == ":?"]
            assert required, f"{name}: {key} must come from deploy/.env (${{VAR:?...}}), not the compose file"
        if pixeltrack:
            # Values validate as settings once compose has filled in the variables.
            filled = {k: COMPOSE_VAR.sub(lambda m: m[3] if m[2] == ":-" else "x", v) for k, v in pixeltrack.items()}
            filled.pop("PIXELTRACK_SIGNING_KEYS", None)
            settings_from(filled)
    text = (DEPLOY / "docker-compose.yml").read_text(encoding="utf-8")
    used = {m[1] for m in COMPOSE_VAR.finditer(text)}
    assert used <= set(example), f"{used - set(example)} are used by compose but missing from .env.example"


def test_env_example_holds_no_secrets() -> None:
    example = env_example()
    assert {k for k in example if k.startswith("PIXELTRACK_")} <= SETTING_VARS
    for key in ("PIXELTRACK_SIGNING_KEYS", "PIXELTRACK_API_KEYS", "CLICKHOUSE_PASSWORD"):
        assert example[key] == "", f"{key} must be empty in the example (compose refuses to start without it)"


# --- Kubernetes ---------------------------------------------------------------------------------

def _by_kind(objects: list[dict[str, Any]], kind: str) -> dict[str, dict[str, Any]]:
    return {o["metadata"]["name"]: o for o in objects if o["kind"] == kind}


def _containers(objects: list[dict[str, Any]]) -> list[tuple[str, dict[str, Any]]]:
    return [(w["metadata"]["name"], c) for w, t in pod_specs(objects) for c in t["spec"]["containers"]]


def test_kustomization_lists_every_manifest() -> None:
    listed = yaml.safe_load((K8S / "kustomization.yaml").read_text(encoding="utf-8"))["resources"]
    files = sorted(p.name for p in K8S.glob("*.y*ml") if p.name != "kustomization.yaml")
    assert sorted(listed) == files


def test_k8s_has_the_required_objects() -> None:
    objects = k8s_objects()
    kinds = {o["kind"] for o in objects}
    assert {"Namespace", "ConfigMap", "Secret", "Deployment", "StatefulSet", "Service", "HorizontalPodAutoscaler",
            "PodDisruptionBudget", "Job", "Ingress"} <= kinds
    assert set(_by_kind(objects, "Deployment")) == {"api", "processors", "dashboard"}
    assert set(_by_kind(objects, "StatefulSet")) == {"edge"}
    assert set(_by_kind(objects, "Job")) == {"migrate", "kafka-topics"}
    assert {"edge", "api", "dashboard"} <= set(_by_kind(objects, "Service"))
    args = {name: c.get("args") for name, c in _containers(objects) if c["image"] == "pixeltrack"}
    assert args["edge"] == ["edge"]
    assert args["api"] == ["api"]
    assert args["processors"] == ["process"]
    assert args["migrate"] == ["migrate"]
    assert args["dashboard"][0] == "dashboard"


def test_k8s_sets_only_real_settings() -> None:
    objects = k8s_objects()
    configmaps = _by_kind(objects, "ConfigMap")
    secret = _by_kind(objects, "Secret")["pixeltrack-secrets"]
    data = configmaps["pixeltrack-config"]["data"]
    assert set(data) <= SETTING_VARS, f"{set(data) - SETTING_VARS} are not settings"
    assert not SECRET_SETTINGS & set(data), "secrets belong in the Secret"
    settings_from(data)  # every value validates
    for workload, container in _containers(objects):
        for ref in container.get("envFrom", []):
            assert set(ref) == {"configMapRef"}, f"{workload}: secrets go one by one (secretKeyRef), never envFrom"
            assert ref["configMapRef"]["name"] in configmaps
        for var in container.get("env", []):
            assert var["name"] in SETTING_VARS, f"{workload}: {var['name']} is not a setting"
            if var["name"] in SECRET_SETTINGS:
                ref = var["valueFrom"]["secretKeyRef"]
                assert ref["name"] == "pixeltrack-secrets"
                assert ref["key"] in secret["stringData"], f"{workload}: no key {ref['key']} in the Secret"


def test_k8s_secret_holds_placeholders_that_fail_closed() -> None:
    values = _by_kind(k8s_objects(), "Secret")["pixeltrack-secrets"]["stringData"]
    with pytest.raises(ValueError, match="not base64url"):
        Keyring.parse(values["signing-keys"])
    assert values["api-keys"] == ""
    assert all("<password>" in values[k] for k in ("clickhouse-dsn", "clickhouse-reader-dsn"))


def test_edge_probes_shutdown_spool_and_scrape() -> None:
    objects = k8s_objects()
    edge = _by_kind(objects, "StatefulSet")["edge"]
    config = _by_kind(objects, "ConfigMap")["pixeltrack-config"]["data"]
    pod = edge["spec"]["template"]
    container = pod["spec"]["containers"][0]
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
    port = {p["name"]: p["containerPort"] for p in container["ports"]}["http"]
    assert port == Settings.model_fields["edge_port"].default
    command = container["lifecycle"]["preStop"]["exec"]["command"]
    assert command[0] == "sleep"
    # preStop, then SIGTERM: drain (10 s) and producer stop (5 s) must fit before SIGKILL.
    assert pod["spec"]["terminationGracePeriodSeconds"] >= int(command[1]) + 10 + 5 + 5
    mounts = {m["mountPath"]: m["name"] for m in container["volumeMounts"]}
    spool = mounts[config["PIXELTRACK_SPOOL_DIR"]]
    claim = next(c for c in edge["spec"]["volumeClaimTemplates"] if c["metadata"]["name"] == spool)
    size = claim["spec"]["resources"]["requests"]["storage"]
    assert size.endswith("Gi")
    assert int(size[:-2]) << 30 > int(config["PIXELTRACK_SPOOL_MAX_BYTES"]), "the spool bound fits its volume"
    assert edge["spec"]["persistentVolumeClaimRetentionPolicy"]["whenScaled"] == "Retain"
    annotations = pod["metadata"]["annotations"]
    assert annotations["prometheus.io/scrape"] == "true"
    assert annotations["prometheus.io/port"] == str(port)
    assert annotations["prometheus.io/path"] == "/metrics"
    assert "replicas" not in edge["spec"], "the HPA owns the edge count"


def test_processors_are_scraped_on_their_metrics_port() -> None:
    objects = k8s_objects()
    config = _by_kind(objects, "ConfigMap")["pixeltrack-config"]["data"]
    pod = _by_kind(objects, "Deployment")["processors"]["spec"]["template"]
    port = config.get("PIXELTRACK_PROCESSOR_METRICS_PORT",
                      str(Settings.model_fields["processor_metrics_port"].default))
    assert port != "0"
    # Prometheus scrapes the pod's address: a loopback host (the setting's default) would refuse it
    host = config.get("PIXELTRACK_PROCESSOR_METRICS_HOST", Settings.model_fields["processor_metrics_host"].default)
    assert not ipaddress.ip_address(host).is_loopback
    assert pod["metadata"]["annotations"]["prometheus.io/scrape"] == "true"
    assert pod["metadata"]["annotations"]["prometheus.io/port"] == port
    assert {p["containerPort"] for p in pod["spec"]["containers"][0]["ports"]} == {int(port)}


def test_k8s_selectors_and_references_meet() -> None:
    objects = k8s_objects()
    workloads = {(w["kind"], w["metadata"]["name"]): t for w, t in pod_specs(objects)}
    for hpa in _by_kind(objects, "HorizontalPodAutoscaler").values():
        ref = hpa["spec"]["scaleTargetRef"]
        assert (ref["kind"], ref["name"]) in workloads
    edge_labels = workloads[("StatefulSet", "edge")]["metadata"]["labels"]
    for pdb in _by_kind(objects, "PodDisruptionBudget").values():
        assert pdb["spec"]["selector"]["matchLabels"].items() <= edge_labels.items()
    services = _by_kind(objects, "Service")
    for name, svc in services.items():
        selected = [t for t in workloads.values() if svc["spec"]["selector"].items() <= t["metadata"]["labels"].items()]
        assert len(selected) == 1, f"Service {name} selects {len(selected)} workloads"
        port_names = {p.get("name") for c in selected[0]["spec"]["containers"] for p in c.get("ports", [])}
        assert {p["targetPort"] for p in svc["spec"]["ports"]} <= port_names
    for ingress in _by_kind(objects, "Ingress").values():
        for rule in ingress["spec"]["rules"]:
            for path in rule["http"]["paths"]:
                backend = path["backend"]["service"]
                assert backend["name"] in services
                assert backend["port"]["name"] in {p["name"] for p in services[backend["name"]]["spec"]["ports"]}
                assert path["path"] in _public_edge_paths(), "only tracking paths are public"
    stateful = _by_kind(objects, "StatefulSet")["edge"]
    assert services[stateful["spec"]["serviceName"]]["spec"]["clusterIP"] == "None"


def test_k8s_pods_run_unprivileged() -> None:
    for workload, template in pod_specs(k8s_objects()):
        assert template["spec"]["securityContext"]["runAsNonRoot"] is True, workload
        for c in template["spec"]["containers"]:
            assert c["securityContext"]["allowPrivilegeEscalation"] is False, workload
            assert c["securityContext"]["capabilities"]["drop"] == ["ALL"], workload


# --- Grafana ------------------------------------------------------------------------------------

SAMPLE_SUFFIXES = {"counter": ["_total"], "histogram": ["_bucket", "_sum", "_count"]}


def _metric_samples() -> set[str]:
    """Every sample name the edge and the processors export."""
    names: set[str] = set()
    for module in (edge_metrics, processor_metrics):
        for obj in vars(module).values():
            if isinstance(obj, MetricWrapperBase):
                for metric in obj.collect():
                    names.update(metric.name + s for s in SAMPLE_SUFFIXES.get(metric.type, [""]))
    return names


def test_grafana_sql_reads_only_the_analyst_views() -> None:
    queries = grafana_sql(dashboard())
    read = {name for sql in queries for name in SQL_SOURCE.findall(sql)}
    assert read == ANALYST_VIEWS


def test_grafana_has_a_campaign_variable_every_campaign_panel_uses() -> None:
    doc = dashboard()
    variables = {v["name"]: v for v in doc["templating"]["list"]}
    assert variables["campaign"]["type"] == "query"
    assert variables["campaign"]["datasource"]["type"] == "grafana-clickhouse-datasource"
    for panel in grafana_panels(doc):
        for target in panel.get("targets", []):
            if "rawSql" in target:
                assert "campaign = ${campaign:singlequote}" in target["rawSql"], panel["title"]


def test_grafana_promql_uses_exported_metrics() -> None:
    exprs = grafana_promql(dashboard())
    used = {m for e in exprs for m in re.findall(r"\b(pixeltrack_[a-z_]+)", e)}
    assert used <= _metric_samples(), f"{used - _metric_samples()} are not exported"
    for base in ("pixeltrack_edge_hits_total", "pixeltrack_edge_queue_depth", "pixeltrack_edge_spool_bytes",
                 "pixeltrack_edge_publish_seconds", "pixeltrack_hits_total", "pixeltrack_insert_seconds",
                 "pixeltrack_consumer_lag", "pixeltrack_dead_letters_total"):
        assert any(u.startswith(base) for u in used), f"no panel shows {base}"


def test_grafana_panels_do_not_overlap() -> None:
    cells: set[tuple[int, int]] = set()
    for panel in dashboard()["panels"]:
        g = panel["gridPos"]
        mine = {(x, y) for x in range(g["x"], g["x"] + g["w"]) for y in range(g["y"], g["y"] + g["h"])}
        assert g["x"] + g["w"] <= 24
        assert not cells & mine, f"panel {panel['title']!r} overlaps another"
        cells |= mine


def grafana_to_clickhouse(sql: str) -> str:
    """Dashboard SQL as Grafana would send it, for one tenant, campaign and time range."""
    sql = sql.replace("${tenant:singlequote}", "'-'").replace("${campaign:singlequote}", "'spring'")
    sql = re.sub(r"\$__timeFilter\((\w+)\)",
                 r"\1 >= toDateTime('2025-01-01 00:00:00', 'UTC') AND \1 <= toDateTime('2025-02-01 00:00:00', 'UTC')",
                 sql)
    assert "$" not in sql, f"a Grafana macro or variable the test does not know: {sql}"
    return sql


def test_grafana_sql_runs_on_the_schema(clickhouse: ClickHouseDb) -> None:
    client = clickhouse.client()
    try:
        client.command("INSERT INTO sends (campaign, variant, message_id, recipient_id, sent_at) "
                       "VALUES ('spring', 'A', 'm1', 'r1', '2025-01-10 10:00:00')")
        client.command("INSERT INTO events (hit_id, kind, ts, campaign, variant, message_id, verdict, source, "
                       "mail_client, device, country, revision, sign) VALUES ('h1', 'open', '2025-01-10 11:00:00', "
                       "'spring', 'A', 'm1', 'human', 'direct', 'Apple Mail', 'mobile', 'FR', 0, 1)")
        for sql in grafana_sql(dashboard()):
            columns = client.query(f"DESCRIBE ({grafana_to_clickhouse(sql)})").result_rows
            assert columns, sql
            client.query(grafana_to_clickhouse(sql))
        summary = client.query(grafana_to_clickhouse(
            "SELECT sum(delivered), sum(unique_opens) FROM campaign_summary "
            "WHERE tenant = if(${tenant:singlequote} = '-', '', ${tenant:singlequote}) "
            "AND campaign = ${campaign:singlequote}")).result_rows
        assert [tuple(r) for r in summary] == [(1, 1)]
    finally:
        client.close()


# --- every minted link reaches an edge -----------------------------------------------------------

def _edge_internal_paths() -> set[str]:
    """Paths only the cluster uses: the edge's probes and its scrape path, as the manifests name them."""
    pod = _by_kind(k8s_objects(), "StatefulSet")["edge"]["spec"]["template"]
    paths = {pod["metadata"]["annotations"]["prometheus.io/path"]}
    for container in pod["spec"]["containers"]:
        paths |= {container[probe]["httpGet"]["path"] for probe in ("readinessProbe", "livenessProbe", "startupProbe")
                  if probe in container}
    return paths


def _public_edge_paths() -> set[str]:
    """What the public must reach: every prefix the SDK mints, and every edge route but the internal ones."""
    return minted_prefixes() | (edge_route_prefixes() - _edge_internal_paths())


def _ingress_unrouted(required: set[str]) -> dict[str, set[str]]:
    """host → the required prefixes the edge Ingress does not send to the edge Service there."""
    ingress = _by_kind(k8s_objects(), "Ingress")["edge"]
    edge_port = "http"
    missing = {}
    for rule in ingress["spec"]["rules"]:
        routed = {p["path"] for p in rule["http"]["paths"]
                  if p["pathType"] == "Prefix" and p["backend"]["service"]["name"] == "edge"
                  and p["backend"]["service"]["port"]["name"] == edge_port}
        missing[rule["host"]] = {need for need in required
                                 if not any(need.startswith(r.rstrip("/") + "/") or need == r for r in routed)}
    return missing


HAPROXY_RULE = re.compile(r"^\s*(http-request\s+deny|use_backend\s+(\S+)|default_backend\s+(\S+))(.*)$")
HAPROXY_PATH_ACL = re.compile(r"\bif\s+\{\s*(path_beg|path)\s+([^}]+?)\s*\}\s*$")


def _haproxy_backend(cfg: str, frontend: str, path: str) -> str | None:
    """The backend the frontend sends `path` to (None: denied or no backend), from its deny, use_backend
    and default_backend lines; a rule with a condition this reader does not know fails the test."""
    block = re.search(rf"^frontend\s+{frontend}\s*$(.*?)(?=^\S|\Z)", cfg, re.M | re.S)
    assert block, f"haproxy.cfg has no frontend {frontend}"
    default = None
    for line in block.group(1).splitlines():
        rule = HAPROXY_RULE.match(line)
        if rule is None:
            continue
        if rule.group(3):
            default = rule.group(3)
            continue
        cond = HAPROXY_PATH_ACL.search(rule.group(4))
        assert cond, f"haproxy.cfg: cannot tell which paths {line.strip()!r} applies to"
        matcher, values = cond.group(1), cond.group(2).split()
        hit = any(path.startswith(v) for v in values) if matcher == "path_beg" else path in values
        if hit:
            return rule.group(2)  # None for a deny
    return default


def _haproxy_unrouted(required: set[str]) -> set[str]:
    services = compose()["services"]
    mounts = [v.split(":") for v in services["lb"]["volumes"]]
    cfg = next(DEPLOY / src for src, dst, *_ in mounts if dst.endswith("haproxy.cfg")).read_text(encoding="utf-8")
    return {need for need in required if _haproxy_backend(cfg, "tracking", need + "token") != "edges"}


def test_the_edge_answers_every_minted_link() -> None:
    minted = minted_prefixes()
    assert {"/o/", "/c/", "/u/"} <= minted, "the SDK's URL builders were not all found"
    assert minted <= edge_route_prefixes(), "the SDK mints a link the edge has no route for"


def test_ingress_routes_every_tracking_path_on_every_host() -> None:
    required = _public_edge_paths()
    missing = _ingress_unrouted(required)
    assert missing, "the ingress has no host"
    assert all(not paths for paths in missing.values()), f"not routed to the edges: {missing}"
    # ... and keeps the probes and metrics inside the cluster.
    internal = _ingress_unrouted(_edge_internal_paths())
    assert all(paths == _edge_internal_paths() for paths in internal.values()), internal


def test_haproxy_routes_every_tracking_path_to_the_edges() -> None:
    assert _haproxy_unrouted(_public_edge_paths()) == set()
    assert _haproxy_unrouted({"/metrics"}) == {"/metrics"}, "the edges' metrics stay away from the public"


def test_a_new_kind_of_link_fails_the_routing_checks_until_routed(monkeypatch: pytest.MonkeyPatch) -> None:
    """The required paths come from the code: a URL builder added to the SDK (here a made-up /z/ kind) is a
    path the ingress does not route yet, so the checks above fail until the deploy files route it."""
    from pixeltrack import sdk

    def zap_url(self: sdk.Tracker, m: sdk.Message, url: str) -> str:
        return f"{self.base_url}/z/{self.click_url(m, url).rsplit('/', 1)[1]}"

    monkeypatch.setattr(sdk.Tracker, "zap_url", zap_url, raising=False)
    assert "/z/" in minted_prefixes()
    assert all("/z/" in missing for missing in _ingress_unrouted(_public_edge_paths()).values())
    assert "/z/" not in edge_route_prefixes()


def test_grafana_shows_machines_by_source_and_reason(clickhouse: ClickHouseDb) -> None:
    (panel,) = [p for p in grafana_panels(dashboard()) if p["title"].startswith("Why machines")]
    sql = grafana_to_clickhouse(panel["targets"][0]["rawSql"])
    assert "sum(sign)" in sql  # a revised hit counts once, under its final verdict
    client = clickhouse.client()
    try:
        rows = [("h1", "open", "apple_mpp", ["ua_bare_mozilla", "net_privacy_relay"], 0, 1),
                ("h2", "open", "apple_mpp", ["ua_bare_mozilla"], 0, 1),
                ("h3", "click", "scanner", ["link_burst"], 0, 1),
                ("h4", "click", "direct", ["fast_after_send"], 0, 1),  # written as a person's first...
                ("h4", "click", "direct", ["fast_after_send"], 0, -1),
                ("h4", "click", "scanner", ["time_of_click_check"], 1, 1)]  # ...then revised to a scanner's
        for hit_id, kind, source, reasons, revision, sign in rows:
            verdict = "human" if source == "direct" else "machine"
            client.command(f"INSERT INTO events (hit_id, kind, ts, campaign, message_id, verdict, source, reasons, "
                           f"revision, sign) VALUES ('{hit_id}', '{kind}', '2025-01-10 11:00:00', 'spring', 'm1', "
                           f"'{verdict}', '{source}', {reasons!r}, {revision}, {sign})")
        client.command("INSERT INTO events (hit_id, kind, ts, campaign, message_id, verdict, source, reasons, "
                       "revision, sign) VALUES ('h9', 'open', '2025-03-10 11:00:00', 'spring', 'm1', 'machine', "
                       "'bot', ['lib_ua'], 0, 1)")  # outside the time range
        got = [tuple(r) for r in client.query(sql).result_rows]
    finally:
        client.close()
    assert got == [("open", "apple_mpp", "ua_bare_mozilla", 2), ("open", "apple_mpp", "net_privacy_relay", 1),
                   ("click", "scanner", "link_burst", 1), ("click", "scanner", "time_of_click_check", 1)]


def test_grafana_shows_sources_and_reasons_in_the_words_of_the_dashboard() -> None:
    (panel,) = [p for p in grafana_panels(dashboard()) if p["title"].startswith("Why machines")]
    overrides = panel["fieldConfig"]["overrides"]
    assert overrides == grafana_label_overrides(), "run python -m tests.unit.deploy.deployfiles"
    shown = {o["matcher"]["options"]: o["properties"][0]["value"][0]["options"] for o in overrides}
    assert shown["source"]["apple_mpp"]["text"] == "Apple Mail Privacy Protection"
    assert shown["reason"]["fast_after_send"]["text"] == "opened within 2 min"
    assert set(shown["reason"]) >= {"link_burst", "ua_bare_mozilla", "net_privacy_relay"}
