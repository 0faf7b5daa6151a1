"""TenantRegistry: which tenant's keys check a token fetched on a host; its file, checked field by field."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from schemas.tenants import MAX_REMEMBERED_HOSTS, Tenant, TenantRegistry, host_name
from schemas.tokens import Keyring, new_secret

DEFAULT = Keyring({"d1": b"default-secret-0123456789"}, "d1")
KEYS = f"k1:{new_secret()}"


def acme() -> Tenant:
    return Tenant("acme", ("t.acme.example",), f"k1:{new_secret()}", "k1", ())


def test_a_host_is_its_tenants_in_any_spelling_and_elsewhere_the_default() -> None:
    reg = TenantRegistry({"acme": acme()}, DEFAULT)
    for spelling in ("t.acme.example", "T.ACME.EXAMPLE:8443", "t.acme.example.", " t.acme.example"):
        found = reg.for_host(spelling)
        assert found is not None
        assert found[0] == "acme"
    assert reg.for_host("t.acme.example") == reg.for_host("T.ACME.EXAMPLE:8443")  # remembered, same answer
    assert reg.for_host("shop.example") == ("", DEFAULT)
    assert TenantRegistry({"acme": acme()}).for_host("shop.example") is None
    assert TenantRegistry({"acme": acme()}).for_host("shop.example") is None  # and again, remembered


@pytest.mark.parametrize(("header", "name"), [
    ("a.example.com", "a.example.com"), ("A.Example.COM:8080", "a.example.com"), ("a.example.com.", "a.example.com"),
    ("a.example.com.:8080", "a.example.com"), ("A.EXAMPLE.COM.:443", "a.example.com"),
    ("a.example.com..", "a.example.com."), ("[::1]:8080", "[::1]"), ("localhost:8080", "localhost"),
])
def test_host_name_lowercases_and_strips_the_port_then_one_trailing_dot(header: str, name: str) -> None:
    assert host_name(header) == name


def test_a_fully_qualified_host_with_a_port_is_its_tenants() -> None:
    found = TenantRegistry({"acme": acme()}, DEFAULT).for_host("T.acme.example.:8080")
    assert found is not None
    assert found[0] == "acme"


def test_hosts_remembered_are_bounded_and_answers_stay_right_past_the_bound() -> None:
    reg = TenantRegistry({"acme": acme()})
    for i in range(MAX_REMEMBERED_HOSTS + 50):
        assert reg.for_host(f"h{i}.example") is None
        assert len(reg._seen) <= MAX_REMEMBERED_HOSTS
    found = reg.for_host("T.Acme.Example")  # junk hosts did not crowd a real one out
    assert found is not None
    assert found[0] == "acme"
    assert "T.Acme.Example" in reg._seen


@pytest.mark.parametrize(("doc", "says"), [
    ({"name": "acme", "domains": ["t.acme.example"], "keys": KEYS, "api_keys": "s3cret-long-key"},
     "api_keys must be a list"),  # a bare string was taken as one-letter keys
    ({"name": "acme", "domains": ["t.acme.example"], "keys": KEYS, "api_keys": [5]}, "api_keys must be a list"),
    ({"name": "acme", "domains": "t.acme.example", "keys": KEYS}, "domains must be a list"),
    ({"name": "acme", "keys": ["x"]}, "keys must be a string"),
    ({"name": "acme", "keys": KEYS, "current_key": 5}, "current_key must be a string"),
    ({"keys": KEYS}, "name must be a string"),
    ("acme", "name must be a string"),
    ({"name": "acme", "domains": ["t.acme.example"], "keys": KEYS, "site_visit_org": "yes"},
     "site_visit_org must be true or false"),
])
def test_a_tenants_file_field_of_the_wrong_type_is_refused_naming_it(tmp_path: Path, doc: object, says: str) -> None:
    path = tmp_path / "tenants.json"
    path.write_text(json.dumps({"tenants": [doc]}))
    with pytest.raises(ValueError, match=f"tenants\\[0\\]: {says}"):
        TenantRegistry.load(path)


@pytest.mark.parametrize("doc", [[1], {"tenants": None}, {"tenants": {"acme": {}}}])
def test_a_tenants_file_of_the_wrong_shape_is_refused(tmp_path: Path, doc: object) -> None:
    path = tmp_path / "tenants.json"
    path.write_text(json.dumps(doc))
    with pytest.raises(ValueError, match="must be an object with a list"):
        TenantRegistry.load(path)


def test_key_rotation_adds_the_next_numbered_key_and_keeps_the_former_ones() -> None:
    from schemas.tenants import key_ids, new_tenant, with_domains, with_next_key

    t = new_tenant("acme", ["t.acme.example"])
    assert (key_ids(t), t.current_key, len(t.api_keys)) == (["k1"], "k1", 1)
    rotated = with_next_key(with_next_key(t))
    assert (key_ids(rotated), rotated.current_key) == (["k1", "k2", "k3"], "k3")
    assert rotated.keys.startswith(t.keys + ",k2:")
    assert rotated.api_keys == t.api_keys
    assert with_domains(rotated, ["u.acme.example"]).domains == ("t.acme.example", "u.acme.example")



def test_the_site_visit_org_setting_is_kept_by_the_file_and_set_by_the_cli(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from pixeltrack.cli import main

    path = tmp_path / "tenants.json"
    assert main(["tenants", "add", "--name", "acme", "--domain", "t.acme.example", "--file", str(path)]) == 0
    assert "site_visit_org" not in json.loads(path.read_text())["tenants"][0]
    assert main(["tenants", "site-visit-org", "--name", "acme", "--set", "on", "--file", str(path)]) == 0
    assert json.loads(path.read_text())["tenants"][0]["site_visit_org"] is True
    assert TenantRegistry.load(path).site_visit_org("acme") is True
    assert main(["tenants", "rotate-key", "--name", "acme", "--file", str(path)]) == 0  # kept through a rotation
    assert TenantRegistry.load(path).tenants["acme"].site_visit_org is True
    assert main(["tenants", "list", "--file", str(path)]) == 0
    assert "site_visit_org=on" in capsys.readouterr().out
    assert main(["tenants", "site-visit-org", "--name", "acme", "--file", str(path)]) == 2
    assert "--set on or --set off" in capsys.readouterr().err
    assert main(["tenants", "site-visit-org", "--name", "acme", "--set", "off", "--file", str(path)]) == 0
    assert TenantRegistry.load(path).site_visit_org("acme") is False
