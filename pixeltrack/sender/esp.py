"""For senders who send through an email platform: the identifiers to attach to each message at send time.

The platform hands them back in every webhook event of the message (delivered, bounced, opened, clicked,
...), and pixeltrack's receivers (`/v1/esp/<platform>`, docs/esp.md) match the event to the send by them:
message id, campaign, variant, recipient id and sent-at, exactly as the `Send` you register says. Pass
the Send of `prepare(...)` (or the one you register), so the two can never disagree.

    send = prepare(tracker, Message("spring", "m-42", "r-42"), urls).send
    sendgrid_custom_args(send)   # personalizations[i].custom_args
    mailgun_variables(send)      # form fields "v:pt_m", ... of the messages API (or X-Mailgun-Variables)
    postmark_metadata(send)      # the message's "Metadata"
    ses_tags(send)               # SendEmail's EmailTags (and a configuration set with an SNS destination)
"""

from __future__ import annotations

import orjson

from schemas.esp import (
    KEY_CAMPAIGN,
    KEY_MESSAGE,
    KEY_RECIPIENT,
    KEY_SENT_AT,
    KEY_VARIANT,
    ses_tag_value,
)
from schemas.sends import Send

POSTMARK_MAX_VALUE = 80  # Postmark: metadata values of at most 80 characters (and 10 fields)


def identifiers(send: Send) -> dict[str, str]:
    """pt_m (message), pt_c (campaign), pt_v (variant, if any), pt_r (recipient id), pt_s (sent at, epoch ms)."""
    out = {KEY_MESSAGE: send.message, KEY_CAMPAIGN: send.campaign}
    if send.variant:
        out[KEY_VARIANT] = send.variant
    if send.recipient:
        out[KEY_RECIPIENT] = send.recipient
    out[KEY_SENT_AT] = str(round(send.sent_at * 1000))
    return out


def sendgrid_custom_args(send: Send) -> dict[str, str]:
    """SendGrid's `custom_args` (v3 Mail Send, per personalization): string values, sent back as top-level
    fields of every event of the message."""
    return identifiers(send)


def mailgun_variables(send: Send) -> dict[str, str]:
    """Mailgun's custom variables as the messages API's form fields ("v:pt_m": ...); sent back as the
    events' "user-variables". Over SMTP, send `mailgun_variables_header(send)` as X-Mailgun-Variables."""
    return {f"v:{k}": v for k, v in identifiers(send).items()}


def mailgun_variables_header(send: Send) -> str:
    """The X-Mailgun-Variables header's value (JSON) for sending through Mailgun's SMTP."""
    return orjson.dumps(identifiers(send)).decode()


def postmark_metadata(send: Send) -> dict[str, str]:
    """Postmark's `Metadata` of the message, sent back in every webhook record of it. ValueError when a value
    is longer than Postmark takes (80 characters)."""
    out = identifiers(send)
    for key, value in out.items():
        if len(value) > POSTMARK_MAX_VALUE:
            raise ValueError(f"Postmark metadata {key}: {len(value)} characters; Postmark takes at most "
                             f"{POSTMARK_MAX_VALUE} (use shorter ids)")
    return out


def ses_tags(send: Send) -> list[dict[str, str]]:
    """Amazon SES message tags ([{"Name": ..., "Value": ...}], SendEmail's EmailTags): SES sends them back as
    `mail.tags` of every event. A value with characters SES does not take is sent base64url-encoded with a
    prefix the receiver decodes (schemas.esp.ses_tag_value)."""
    return [{"Name": k, "Value": ses_tag_value(v)} for k, v in identifiers(send).items()]
