"""Email platforms' webhook secrets, per tenant: what authenticates a platform's webhook (docs/esp.md).

A tenant's live in the tenants file under "esp"; the default tenant's in the settings (PIXELTRACK_ESP_*).
The secrets are the platform's, not pixeltrack's: SendGrid's verification public key, Mailgun's webhook
signing key, the HTTP Basic credentials put in Postmark's webhook URL, and for Amazon SES the SNS topic
ARNs whose messages are taken (SNS signs with Amazon's own certificate).
"""

from __future__ import annotations

import base64
import binascii
import re
from dataclasses import dataclass
from typing import Any

PLATFORMS = ("sendgrid", "mailgun", "postmark", "ses")
TOPIC_ARN_RE = re.compile(r"^arn:aws(-[a-z]+)*:sns:[a-z0-9-]+:\d{12}:[A-Za-z0-9_.-]{1,256}$")


@dataclass(frozen=True, slots=True)
class EspSecrets:
    """One tenant's platform secrets; an empty field means that platform is not set up (its webhook
    answers 404 for the tenant)."""

    sendgrid_public_key: str = ""  # base64 DER, as SendGrid's Mail Settings → Signed Event Webhook shows it
    mailgun_signing_key: str = ""  # Mailgun's "HTTP webhook signing key"
    postmark_user: str = ""  # the Basic credentials written in the Postmark webhook's URL
    postmark_password: str = ""
    ses_topic_arns: tuple[str, ...] = ()  # SNS topics whose notifications are taken

    def configured(self, platform: str) -> bool:
        if platform == "sendgrid":
            return bool(self.sendgrid_public_key)
        if platform == "mailgun":
            return bool(self.mailgun_signing_key)
        if platform == "postmark":
            return bool(self.postmark_user and self.postmark_password)
        if platform == "ses":
            return bool(self.ses_topic_arns)
        return False

    def check(self, where: str) -> None:
        """ValueError naming the field that is not usable."""
        if self.sendgrid_public_key:
            try:
                base64.b64decode(self.sendgrid_public_key, validate=True)
            except (binascii.Error, ValueError):
                raise ValueError(f"{where}.sendgrid.public_key: not base64 (paste the key SendGrid shows)") from None
        if self.mailgun_signing_key and len(self.mailgun_signing_key) < 16:
            raise ValueError(f"{where}.mailgun.signing_key: shorter than 16 characters")
        if bool(self.postmark_user) != bool(self.postmark_password):
            raise ValueError(f"{where}.postmark: needs both user and password")
        if ":" in self.postmark_user:
            raise ValueError(f"{where}.postmark.user: must not contain ':'")
        if self.postmark_password and len(self.postmark_password) < 16:
            raise ValueError(f"{where}.postmark.password: shorter than 16 characters")
        for arn in self.ses_topic_arns:
            if not TOPIC_ARN_RE.match(arn):
                raise ValueError(f"{where}.ses.topic_arns: {arn[:80]!r} is not an SNS topic ARN")

    @classmethod
    def from_json(cls, obj: Any, where: str) -> EspSecrets:
        """From a tenants file's "esp" object: {"sendgrid": {"public_key": ...}, "mailgun": {"signing_key":
        ...}, "postmark": {"user": ..., "password": ...}, "ses": {"topic_arns": [...]}}."""
        if obj is None:
            return cls()
        if not isinstance(obj, dict):
            raise ValueError(f"{where}: esp must be an object")
        unknown = set(obj) - set(PLATFORMS)
        if unknown:
            raise ValueError(f"{where}.esp: unknown platform {sorted(unknown)[0]!r} (one of {', '.join(PLATFORMS)})")

        def text(platform: str, name: str) -> str:
            section = obj.get(platform) or {}
            value = section.get(name, "") if isinstance(section, dict) else None
            if not isinstance(value, str):
                raise ValueError(f"{where}.esp.{platform}.{name}: must be a string")
            return value

        ses = obj.get("ses") or {}
        arns = ses.get("topic_arns", []) if isinstance(ses, dict) else None
        if not isinstance(arns, list) or not all(isinstance(a, str) for a in arns):
            raise ValueError(f"{where}.esp.ses.topic_arns: must be a list of strings")
        secrets = cls(text("sendgrid", "public_key"), text("mailgun", "signing_key"), text("postmark", "user"),
                      text("postmark", "password"), tuple(arns))
        secrets.check(f"{where}.esp")
        return secrets

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        if self.sendgrid_public_key:
            out["sendgrid"] = {"public_key": self.sendgrid_public_key}
        if self.mailgun_signing_key:
            out["mailgun"] = {"signing_key": self.mailgun_signing_key}
        if self.postmark_user:
            out["postmark"] = {"user": self.postmark_user, "password": self.postmark_password}
        if self.ses_topic_arns:
            out["ses"] = {"topic_arns": list(self.ses_topic_arns)}
        return out


# --- the identifiers a sender attaches at send time (pixeltrack.sender.esp adds them; ingest/esp reads them) ---
# Short names: Postmark allows metadata keys of 20 characters and values of 80, SES tags 256.
KEY_MESSAGE = "pt_m"
KEY_CAMPAIGN = "pt_c"
KEY_VARIANT = "pt_v"
KEY_RECIPIENT = "pt_r"
KEY_SENT_AT = "pt_s"  # epoch milliseconds, as text
IDENTITY_KEYS = (KEY_MESSAGE, KEY_CAMPAIGN, KEY_VARIANT, KEY_RECIPIENT, KEY_SENT_AT)

# SES message tags take only ASCII letters, digits, "_" and "-": a value with any other character is sent as
# this prefix and its base64url (which has only those), and read back so (a plain value never starts so).
SES_ENCODED = "pt64_"
SES_TAG_RE = re.compile(r"^[A-Za-z0-9_-]{0,256}$")


def ses_tag_value(value: str) -> str:
    """`value` as an SES tag value: itself when SES takes it as it is, else SES_ENCODED + base64url."""
    if SES_TAG_RE.match(value) and not value.startswith(SES_ENCODED):
        return value
    return SES_ENCODED + base64.urlsafe_b64encode(value.encode()).rstrip(b"=").decode("ascii")


def from_ses_tag_value(value: str) -> str:
    """The value ses_tag_value encoded; ValueError when an encoded one is not base64url of UTF-8."""
    if not value.startswith(SES_ENCODED):
        return value
    body = value[len(SES_ENCODED):]
    try:
        return base64.urlsafe_b64decode(body + "=" * (-len(body) % 4)).decode()
    except (binascii.Error, ValueError):
        raise ValueError(f"SES tag value {value[:40]!r} is not valid {SES_ENCODED}base64url") from None
