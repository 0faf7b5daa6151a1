"""Email platform secrets: the tenants file's "esp" object, the default tenant's settings, and SES tag values."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from schemas.esp import EspSecrets, from_ses_tag_value, ses_tag_value
from schemas.settings import Settings
from schemas.tenants import TenantRegistry, new_tenant, with_domains, with_next_key

TOPIC = "arn:aws:sns:eu-west-1:123456789012:ses-events"
ESP = {"sendgrid": {"public_key": "MFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAE"}, "mailgun": {"signing_key": "k" * 32},
       "postmark": {"user": "pm", "password": "p" * 20}, "ses": {"topic_arns": [TOPIC]}}


def test_a_tenants_esp_secrets_survive_save_load_and_key_rotation(tmp_path: Path) -> None:
    path = tmp_path / "tenants.json"
    tenant = new_tenant("acme", ["t.acme.example"])
    doc = {"tenants": [{"name": "acme", "domains": ["t.acme.example"], "keys": tenant.keys, "current_key": "k1",
                        "api_keys": [], "esp": ESP}]}
    path.write_text(json.dumps(doc))
    loaded = TenantRegistry.load(path).tenants["acme"]
    assert loaded.esp == EspSecrets(ESP["sendgrid"]["public_key"], "k" * 32, "pm", "p" * 20, (TOPIC,))
    assert all(loaded.esp.configured(p) for p in ("sendgrid", "mailgun", "postmark", "ses"))
    assert with_next_key(with_domains(loaded, ["t2.acme.example"])).esp == loaded.esp
    TenantRegistry({"acme": loaded}).save(path)
    assert json.loads(path.read_text())["tenants"][0]["esp"] == ESP
    TenantRegistry({"acme": tenant}).save(path)
    assert "esp" not in json.loads(path.read_text())["tenants"][0]  # none set: nothing written


@pytest.mark.parametrize(("esp", "named"), [
    ({"sendgrid": {"public_key": "not base64!"}}, "sendgrid.public_key"),
    ({"mailgun": {"signing_key": "short"}}, "mailgun.signing_key"),
    ({"postmark": {"user": "pm"}}, "postmark"),
    ({"postmark": {"user": "p:m", "password": "p" * 20}}, "postmark.user"),
    ({"ses": {"topic_arns": ["arn:aws:s3:::bucket"]}}, "ses.topic_arns"),
    ({"ses": {"topic_arns": TOPIC}}, "ses.topic_arns"),
    ({"sparkpost": {}}, "sparkpost"),
    ([], "esp"),
])
def test_bad_secrets_are_refused_naming_the_field(esp: object, named: str) -> None:
    with pytest.raises(ValueError, match=named.replace(".", r"\.")):
        EspSecrets.from_json(esp, "tenants[0]")


def test_the_default_tenants_secrets_come_from_the_settings() -> None:
    s = Settings(_env_file=None, esp_mailgun_signing_key="m" * 20, esp_postmark_auth="pm:" + "p" * 20,  # type: ignore[call-arg]
                 esp_ses_topic_arns=f"{TOPIC}, {TOPIC[:-1]}x")
    assert s.esp_secrets() == EspSecrets("", "m" * 20, "pm", "p" * 20, (TOPIC, TOPIC[:-1] + "x"))
    assert not s.esp_secrets().configured("sendgrid")
    with pytest.raises(ValueError, match=r"PIXELTRACK_ESP\.postmark"):
        Settings(_env_file=None, esp_postmark_auth="only-a-user").esp_secrets()  # type: ignore[call-arg]


@pytest.mark.parametrize("value", ["m-42", "", "r/42 ü", "pt64_m", "a" * 100, "alice@example.com"])
def test_ses_tag_values_round_trip_and_take_only_what_ses_takes(value: str) -> None:
    tagged = ses_tag_value(value)
    assert from_ses_tag_value(tagged) == value
    assert all(c.isascii() and (c.isalnum() or c in "_-") for c in tagged)
    assert (tagged == value) == (value in ("m-42", "", "a" * 100))
