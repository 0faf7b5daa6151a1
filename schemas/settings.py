"""Settings: one typed, frozen object per process, read once from PIXELTRACK_* environment variables."""

from __future__ import annotations

import ipaddress
import os
import socket
from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from schemas.esp import EspSecrets
from schemas.tokens import Keyring

CsvList = Annotated[list[str], NoDecode]


def _default_edge_id() -> str:
    return socket.gethostname()[:32]


KAFKA_DEFAULT = "127.0.0.1:9092"
MAKE_KAFKA_FILE = Path(".kafka") / "bootstrap"  # where `make kafka` writes its broker's address


def _default_kafka_bootstrap() -> str:
    """The broker `make kafka` started from this folder (on a free port when 9092 was taken: it writes the
    address to .kafka/bootstrap), else 127.0.0.1:9092. PIXELTRACK_KAFKA_BOOTSTRAP wins over both."""
    try:  # only while that broker runs: `make kafka-stop` removes its pid file, not its address
        os.kill(int((MAKE_KAFKA_FILE.parent / "broker.pid").read_text()), 0)
        return MAKE_KAFKA_FILE.read_text().strip() or KAFKA_DEFAULT
    except (OSError, UnicodeDecodeError, ValueError):
        return KAFKA_DEFAULT


class Settings(BaseSettings):
    """Every setting of every pixeltrack process. Inner code receives values from here as plain
    arguments and never reads the environment itself. README.md lists them with their variables."""

    model_config = SettingsConfigDict(env_prefix="PIXELTRACK_", frozen=True, extra="forbid")

    # --- edge ---
    edge_host: str = Field("127.0.0.1", description="Address the public edge listens on.")
    edge_port: int = Field(8080, ge=0, le=65535, description="Port of the public edge.")
    edge_fast_path: bool = Field(
        True, description="Answer plain pixel and click fetches on the edge's fast path (off: aiohttp only).")
    edge_id: str = Field(default_factory=_default_edge_id, description="Name of this edge in hit records.")
    trusted_proxies: CsvList = Field(
        default_factory=list,
        description="CIDRs of load balancers whose X-Forwarded-For is believed (comma-separated).")
    queue_size: int = Field(100_000, ge=1, description="Bound of the edge's in-memory hit queue.")
    spool_dir: Path | None = Field(
        Path(".pixeltrack/spool"), description="Edge spool folder (journal of answered hits); empty = none.")
    spool_max_bytes: int = Field(
        2 << 30, ge=1 << 20,
        description="Spool bound per edge (its workers share it equally); past it hits are dropped.")
    spool_segment_bytes: int = Field(64 << 20, ge=1 << 16, description="Size of one spool segment file.")
    spool_fsync_ms: int = Field(200, ge=1, description="fsync the spool at most this often (ms).")
    publish_timeout_ms: int = Field(5000, ge=100, description="A publish not acknowledged by then fails.")
    token_ttl_days: int = Field(
        400, ge=0, description="Minted tokens expire after this many days; 0 = never.")
    # Every HTTP server (edge, API, dashboard, serve, /metrics) holds its connections to these (ingest/serving.py).
    header_timeout_seconds: float = Field(
        10.0, gt=0, le=300, description="A request head must be complete this many seconds after the connection "
        "opens or its first byte arrives, else the connection is closed (every server).")
    keepalive_timeout_seconds: float = Field(
        75.0, gt=0, le=900, description="An idle keep-alive connection is closed after this many seconds (every "
        "server); keep it above a load balancer's own idle timeout.")
    max_connections: int = Field(
        0, ge=0, description="Connections one process keeps open across its servers; more are refused (503, "
        "closed). 0 = the open-files limit minus a reserve for spool, Kafka and metrics files.")

    # --- documents of download links (ingest/objectstore.py) ---
    document_store_url: str | None = Field(
        None, pattern=r"^(https?://.*)?$", description="Base URL of the object store (S3 or compatible) holding "
        "documents; a download of an address under it redirects to a presigned GET (AWS Signature Version 4); "
        "empty = none.")
    document_store_region: str = Field("us-east-1", pattern=r"^[a-z0-9-]{1,32}$",
                                       description="The document store's region (signature scope).")
    document_store_access_key_id: str | None = Field(None, description="Access key id signing document URLs.")
    document_store_secret_access_key: SecretStr | None = Field(
        None, description="Secret access key signing document URLs (read-only access to the documents suffices).")
    document_store_session_token: SecretStr | None = Field(
        None, description="Session token of temporary credentials, signed into document URLs; empty = none.")
    document_url_seconds: int = Field(300, ge=1, le=604800,
                                      description="How long a presigned document URL stays valid (seconds).")

    # --- signing keys ---
    signing_keys: SecretStr | None = Field(
        None, description="Signing keys as kid:base64url-secret, comma-separated (rotation: several).")
    signing_key_id: str | None = Field(None, description="Key id that mints; default: the first key.")
    privacy_key: SecretStr | None = Field(
        None, description="Secret (base64url) keying the recipient hashes ClickHouse keeps (erasures, "
        "sends.recipient_key); default: derived from the current signing key. Set it when keys rotate.")

    # --- ingest API (sends, conversions) ---
    api_host: str = Field("127.0.0.1", description="Address the ingest API listens on.")
    api_port: int = Field(8081, ge=0, le=65535, description="Port of the ingest API (apart from the edge).")
    api_keys: SecretStr | None = Field(None, description="API keys accepted by the ingest API, comma-separated.")
    click_id_param: str = Field("pt_cid", pattern=r"^[A-Za-z0-9_.-]{0,40}$",
                                description="Query parameter the click redirect adds (click id); empty = never.")
    site_click_days: int = Field(
        30, ge=0, le=400, description="Days the site script (/s.js) keeps a click id in the sender's site's own "
        "storage (a page's data-days overrides it); 0 = the landing page only.")
    site_visit_org: bool = Field(
        False, description="Site visits without a click id are also counted by the visitor's organisation (AS name; "
        "never the address), for tenant \"\" (other tenants: site_visit_org in the tenants file).")

    # --- email platforms' webhooks (/v1/esp/<platform>, the default tenant's; a tenant's: tenants file) ---
    esp_sendgrid_public_key: str | None = Field(
        None, description="SendGrid's Signed Event Webhook verification key (base64, as SendGrid shows it); "
        "empty = /v1/esp/sendgrid off.")
    esp_mailgun_signing_key: SecretStr | None = Field(
        None, description="Mailgun's HTTP webhook signing key; empty = /v1/esp/mailgun off.")
    esp_postmark_auth: SecretStr | None = Field(
        None, description="user:password of the HTTP Basic auth in Postmark's webhook URL; empty = "
        "/v1/esp/postmark off.")
    esp_ses_topic_arns: CsvList = Field(
        default_factory=list, description="SNS topic ARNs (comma-separated) whose Amazon SES events "
        "/v1/esp/ses takes; empty = off.")
    esp_max_age_seconds: int = Field(
        600, ge=30, le=86_400, description="A SendGrid or Mailgun webhook signed longer ago than this is "
        "refused (replay protection).")

    # --- Kafka ---
    kafka_bootstrap: str = Field(
        default_factory=_default_kafka_bootstrap, description="Kafka bootstrap servers. Unset: the address "
        "`make kafka` wrote to .kafka/bootstrap in the working folder while its broker runs, else 127.0.0.1:9092.")
    topic_prefix: str = Field("", description="Prefix of every topic name (e.g. staging.).")
    consumer_group: str = Field("pixeltrack-processors", description="Processors' consumer group.")
    producer_linger_ms: int = Field(
        20, ge=0, description="How long the edge gathers hits before publishing a batch (ms); answers never "
        "wait for it. Bigger batches cost less CPU a hit (measured: 22 us in batches of 50, 6 us from 200 up).")
    producer_compression: Literal["none", "gzip", "lz4", "zstd"] = Field(
        "lz4", description="Producer compression codec.")

    # --- processors and ClickHouse ---
    clickhouse_dsn: str = Field(
        "chdb://.pixeltrack/chdb",
        description="clickhouse-connect DSN: chdb://PATH (embedded engine) or http(s)://… (server).")
    clickhouse_database: str = Field("pixeltrack", pattern=r"^[A-Za-z_][A-Za-z0-9_]{0,63}$",
                                     description="ClickHouse database of pixeltrack's tables.")
    batch_max_records: int = Field(20_000, ge=1, description="Most records per ClickHouse insert.")
    batch_max_ms: int = Field(1000, ge=1, description="Longest wait to fill a batch, in ms.")
    migrate_on_start: bool = Field(True, description="Processors apply the single-node DDL at start "
                                   "(turn off on a cluster: apply deploy/clickhouse/cluster.sql instead).")
    publish_classified: bool = Field(False, description="Processors publish every verdict to events.classified "
                                     "(turn on for `pixeltrack triggers`).")
    processor_metrics_host: str = Field(
        "127.0.0.1", description="Address a processor's /metrics listens on (0.0.0.0 where Prometheus scrapes "
        "the pods).")
    processor_metrics_port: int = Field(9108, ge=0, le=65535,
                                        description="Port of a processor's Prometheus /metrics (0 = off).")
    retention_days: int = Field(395, ge=1, description="TTL of raw events in ClickHouse, in days.")
    dead_letter_retention_days: int = Field(
        14, ge=1, description="TTL of dead-letter bodies (dead_letters), in days; their counts per reason "
        "(dead_letter_counts) are kept for retention_days.")
    dead_letter_samples: int = Field(
        10, ge=0, description="Dead-letter bodies stored per stage, reason, edge and minute, and six times "
        "that per hour; the rest are only counted (dead_letter_counts, pixeltrack_dead_letters_total).")

    # --- enrichment and classification ---
    geoip_city_db: Path | None = Field(None, description="MaxMind-format City (or Country) database.")
    geoip_asn_db: Path | None = Field(None, description="MaxMind-format ASN database.")
    geoip_default: bool = Field(True, description="Country and ASN from the shipped open databases where "
                                "geoip_city_db / geoip_asn_db are unset (docs/data.md); false: unknown.")
    networks_file: Path | None = Field(None, description="Extra network lists (JSON, shipped shape).")
    internal_networks: CsvList = Field(
        default_factory=list, description="The sender's own networks: hits from here are not opens.")
    networks_max_age_days: int = Field(
        90, ge=1, description="Age of the shipped network lists' data after which processors warn at start and "
        "set pixeltrack_networks_snapshot_stale (rebuild with `pixeltrack networks build`).")

    # --- behaviour triggers ---
    triggers_rules: Path | None = Field(None, description="Rules file of behaviour triggers (TOML); empty = off.")
    triggers_webhook_secret: SecretStr | None = Field(
        None, description="Signs webhooks without a secret of their own (16+ characters).")
    triggers_settle_seconds: float = Field(150.0, ge=0, description="Seconds each event is held before triggers act.")
    triggers_max_attempts: int = Field(10, ge=1, le=100, description="Webhook attempts before an action goes to "
                                       "triggers.dlq.")
    triggers_consumer_group: str = Field("pixeltrack-triggers", description="Consumer group of `pixeltrack triggers`.")

    # --- tenants and privacy ---
    tenants_file: Path | None = Field(None, description="Tenants (domains, keys) JSON; `pixeltrack tenants` edits it.")
    truncate_ips: bool = Field(True, description="Store IPv4 /24 and IPv6 /48 only (after enrichment).")
    do_not_track_file: Path | None = Field(
        None, description="Recipient hashes (one per line) whose hits are answered and never stored.")
    tracking: Literal["individual", "aggregate"] = Field(
        "individual", description="aggregate: every tenant anonymous (campaign-level tokens, no click ids, no "
        "message or recipient id in any row); individual: as each recipient's consent says (docs/consent.md).")
    unknown_consent: Literal["individual", "aggregate"] = Field(
        "individual", description="What an unknown consent means for tenants whose tenants-file entry says "
        "neither unknown_consent nor region \"eu\" (and the default tenant).")

    # --- embedded mode ---
    data_dir: Path = Field(Path(".pixeltrack"), description="Folder of `pixeltrack serve`: key, chDB, spool.")

    @field_validator("trusted_proxies", "internal_networks", "esp_ses_topic_arns", mode="before")
    @classmethod
    def _split_csv(cls, value: object) -> object:
        if isinstance(value, str):
            return [p.strip() for p in value.split(",") if p.strip()]
        return value

    @field_validator("trusted_proxies", "internal_networks")
    @classmethod
    def _cidrs(cls, value: list[str]) -> list[str]:
        for cidr in value:
            try:
                ipaddress.ip_network(cidr, strict=False)
            except ValueError:
                raise ValueError(f"{cidr!r} is not a CIDR such as 10.0.0.0/8 or 2001:db8::/32") from None
        return value

    @field_validator("clickhouse_dsn")
    @classmethod
    def _dsn(cls, value: str) -> str:
        if not value.startswith(("chdb://", "http://", "https://")):
            raise ValueError(f"{value!r}: use chdb://PATH or http(s)://host:port")
        return value

    def esp_secrets(self) -> EspSecrets:
        """The default tenant's email platform secrets; ValueError names the setting that is not usable."""
        user, _, password = (self.esp_postmark_auth.get_secret_value() if self.esp_postmark_auth else "").partition(":")
        secrets = EspSecrets((self.esp_sendgrid_public_key or "").strip(),
                             self.esp_mailgun_signing_key.get_secret_value() if self.esp_mailgun_signing_key else "",
                             user, password, tuple(self.esp_ses_topic_arns))
        secrets.check("PIXELTRACK_ESP")
        return secrets

    def kafka_bootstrap_origin(self) -> str:
        """What the banners add after the broker's address when it came from `make kafka`'s file, not from
        PIXELTRACK_KAFKA_BOOTSTRAP (or a caller's value) nor the fixed default; else ""."""
        if "kafka_bootstrap" in self.model_fields_set or self.kafka_bootstrap == KAFKA_DEFAULT:
            return ""
        return f" (from {MAKE_KAFKA_FILE}, written by `make kafka`)"

    def keyring(self) -> Keyring:
        """The signing keys; raises ValueError naming PIXELTRACK_SIGNING_KEYS when they are missing."""
        if self.signing_keys is None:
            raise ValueError("PIXELTRACK_SIGNING_KEYS is not set: give kid:secret (see `pixeltrack keygen`)")
        return Keyring.parse(self.signing_keys.get_secret_value(), self.signing_key_id)
