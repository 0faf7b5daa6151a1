"""Signature vectors: pinned ones that must verify, and their tampered forms that must not."""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric import ec

from ingest.esp import mailgun, postmark, sendgrid
from ingest.esp.common import Refused
from ingest.esp.ses import SnsVerifier, sns_url, string_to_sign
from tests.plugins.esp import CERT_URL, FIXTURES, Signers

VECTORS: dict[str, Any] = json.loads((FIXTURES / "vectors.json").read_text())


def _flip(b64: str) -> str:
    raw = bytearray(base64.b64decode(b64))
    raw[len(raw) // 2] ^= 1
    return base64.b64encode(bytes(raw)).decode()


def test_sendgrid_pinned_vector_verifies() -> None:
    v = VECTORS["sendgrid"]
    assert sendgrid.verify(v["public_key"], v["signature"], v["timestamp"], v["payload"].encode())


@pytest.mark.parametrize("change", ["payload", "timestamp", "signature", "key", "garbage"])
def test_sendgrid_tampered_vector_does_not_verify(change: str) -> None:
    v = dict(VECTORS["sendgrid"])
    if change == "payload":
        v["payload"] = v["payload"].replace("true", "false")
    elif change == "timestamp":
        v["timestamp"] = "1796000001"
    elif change == "signature":
        v["signature"] = _flip(v["signature"])
    elif change == "key":
        v["public_key"] = Signers().sendgrid_public_key
    else:
        v["signature"] = "not base64!"
    assert not sendgrid.verify(v["public_key"], v["signature"], v["timestamp"], v["payload"].encode())


def test_sendgrid_key_must_be_an_ec_key() -> None:
    with pytest.raises(ValueError, match="base64 DER"):
        sendgrid.public_key("bm90IGEga2V5")
    assert isinstance(sendgrid.public_key(VECTORS["sendgrid"]["public_key"]), ec.EllipticCurvePublicKey)


def test_mailgun_hmac_is_what_openssl_computes() -> None:
    v = VECTORS["mailgun"]
    # printf '%s' 1796000000a8ce0edb2dd8301dee6c2405235584e45aa91d1e9f | openssl dgst -sha256 -hmac KEY
    assert v["signature"] == "958735ebb6ff8081455cbf1d6a0ee25ec36fef5f36eb5a26d7fd89efda4a7d2f"
    assert mailgun.verify(v["key"], {"timestamp": v["timestamp"], "token": v["token"], "signature": v["signature"]})
    assert mailgun.verify(v["key"], {"timestamp": int(v["timestamp"]), "token": v["token"],
                                     "signature": v["signature"]})


@pytest.mark.parametrize("change", [("timestamp", "1796000001"), ("token", "b" * 42), ("signature", "0" * 64),
                                    ("signature", None), ("key", "another-signing-key-0000")])
def test_mailgun_tampered_vector_does_not_verify(change: tuple[str, Any]) -> None:
    v = dict(VECTORS["mailgun"])
    v[change[0]] = change[1]
    assert not mailgun.verify(v["key"], {"timestamp": v["timestamp"], "token": v["token"], "signature": v["signature"]})
    assert not mailgun.verify(VECTORS["mailgun"]["key"], "not an object")


def test_postmark_basic_credentials() -> None:
    good = "Basic " + base64.b64encode(b"postmark:pm-password-0123456789").decode()
    assert postmark.authorised(good, "postmark", "pm-password-0123456789")
    for bad in ("", "Bearer x", "Basic " + base64.b64encode(b"postmark:wrong").decode(), "Basic !!!",
                "Basic " + base64.b64encode(b"other:pm-password-0123456789").decode()):
        assert not postmark.authorised(bad, "postmark", "pm-password-0123456789")


def _pinned_fetch(fetched: list[str]) -> Any:
    async def fetch(url: str) -> bytes:
        fetched.append(url)
        return str(VECTORS["sns"]["certificate"]).encode()
    return fetch


@pytest.mark.parametrize("version", ["1", "2"])
async def test_sns_pinned_vectors_verify_and_the_certificate_is_fetched_once(version: str) -> None:
    fetched: list[str] = []
    verifier = SnsVerifier(_pinned_fetch(fetched))
    envelope = VECTORS["sns"]["envelopes"][version]
    await verifier.verify(envelope)
    await verifier.verify(envelope)
    assert fetched == [CERT_URL]


@pytest.mark.parametrize("change", [("Message", '{"eventType": "Click"}'), ("TopicArn", "arn:aws:sns:us-east-1:1:x"),
                                    ("SignatureVersion", "3"), ("Signature", "AAAA"), ("Signature", "%%"),
                                    ("Timestamp", "2026-12-01T10:00:01.000Z")])
async def test_sns_tampered_vectors_are_refused(change: tuple[str, str]) -> None:
    envelope = {**VECTORS["sns"]["envelopes"]["2"], change[0]: change[1]}
    with pytest.raises(Refused) as refused:
        await SnsVerifier(_pinned_fetch([])).verify(envelope)
    assert refused.value.status == 403


@pytest.mark.parametrize("url", [
    "http://sns.us-east-1.amazonaws.com/cert.pem",  # not https
    "https://sns.us-east-1.amazonaws.com.evil.example/cert.pem",
    "https://evil.example/sns.us-east-1.amazonaws.com/cert.pem",
    "https://user@sns.us-east-1.amazonaws.com/cert.pem",
    "https://sns.us-east-1.amazonaws.com:8443/cert.pem",
    "https://sns.us-east-1.amazonaws.com/cert.txt",
    "https://s3.amazonaws.com/cert.pem",
])
async def test_a_certificate_url_off_the_sns_hosts_is_never_fetched(url: str) -> None:
    fetched: list[str] = []
    envelope = {**VECTORS["sns"]["envelopes"]["2"], "SigningCertURL": url}
    with pytest.raises(Refused):
        await SnsVerifier(_pinned_fetch(fetched)).verify(envelope)
    assert fetched == []
    assert not sns_url(url, pem=True)


def test_sns_hosts() -> None:
    assert sns_url(CERT_URL, pem=True)
    assert sns_url("https://sns.cn-north-1.amazonaws.com.cn/x.pem", pem=True)
    assert sns_url("https://sns.us-west-2.amazonaws.com/?Action=ConfirmSubscription&Token=x", pem=False)


def test_sns_string_to_sign_follows_the_documented_order() -> None:
    notification = {"Type": "Notification", "MessageId": "id", "TopicArn": "arn", "Message": "m", "Timestamp": "t",
                    "Signature": "s", "SigningCertURL": "u"}
    assert string_to_sign(notification) == (b"Message\nm\nMessageId\nid\nTimestamp\nt\nTopicArn\narn\n"
                                            b"Type\nNotification\n")
    with_subject = {**notification, "Subject": "hello"}
    assert string_to_sign(with_subject) == (b"Message\nm\nMessageId\nid\nSubject\nhello\nTimestamp\nt\nTopicArn\narn\n"
                                            b"Type\nNotification\n")
    confirmation = {"Type": "SubscriptionConfirmation", "MessageId": "id", "TopicArn": "arn", "Message": "m",
                    "Timestamp": "t", "Token": "tok", "SubscribeURL": "su", "Subject": "ignored"}
    assert string_to_sign(confirmation) == (b"Message\nm\nMessageId\nid\nSubscribeURL\nsu\nTimestamp\nt\nToken\ntok\n"
                                            b"TopicArn\narn\nType\nSubscriptionConfirmation\n")
