"""Tenants: brands sharing one installation, each with its own tracking domains and signing keys."""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from pathlib import Path

from schemas.consents import TRACKING_MODES
from schemas.esp import EspSecrets
from schemas.tokens import ClickRef, Keyring, TokenError, TokenKind, TokenPayload, new_secret, verify_click_ref

NAME_RE = re.compile(r"^[a-z0-9][a-z0-9_-]{0,62}$")
DOMAIN_RE = re.compile(r"^(?=.{1,253}$)([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z]{2,63}$|^localhost$|^127\.0\.0\.1$")


REGION_RE = re.compile(r"^[a-z]{2,8}$")
MAX_REMEMBERED_HOSTS = 1024  # Host headers whose tenant is remembered (tracking domains are few)


def host_name(host: str) -> str:
    """A Host header's name: lower case, without its port, then without one trailing dot (the root of a
    fully qualified name: "A.example.com.:8080" is "a.example.com"); "[v6]" is kept in brackets."""
    host = host.strip().lower()
    if host.startswith("["):  # [v6]:port
        return host.split("]", 1)[0] + "]"
    if host.count(":") == 1:
        host = host.rsplit(":", 1)[0]
    return host[:-1] if host.endswith(".") else host


@dataclass(frozen=True, slots=True)
class Tenant:
    name: str
    domains: tuple[str, ...]
    keys: str  # "kid:secret,kid2:secret2" (base64url secrets)
    current_key: str = ""
    api_keys: tuple[str, ...] = ()
    esp: EspSecrets = field(default_factory=EspSecrets)  # its email platforms' webhook secrets (docs/esp.md)
    # Site visits without a click id are counted per site; with this on, also per visitor organisation
    # (the AS name of the visitor's network; never the address). docs/site.md.
    site_visit_org: bool = False
    region: str = ""  # where the tenant's recipients are, e.g. "eu": unknown consent means aggregate there
    unknown_consent: str = ""  # individual | aggregate; "" = by region, else the installation's setting

    def keyring(self) -> Keyring:
        return Keyring.parse(self.keys, self.current_key or None)

    def unknown_means(self, default: str = "individual") -> str:
        """What a recipient of unknown consent gets: the tenant's `unknown_consent`; else `aggregate` for a
        tenant in the EU (region "eu"); else `default` (the installation's PIXELTRACK_UNKNOWN_CONSENT)."""
        if self.unknown_consent:
            return self.unknown_consent
        return "aggregate" if self.region == "eu" else default


@dataclass(slots=True)
class TenantRegistry:
    """Host → tenant → keyring. A token is accepted only with the keys of the tenant whose domain it
    was fetched on, and only if it names that tenant: tenant A's token on tenant B's domain is a
    forgery like any other. With no tenants configured, every host is the default tenant ("")."""

    tenants: dict[str, Tenant] = field(default_factory=dict)
    default: Keyring | None = None  # the settings' keys: tenant "" on any host no tenant claims
    _by_host: dict[str, tuple[str, Keyring]] = field(default_factory=dict)
    # for_host's answers by Host header as received: the edge and the processors ask once a fetch, and
    # normalising the header costs more than the lookup. Bounded: Host headers are the client's to choose.
    _seen: dict[str, tuple[str, Keyring] | None] = field(default_factory=dict)
    _rings: dict[str, Keyring] = field(default_factory=dict)  # parsed once: a keyring's parse is not free

    def __post_init__(self) -> None:
        self._by_host = {}
        self._seen = {}
        self._rings = {}
        for t in self.tenants.values():
            ring = self._rings[t.name] = t.keyring()
            for d in t.domains:
                self._by_host[d] = (t.name, ring)

    def for_host(self, host: str) -> tuple[str, Keyring] | None:
        """(tenant, keyring) for a request's Host, or None when no tenant serves it and there is no
        default keyring."""
        try:
            return self._seen[host]
        except KeyError:
            pass
        found = self._by_host.get(host_name(host))
        if found is None and self.default is not None:
            found = ("", self.default)
        if len(self._seen) >= MAX_REMEMBERED_HOSTS:
            self._seen.clear()  # junk Host headers filled it: start again rather than stop remembering
        self._seen[host] = found
        return found

    def verify_token(self, host: str, token: str, kind: TokenKind, now_ms: int | None = None) -> TokenPayload:
        """The one rule for tokens, at the edge and in the processors: a token fetched on `host` is
        checked with the keys of the tenant that host belongs to ("" on hosts no tenant claims, with the
        default keys) and must name that same tenant. So tenant T's token verifies only with T's keys
        and only on T's domains, and a token naming T signed with the default keys is a forgery
        anywhere. `now_ms`: also refuse an expired token. TokenError otherwise (unknown_host,
        wrong_tenant, or the keyring's reason)."""
        found = self.for_host(host)
        if found is None:
            raise TokenError("unknown_host", host[:100])
        tenant, keyring = found
        payload = keyring.verify(token, kind, now_ms)
        if payload.tenant != tenant:
            raise TokenError("wrong_tenant", f"a token of {payload.tenant[:64]!r} on a domain of {tenant!r}")
        return payload

    def verify_click_id(self, host: str, click_id: str) -> ClickRef:
        """A click id (schemas.tokens.ClickRef) posted on `host`, by verify_token's rule: checked with the
        keys of the host's tenant, and naming that tenant. TokenError otherwise."""
        found = self.for_host(host)
        if found is None:
            raise TokenError("unknown_host", host[:100])
        tenant, keyring = found
        ref = verify_click_ref(keyring, click_id)
        if ref.tenant != tenant:
            raise TokenError("wrong_tenant", f"a click id of {ref.tenant[:64]!r} on a domain of {tenant!r}")
        return ref

    def site_visit_org(self, tenant: str, default: bool = False) -> bool:
        """Whether `tenant` counts its site visits by visitor organisation (Tenant.site_visit_org);
        `default` for tenant "" (the settings' PIXELTRACK_SITE_VISIT_ORG)."""
        t = self.tenants.get(tenant)
        return t.site_visit_org if t is not None else default and tenant == ""
    def unknown_means(self, name: str, default: str = "individual") -> str:
        """What unknown consent means for tenant `name` (Tenant.unknown_means; `default` for tenant "")."""
        t = self.tenants.get(name)
        return t.unknown_means(default) if t is not None else default

    def for_tenant(self, name: str) -> Keyring | None:
        if name in self._rings:
            return self._rings[name]
        return self.default if name == "" else None

    # --- the tenants file (JSON, mode 0600: it holds secrets) ---

    @classmethod
    def load(cls, path: Path | None, default: Keyring | None = None) -> TenantRegistry:
        if path is None or not path.exists():
            return cls({}, default)
        try:
            doc = json.loads(path.read_text())
        except ValueError as exc:
            raise ValueError(f"tenants file {path}: not JSON ({exc})") from None
        listed = doc.get("tenants", []) if isinstance(doc, dict) else None
        if not isinstance(listed, list):
            raise ValueError(f"tenants file {path}: must be an object with a list under \"tenants\"")
        tenants = {}
        for i, t in enumerate(listed):
            where = f"tenants file {path}: tenants[{i}]"
            org = t.get("site_visit_org", False) if isinstance(t, dict) else False
            if not isinstance(org, bool):
                raise ValueError(f"{where}: site_visit_org must be true or false")
            tenant = Tenant(_text(t, "name", where), _texts(t, "domains", where), _text(t, "keys", where),
                            _text(t, "current_key", where, ""), _texts(t, "api_keys", where),
                            EspSecrets.from_json(t.get("esp"), where), org,
                            region=_text(t, "region", where, "").lower(),
                            unknown_consent=_text(t, "unknown_consent", where, ""))
            validate(tenant, where)
            tenants[tenant.name] = tenant
        _check_unique_domains(tenants.values())
        return cls(tenants, default)

    def save(self, path: Path) -> None:
        doc = {"tenants": [{"name": t.name, "domains": list(t.domains), "keys": t.keys,
                            "current_key": t.current_key, "api_keys": list(t.api_keys),
                            **({"esp": t.esp.to_json()} if t.esp.to_json() else {}),
                            **({"site_visit_org": True} if t.site_visit_org else {}),
                            **({"region": t.region} if t.region else {}),
                            **({"unknown_consent": t.unknown_consent} if t.unknown_consent else {})}
                           for t in sorted(self.tenants.values(), key=lambda t: t.name)]}
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            json.dump(doc, f, indent=2)
        os.replace(tmp, path)


def _text(t: object, name: str, where: str, default: str | None = None) -> str:
    """A tenant's string field; ValueError names it when missing (without a default) or not a string."""
    value = t.get(name, default) if isinstance(t, dict) else None
    if not isinstance(value, str):
        raise ValueError(f"{where}: {name} must be a string" + ("" if default is not None else " (required)"))
    return value


def _texts(t: object, name: str, where: str) -> tuple[str, ...]:
    """A tenant's list of strings (domains, api_keys); a bare string is refused, not split in letters."""
    value = t.get(name, []) if isinstance(t, dict) else None
    if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
        raise ValueError(f"{where}: {name} must be a list of non-empty strings")
    return tuple(value)


def validate(t: Tenant, where: str) -> None:
    if not NAME_RE.match(t.name):
        raise ValueError(f"{where}: name {t.name!r} must be lower-case letters, digits, _ or - (1-63)")
    for d in t.domains:
        if not DOMAIN_RE.match(d):
            raise ValueError(f"{where}: {d!r} is not a host name such as t.example.com")
    if t.unknown_consent and t.unknown_consent not in TRACKING_MODES:
        raise ValueError(f"{where}: unknown_consent {t.unknown_consent[:20]!r} must be one of "
                         f"{', '.join(TRACKING_MODES)}")
    if t.region and not REGION_RE.match(t.region):
        raise ValueError(f"{where}: region {t.region[:20]!r} must be 2-8 lower-case letters, e.g. eu")
    t.keyring()  # raises ValueError naming the key


def _check_unique_domains(tenants: Iterable[Tenant]) -> None:
    seen: dict[str, str] = {}
    for t in tenants:
        for d in t.domains:
            if d in seen:
                raise ValueError(f"domain {d!r} belongs to both {seen[d]!r} and {t.name!r}")
            seen[d] = t.name


# --- a tenant's keys: creation and rotation (`pixeltrack tenants`) ------------------------------------------

def key_ids(t: Tenant) -> list[str]:
    """The kids of the tenant's signing keys, in the order kept (kid:secret,...)."""
    return [k.split(":", 1)[0] for k in t.keys.split(",")]


def new_tenant(name: str, domains: Iterable[str]) -> Tenant:
    """A tenant with a fresh signing key k1 (current) and a fresh API key."""
    return Tenant(name, tuple(domains), f"k1:{new_secret()}", "k1", (new_secret(),))


def with_domains(t: Tenant, domains: Iterable[str]) -> Tenant:
    """The tenant with `domains` added to its tracking domains."""
    return replace(t, domains=t.domains + tuple(domains))


def with_next_key(t: Tenant) -> Tenant:
    """Key rotation: a fresh key k<N+1> (N the highest numbered kid) becomes the one that signs; the former
    keys stay, so links minted with them still verify until they are removed."""
    kid = f"k{max(int(k[1:]) for k in key_ids(t) if k[1:].isdigit()) + 1}"
    return replace(t, keys=f"{t.keys},{kid}:{new_secret()}", current_key=kid)
