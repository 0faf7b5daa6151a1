"""Builds the settings-derived pieces every process shares: keyrings, tenants, privacy key, processor."""

from __future__ import annotations

import logging
import os
from pathlib import Path

from pixeltrack.errors import CommandError
from processors.classify_file import build_classifier
from processors.geodata import HOSTING_ASNS
from processors.netfeeds import report_snapshot_age
from processors.pipeline import HitProcessor
from schemas import native
from schemas.privacy import load_do_not_track, recipient_key
from schemas.settings import Settings
from schemas.tenants import TenantRegistry
from schemas.tokens import Keyring, new_secret
from schemas.topics import Topics

log = logging.getLogger(__name__)

KEY_FILE = "signing.key"
API_KEY_FILE = "api.key"


def data_dir_secret(data_dir: Path, name: str, prefix: str = "") -> str:
    """A secret kept in DATA_DIR/name (mode 0600), created on first use."""
    data_dir.mkdir(parents=True, exist_ok=True)
    path = data_dir / name
    if not path.exists():
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(f"{prefix}{new_secret()}\n")
    return path.read_text().strip()


def data_dir_keyring(data_dir: Path, create: bool = True) -> Keyring:
    """The embedded mode's signing key, created in DATA_DIR on first use (by `serve`); `create` False
    (commands that mint with it) refuses a folder that has none, in one line."""
    if not create and not (data_dir / KEY_FILE).is_file():
        raise CommandError(f"no signing key in {data_dir} ({KEY_FILE}): give the folder `pixeltrack serve --data` "
                           "uses (serve creates the key at its first start), or set PIXELTRACK_SIGNING_KEYS")
    return Keyring.parse(data_dir_secret(data_dir, KEY_FILE, prefix="k1:"))


def keyring_for(settings: Settings, data_dir: Path | None = None, create: bool = True) -> Keyring:
    """Keys from settings when given (production), else the data folder's key (embedded mode)."""
    if settings.signing_keys is not None or data_dir is None:
        return settings.keyring()
    return data_dir_keyring(data_dir, create)


def minting_keyring(settings: Settings, data_dir: Path | None, tenant: str, create: bool = True) -> Keyring:
    """The keys that mint `tenant`'s links (`link`, `instrument`): its own from the tenants file, since
    the edge accepts a tenant's token only with its keys on its domains; tenant "": keyring_for's (`create`
    False: a data folder without a key is refused, not given one)."""
    if not tenant:
        return keyring_for(settings, data_dir, create)
    keyring = TenantRegistry.load(settings.tenants_file).for_tenant(tenant)
    if keyring is None:
        where = settings.tenants_file or "none: PIXELTRACK_TENANTS_FILE is not set"
        raise ValueError(f"tenant {tenant!r} is not in the tenants file ({where})")
    return keyring


def tenants_for(settings: Settings, keyring: Keyring | None) -> TenantRegistry:
    """The tenants file's tenants; `keyring` (settings' or the data folder's keys) serves tenant ""."""
    return TenantRegistry.load(settings.tenants_file, default=keyring)


def privacy_key_for(settings: Settings, keyring: Keyring | None) -> bytes:
    """The key of the recipient hashes ClickHouse keeps (schemas.privacy.recipient_key)."""
    secret = settings.privacy_key.get_secret_value() if settings.privacy_key is not None else None
    return recipient_key(tenants_for(settings, keyring), secret)


def build_processor(settings: Settings, keyring: Keyring | None) -> HitProcessor:
    log.info("processor hot path: %s", native.activate())  # chosen already by the command; else: what runs
    report_snapshot_age(settings.networks_max_age_days)
    classifier = build_classifier(
        geoip_city_db=settings.geoip_city_db, geoip_asn_db=settings.geoip_asn_db,
        geoip_default=settings.geoip_default, hosting_asns=HOSTING_ASNS,
        networks_file=settings.networks_file, internal_networks=settings.internal_networks)
    return HitProcessor(tenants_for(settings, keyring), classifier, Topics(settings.topic_prefix),
                        truncate_ips=settings.truncate_ips,
                        do_not_track=load_do_not_track(settings.do_not_track_file),
                        publish_classified=settings.publish_classified,
                        batch_max_records=settings.batch_max_records,
                        dead_letter_samples=settings.dead_letter_samples,
                        privacy_key=privacy_key_for(settings, keyring),
                        site_visit_org=settings.site_visit_org, tracking=settings.tracking,
                        unknown_consent=settings.unknown_consent)
