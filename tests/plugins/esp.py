"""Signing as each email platform signs its webhooks, with keys the tests make (nothing leaves the machine).

SendGrid: an ECDSA P-256 key pair; Mailgun: an HMAC key; Postmark: Basic credentials; SNS: an RSA key and
a self-signed certificate served by a fake fetch at an SNS-shaped URL.
"""

from __future__ import annotations

import base64
import datetime
import hashlib
import hmac
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.x509.oid import NameOID

from ingest.esp.ses import string_to_sign
from schemas.esp import EspSecrets

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "esp"
CERT_URL = "https://sns.us-east-1.amazonaws.com/SimpleNotificationService-0000000000000000000000000000000.pem"
TOPIC = "arn:aws:sns:us-east-1:123456789012:ses-events"
MAILGUN_KEY = "key-mailgun-signing-0123456789"
POSTMARK_USER, POSTMARK_PASSWORD = "postmark", "pm-password-0123456789"
# Apple Mail Privacy Protection fetches with a bare "Mozilla/5.0" (processors/classify.py: ua_bare_mozilla).
APPLE_MPP_UA = "Mozilla/5.0"


def fixture(platform: str) -> dict[str, Any]:
    """tests/fixtures/esp/<platform>.json: the platform's documented example payloads."""
    doc: dict[str, Any] = orjson.loads((FIXTURES / f"{platform}.json").read_bytes())
    return doc


@dataclass
class Signers:
    sendgrid_key: ec.EllipticCurvePrivateKey = field(default_factory=lambda: ec.generate_private_key(ec.SECP256R1()))
    sns_key: rsa.RSAPrivateKey = field(default_factory=lambda: rsa.generate_private_key(65537, 2048))
    fetched: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "sns.amazonaws.com")])
        now = datetime.datetime.now(datetime.UTC)
        self.sns_cert_pem = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
                             .public_key(self.sns_key.public_key()).serial_number(1)
                             .not_valid_before(now - datetime.timedelta(days=1))
                             .not_valid_after(now + datetime.timedelta(days=30))
                             .sign(self.sns_key, hashes.SHA256()).public_bytes(serialization.Encoding.PEM))

    @property
    def sendgrid_public_key(self) -> str:
        der = self.sendgrid_key.public_key().public_bytes(serialization.Encoding.DER,
                                                          serialization.PublicFormat.SubjectPublicKeyInfo)
        return base64.b64encode(der).decode()

    def secrets(self) -> EspSecrets:
        return EspSecrets(self.sendgrid_public_key, MAILGUN_KEY, POSTMARK_USER, POSTMARK_PASSWORD, (TOPIC,))

    # --- SendGrid ---
    def sendgrid_headers(self, body: bytes, timestamp: int) -> dict[str, str]:
        signature = self.sendgrid_key.sign(str(timestamp).encode() + body, ec.ECDSA(hashes.SHA256()))
        return {"X-Twilio-Email-Event-Webhook-Signature": base64.b64encode(signature).decode(),
                "X-Twilio-Email-Event-Webhook-Timestamp": str(timestamp), "Content-Type": "application/json"}

    # --- Mailgun ---
    @staticmethod
    def mailgun_body(event: dict[str, Any], timestamp: int, token: str = "a8ce0edb2dd8301dee6c2405235584e45aa91d1e9f",
                     key: str = MAILGUN_KEY) -> bytes:
        signature = hmac.new(key.encode(), f"{timestamp}{token}".encode(), hashlib.sha256).hexdigest()
        return orjson.dumps({"signature": {"timestamp": str(timestamp), "token": token, "signature": signature},
                             "event-data": event})

    # --- Postmark ---
    @staticmethod
    def postmark_headers(user: str = POSTMARK_USER, password: str = POSTMARK_PASSWORD) -> dict[str, str]:
        return {"Authorization": "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode(),
                "Content-Type": "application/json"}

    # --- SNS ---
    def sns_envelope(self, message: str | dict[str, Any], kind: str = "Notification", version: str = "2",
                     topic: str = TOPIC, message_id: str = "22b80b92-fdea-4c2c-8f9d-bdfb0c7bf324") -> dict[str, Any]:
        envelope: dict[str, Any] = {
            "Type": kind, "MessageId": message_id, "TopicArn": topic,
            "Message": message if isinstance(message, str) else orjson.dumps(message).decode(),
            "Timestamp": "2026-12-01T10:00:00.000Z", "SignatureVersion": version, "SigningCertURL": CERT_URL}
        if kind != "Notification":
            envelope["Token"] = "2336412f37fb687f5d51e6e241d09c805a5a57b30d712f79"
            envelope["SubscribeURL"] = (f"https://sns.us-east-1.amazonaws.com/?Action=ConfirmSubscription&TopicArn="
                                        f"{topic}&Token=2336412f37fb687f5d51e6e241d09c805a5a57b30d712f79")
        algorithm = hashes.SHA1() if version == "1" else hashes.SHA256()
        signature = self.sns_key.sign(string_to_sign(envelope), padding.PKCS1v15(), algorithm)
        envelope["Signature"] = base64.b64encode(signature).decode()
        return envelope

    async def fetch(self, url: str) -> bytes:
        """What the receiver's fetch gets: our certificate at CERT_URL, an empty 200 for a SubscribeURL."""
        self.fetched.append(url)
        return self.sns_cert_pem if url == CERT_URL else b""


@pytest.fixture
def signers() -> Signers:
    return Signers()
