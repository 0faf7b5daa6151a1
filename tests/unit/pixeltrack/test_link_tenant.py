"""A tenant's links: `link`/`instrument --tenant T` sign with T's keys, and a token naming T is accepted
only with T's keys on T's domains (the one rule, TenantRegistry.verify_token, at the edge and in the
processors)."""

from __future__ import annotations

import json
from pathlib import Path

import orjson
import pytest

from ingest.client_ip import ClientIpResolver
from ingest.edge import Edge, check_token
from pixeltrack.cli import main
from processors.classify_file import build_classifier
from processors.pipeline import HitProcessor
from schemas.records import RawHit
from schemas.tenants import Tenant, TenantRegistry
from schemas.tokens import Keyring, PreferencesRef, TokenError, TokenPayload
from schemas.topics import Topics
from tests.unit.processors.builders import CHROME, HTML_ACCEPT, SENT, processor_letters
from tests.unit.processors.test_pipeline import Rec

DEFAULT_SPEC = "d1:ZGVmYXVsdC1vcGVyYXRvci1zZWNyZXQtMDEyMzQ1"
DEFAULT = Keyring.parse(DEFAULT_SPEC)
ACME = Tenant("acme", ("t.acme.example",), "a1:YWNtZS1zZWNyZXQtMDEyMzQ1Njc4OWFiY2RlZg", "a1")
EMAIL = "<html><body><p>Hi</p><a href='https://shop.example.com/p'>Shop</a></body></html>"


@pytest.fixture
def tenants_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    path = tmp_path / "tenants.json"
    TenantRegistry({"acme": ACME}).save(path)
    monkeypatch.setenv("PIXELTRACK_TENANTS_FILE", str(path))
    monkeypatch.setenv("PIXELTRACK_SIGNING_KEYS", DEFAULT_SPEC)
    monkeypatch.delenv("PIXELTRACK_SIGNING_KEY_ID", raising=False)
    return path


def registry(path: Path) -> TenantRegistry:
    return TenantRegistry.load(path, default=DEFAULT)


def link(capsys: pytest.CaptureFixture[str], *extra: str) -> dict[str, object]:
    assert main(["link", "--base-url", "https://t.acme.example", "--campaign", "c", "--message", "m-1",
                 "--recipient", "r-1", "--url", "https://shop.example.com/", "--json", *extra]) == 0
    urls: dict[str, object] = json.loads(capsys.readouterr().out)
    return urls


def pixel_token(url: object) -> str:
    return str(url).rsplit("/o/", 1)[1].removesuffix(".gif")


def test_link_for_a_tenant_signs_with_its_keys_and_works_only_on_its_domains(
        tenants_file: Path, capsys: pytest.CaptureFixture[str]) -> None:
    urls = link(capsys, "--tenant", "acme")
    token = pixel_token(urls["pixel"])
    reg = registry(tenants_file)
    assert reg.verify_token("T.acme.example:443", token, "open").tenant == "acme"
    click = str(urls["clicks"][0]).rsplit("/c/", 1)[1]  # type: ignore[index]
    assert reg.verify_token("t.acme.example", click, "click").url == "https://shop.example.com/"
    with pytest.raises(TokenError) as elsewhere:
        reg.verify_token("links.other.example", token, "open")  # a host no tenant claims: the operator's keys
    assert elsewhere.value.reason == "unknown_key"


def test_link_for_an_unknown_tenant_is_refused_by_name(tenants_file: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["link", "--base-url", "https://t.x.example", "--campaign", "c", "--message", "m",
                 "--recipient", "r", "--tenant", "nobody"]) == 2
    assert "tenant 'nobody' is not in the tenants file" in capsys.readouterr().err


def test_instrument_for_a_tenant_signs_with_its_keys(tenants_file: Path, tmp_path: Path) -> None:
    (tmp_path / "email.html").write_text(EMAIL)
    (tmp_path / "list.csv").write_text("recipient,email\nr-1,ana@example.org\n")
    out = tmp_path / "out"
    assert main(["instrument", str(tmp_path / "email.html"), "--campaign", "spring", "--tenant", "acme",
                 "--recipients", str(tmp_path / "list.csv"), "--out", str(out),
                 "--base-url", "https://t.acme.example"]) == 0
    first = orjson.loads((out / "manifest.jsonl").read_bytes().splitlines()[0])
    assert registry(tenants_file).verify_token("t.acme.example", pixel_token(first["pixel"]), "open").tenant == "acme"


def operator_signed_acme_token() -> str:
    """What `link --tenant acme` used to print: a token naming acme, signed with the operator's keys."""
    return DEFAULT.mint(TokenPayload("open", "acme", "c", "", "m-1", "r-1", int(SENT * 1000)))


def test_a_token_naming_a_tenant_is_refused_with_other_keys_on_any_host() -> None:
    reg = TenantRegistry({"acme": ACME}, DEFAULT)
    token = operator_signed_acme_token()
    with pytest.raises(TokenError) as unclaimed:
        reg.verify_token("links.other.example", token, "open")
    assert unclaimed.value.reason == "wrong_tenant"
    with pytest.raises(TokenError) as on_acme:
        reg.verify_token("t.acme.example", token, "open")
    assert on_acme.value.reason == "unknown_key"
    # The edge's check is the same rule.
    with pytest.raises(TokenError) as at_edge:
        check_token(reg, "links.other.example", token, "open", int(SENT * 1000))
    assert at_edge.value.reason == "wrong_tenant"
    # A default token on an unclaimed host is the default tenant's, as before tenants existed.
    plain = DEFAULT.mint(TokenPayload("open", "", "c", "", "m-1", "r-1", int(SENT * 1000)))
    assert reg.verify_token("links.other.example", plain, "open").tenant == ""


def test_the_processors_dead_letter_a_token_naming_a_tenant_on_an_unclaimed_host() -> None:
    """Not stored as acme's hit: the same rule as the edge's, for hits written to Kafka by anyone."""
    processor = HitProcessor(TenantRegistry({"acme": ACME}, DEFAULT), build_classifier(), Topics())
    raw = RawHit("h-1", SENT + 60, "open", "GET", "links.other.example", "/o/x.gif", operator_signed_acme_token(),
                 "81.2.69.142", CHROME, "e1", dict(HTML_ACCEPT))
    out = processor.process([Rec(Topics().hits_raw, 0, 1, raw.encode())])
    assert out.events.rows == []
    assert [d["reason"] for d in processor_letters(out)] == ["wrong_tenant"]


def test_link_prints_a_preferences_link_that_works_on_the_tenants_domain(
        tenants_file: Path, capsys: pytest.CaptureFixture[str]) -> None:
    urls = link(capsys, "--tenant", "acme", "--preferences", "--text-version", "v2")
    prefs = str(urls["preferences"])
    assert prefs.startswith("https://t.acme.example/p/")
    edge = Edge(registry(tenants_file), None, ClientIpResolver([]), "e", Topics())  # type: ignore[arg-type]
    ref = edge.verify_preferences("t.acme.example", prefs.rsplit("/p/", 1)[1])
    assert (ref.tenant, ref.recipient, ref.campaign, ref.message, ref.text_version) == ("acme", "r-1", "c", "m-1", "v2")
    assert ref.expires_at > 0  # expires with the message's other tokens
    assert isinstance(ref, PreferencesRef)
    assert "preferences" not in link(capsys, "--tenant", "acme")
