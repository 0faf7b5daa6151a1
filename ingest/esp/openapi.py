"""The OpenAPI description of the email platforms' webhook receivers (part of ingest/openapi.py's document)."""

from __future__ import annotations

from typing import Any

from schemas.esp import IDENTITY_KEYS

JSON = "application/json"
_IDS = ("The identifiers the sender attached at send time (pixeltrack.sender.esp): " + ", ".join(IDENTITY_KEYS)
        + " = message, campaign, variant, recipient id, sent-at (epoch ms). Events without pt_m are another "
        "system's mail and are counted as not_ours.")
_TENANT = {"name": "tenant", "in": "query", "required": False, "schema": {"type": "string", "maxLength": 63},
           "description": "The tenant whose secrets verify the request and whose sends it names (a tenants file "
                          "name); absent: the default tenant (PIXELTRACK_ESP_* settings)."}
_STATUS = {
    "200": "Verified and recorded: deliveries on `deliveries`, opens and clicks on `hits.raw` (classified like "
           "fetches of pixeltrack's own pixel and links, `events.origin` = the platform), unusable events as dead "
           "letters (`hits.dlq`, reason esp_*); the counts say which",
    "400": "The body is not the platform's format (nothing recorded)",
    "401": "The signature (Postmark: the Basic credentials) is missing, wrong, or too old (replay protection): "
           "refused, counted in pixeltrack_esp_requests_total, nothing recorded",
    "403": "The SNS topic is not one of the tenant's, or the SNS signature or its certificate URL is not "
           "Amazon SNS's: refused, counted, nothing recorded",
    "404": "No such tenant, or this platform is not set up for it (docs/esp.md)",
    "413": "The body is over the size limit",
    "503": "The transport did not acknowledge: nothing may be assumed recorded; the platform retries",
}


def _error(description: str) -> dict[str, Any]:
    return {"description": description, "content": {JSON: {"schema": {"$ref": "#/components/schemas/Error"}}}}


def _endpoint(platform: str, summary: str, description: str, schema: str, refusal: str,
              headers: tuple[tuple[str, str], ...] = (), security: list[dict[str, list[str]]] | None = None
              ) -> dict[str, Any]:
    params = [_TENANT] + [{"name": name, "in": "header", "required": True, "schema": {"type": "string"},
                           "description": text} for name, text in headers]
    responses: dict[str, Any] = {"200": {"description": _STATUS["200"], "content": {JSON: {"schema": {
        "$ref": "#/components/schemas/EspTaken"}}}}}
    for status in ("400", refusal, "404", "413", "503"):
        responses[status] = _error(_STATUS[status])
    return {"post": {
        "summary": summary, "description": description + " " + _IDS, "operationId": f"post_esp_{platform}",
        "security": security if security is not None else [], "parameters": params,
        "requestBody": {"required": True, "content": {JSON: {"schema": {"$ref": f"#/components/schemas/{schema}"}}}},
        "responses": responses}}


def esp_paths() -> dict[str, Any]:
    return {
        "/v1/esp/sendgrid": _endpoint(
            "sendgrid", "SendGrid Event Webhook", "SendGrid's Event Webhook with the Signed Event Webhook on: ECDSA "
            "P-256 / SHA-256 over timestamp + body, checked with the tenant's verification key. A batch of events; "
            "custom_args are top-level fields of each; sg_machine_open becomes the reason platform_machine_flag.",
            "SendGridEvents", "401", headers=(
                ("X-Twilio-Email-Event-Webhook-Signature", "base64 DER ECDSA signature"),
                ("X-Twilio-Email-Event-Webhook-Timestamp", "epoch seconds; older than the replay window: 401"))),
        "/v1/esp/mailgun": _endpoint(
            "mailgun", "Mailgun webhook", "One Mailgun event with its signature (hex HMAC-SHA256 of timestamp + "
            "token with the tenant's webhook signing key); user-variables carry the identifiers; client-info.bot "
            "becomes the reason platform_machine_flag.", "MailgunWebhook", "401"),
        "/v1/esp/postmark": _endpoint(
            "postmark", "Postmark webhook", "One Postmark webhook record (Delivery, Bounce, SpamComplaint, Open, "
            "Click, SubscriptionChange), authenticated by the HTTP Basic credentials written in the webhook's URL; "
            "Metadata carries the identifiers.", "PostmarkRecord", "401", security=[{"basic": []}]),
        "/v1/esp/ses": _endpoint(
            "ses", "Amazon SES events through SNS", "An SNS HTTPS subscription's messages: the SNS signature "
            "(SignatureVersion 1 or 2) is checked with the certificate at SigningCertURL, an https URL on "
            "sns.<region>.amazonaws.com only; the topic must be one of the tenant's. A SubscriptionConfirmation is "
            "confirmed (GET of its SubscribeURL, an SNS host only); a Notification's Message is an SES event whose "
            "mail.tags carry the identifiers.", "SnsMessage", "403"),
    }


def esp_schemas() -> dict[str, Any]:
    loose: dict[str, Any] = {"additionalProperties": True}
    return {
        "EspTaken": {"type": "object", "required": ["accepted", "ignored", "not_ours", "dead_letters"], "properties": {
            "accepted": {"type": "integer", "minimum": 0, "description": "Deliveries and hits recorded"},
            "ignored": {"type": "integer", "minimum": 0, "description": "Known events that mean nothing here "
                        "(e.g. SendGrid processed, SES Send)"},
            "not_ours": {"type": "integer", "minimum": 0, "description": "Events of messages without pt_m"},
            "dead_letters": {"type": "integer", "minimum": 0, "description": "Unknown event types and unusable "
                             "events, recorded in dead_letters with their reason"},
            "confirmed": {"type": "string", "description": "SES: the SNS topic whose subscription was confirmed"},
            "unsubscribed": {"type": "string", "description": "SES: the SNS topic that ended the subscription"}}},
        "SendGridEvents": {"type": "array", "maxItems": 10_000, "items": {"type": "object", "required": ["event"],
                           "properties": {"event": {"type": "string"}, "timestamp": {"type": "integer"},
                                          "sg_event_id": {"type": "string"}, "sg_machine_open": {"type": "boolean"},
                                          "ip": {"type": "string"}, "useragent": {"type": "string"},
                                          "url": {"type": "string"}}, **loose}},
        "MailgunWebhook": {"type": "object", "required": ["signature", "event-data"], "properties": {
            "signature": {"type": "object", "required": ["timestamp", "token", "signature"], "properties": {
                "timestamp": {"type": ["string", "integer"]}, "token": {"type": "string"},
                "signature": {"type": "string"}}},
            "event-data": {"type": "object", "required": ["event"], "properties": {
                "event": {"type": "string"}, "id": {"type": "string"}, "timestamp": {"type": "number"},
                "user-variables": {"type": "object"}}, **loose}}},
        "PostmarkRecord": {"type": "object", "required": ["RecordType"], "properties": {
            "RecordType": {"type": "string"}, "MessageID": {"type": "string"}, "Metadata": {"type": "object"}},
            **loose},
        "SnsMessage": {"type": "object", "required": ["Type", "TopicArn", "Signature", "SignatureVersion",
                                                      "SigningCertURL"], "properties": {
            "Type": {"enum": ["Notification", "SubscriptionConfirmation", "UnsubscribeConfirmation"]},
            "MessageId": {"type": "string"}, "TopicArn": {"type": "string"}, "Message": {"type": "string"},
            "Timestamp": {"type": "string"}, "SignatureVersion": {"enum": ["1", "2"]}, "Signature": {"type": "string"},
            "SigningCertURL": {"type": "string"}, "SubscribeURL": {"type": "string"}}, **loose},
    }
