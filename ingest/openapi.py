"""The ingest API as an OpenAPI 3.1 document: served at /v1/openapi.json, checked against the handlers by tests."""

from __future__ import annotations

from typing import Any

from ingest.esp.openapi import esp_paths, esp_schemas
from schemas.aggregate import MAX_COUNT
from schemas.consents import CONSENT_STATES, MAX_TEXT_VERSION
from schemas.deliveries import DELIVERY_TYPES, MAX_DIAGNOSTIC
from schemas.sends import CURRENCY_LEN, MAX_CONVERSION_VALUE, MAX_ID

JSON = "application/json"


def _text(description: str, required: bool = True) -> dict[str, Any]:
    schema: dict[str, Any] = {"type": "string", "maxLength": MAX_ID, "description": description}
    if required:
        schema["minLength"] = 1
    else:
        schema["type"] = ["string", "null"]
    return schema


_WHEN = ("ISO-8601 time (e.g. 2026-12-01T09:00:00Z) or epoch seconds, from 2000-01-01 to one day ahead of the "
         "API's clock; default: now")
_TIME: dict[str, Any] = {"description": _WHEN, "oneOf": [{"type": "string"}, {"type": "number"}]}


def _any_case(words: tuple[str, ...]) -> str:
    """A pattern matching any of `words` in any letter case (JSON Schema patterns have no flags)."""
    return "^(" + "|".join("".join(f"[{c.upper()}{c}]" if c.isalpha() else c for c in w) for w in words) + ")$"


def _error_response(description: str) -> dict[str, Any]:
    return {"description": description, "content": {JSON: {"schema": {"$ref": "#/components/schemas/Error"}}}}


def _items_endpoint(name: str, item: str, summary: str, max_items: int, description: str) -> dict[str, Any]:
    """A POST taking `{"<name>": [<item>, …]}` (or a bare list), validated all or nothing."""
    return {"post": {
        "summary": summary,
        "description": description,
        "operationId": f"post_{name}",
        "security": [{"bearer": []}],
        "requestBody": {"required": True, "content": {JSON: {"schema": {"oneOf": [
            {"type": "object", "required": [name], "properties": {name: {
                "type": "array", "minItems": 1, "maxItems": max_items,
                "items": {"$ref": f"#/components/schemas/{item}"}}}},
            {"type": "array", "minItems": 1, "maxItems": max_items,
             "items": {"$ref": f"#/components/schemas/{item}"}}]}}}},
        "responses": {
            "202": {"description": "Every item was acknowledged by the transport (Kafka acks=all); retrying "
                                   "is safe", "content": {JSON: {"schema": {"$ref": "#/components/schemas/Accepted"}}}},
            "400": _error_response("The body is not JSON"),
            "401": _error_response("Missing or wrong API key"),
            "413": _error_response(f"More than {max_items} items, or a body over the size limit"),
            "422": _error_response("An item is invalid: nothing was recorded; `errors` names each item and "
                                   "field (e.g. sends[3].campaign: is required)"),
            "503": _error_response("The transport did not acknowledge: nothing may be assumed recorded; "
                                   "retry later"),
        },
    }}


def openapi_document(max_items: int, max_body: int) -> dict[str, Any]:
    """The OpenAPI 3.1 document of the ingest API with its limits."""
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "pixeltrack ingest API",
            "version": "1",
            "description": "Sends (the denominators of every rate), conversions (outcomes) and delivery "
                           "events (delivered, bounced, complained, ...) from senders' systems, and the email "
                           "platforms' webhooks (/v1/esp/<platform>, authenticated by each platform's own "
                           "signature, not the API key: docs/esp.md). Authenticate with "
                           "`Authorization: Bearer KEY`: an operator's key "
                           "(PIXELTRACK_API_KEYS) writes for the default tenant or any tenant it names, a "
                           "tenant's own key (`pixeltrack tenants add`) for that tenant only. Requests are "
                           f"validated all or nothing; at most {max_items} items and {max_body} bytes each.",
        },
        "servers": [{"url": "http://127.0.0.1:8081", "description": "`pixeltrack api` / `serve` defaults"}],
        "paths": {
            "/v1/sends": _items_endpoint(
                "sends", "Send", "Register sends", max_items,
                "One send per message and recipient: what rates divide by. Idempotent per message id."),
            "/v1/conversions": _items_endpoint(
                "conversions", "Conversion", "Record conversions", max_items,
                "An outcome after a click (by the signed click id the redirect appended) or of a message. "
                "`idempotency_key` makes a retried POST count once."),
            "/v1/events": _items_endpoint(
                "events", "Delivery", "Record delivery events", max_items,
                "What happened to a registered send: delivered, bounced (hard or soft), deferred, complained "
                "(a feedback loop), unsubscribed (the platform's list-unsubscribe) or replied. Idempotent per "
                "(message, type, id): a retried POST or a platform's repeated report counts once. Campaign, "
                "variant and recipient are taken from the message's registered send when left out; an event "
                "whose message has no registered send and that names no campaign is kept as a dead letter "
                "(reason unattributed_delivery), not counted."),
            "/v1/consents": _items_endpoint(
                "consents", "Consent", "Record consents", max_items,
                "A recipient's consent to individual tracking (granted, denied, unknown) with its time, source "
                "and the version of the text agreed to; kept as history, the latest by `ts` is the state. The "
                "same item posted again (same ts) is one change. Key: the recipient."),
            "/v1/aggregate-sends": _items_endpoint(
                "aggregate_sends", "AggregateSends", "Count aggregate sends", max_items,
                "How many emails of a campaign's variant went out with campaign-level tracking (no message or "
                "recipient id): their share of the campaign's denominators. `key` makes a retry count once."),
            "/v1/health": {"get": {
                "summary": "Liveness", "operationId": "get_health", "security": [],
                "responses": {"200": {"description": "The API is up", "content": {JSON: {"schema": {
                    "type": "object", "required": ["status"], "properties": {"status": {"const": "ok"}}}}}}}}},
            **esp_paths(),
            "/v1/openapi.json": {"get": {
                "summary": "This document", "operationId": "get_openapi", "security": [],
                "responses": {"200": {"description": "The OpenAPI 3.1 document", "content": {JSON: {"schema": {
                    "type": "object", "required": ["openapi", "paths"]}}}}}}},
        },
        "components": {
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"},
                                "basic": {"type": "http", "scheme": "basic"}},
            "schemas": {
                **esp_schemas(),
                "Send": {"type": "object", "required": ["campaign", "message", "recipient"], "properties": {
                    "tenant": _text("Tenant (default: the API key's, else the default tenant)", required=False),
                    "campaign": _text("Campaign id"),
                    "variant": _text("Variant of an A/B test", required=False),
                    "message": _text("Message id, as in the message's tokens (unique per campaign and recipient)"),
                    "recipient": _text("Recipient id: your id, not an email address (see --hash-recipients)"),
                    "sent_at": _TIME,
                    "mailbox_domain": _text("The recipient's address domain (e.g. gmail.com); never the address",
                                            required=False),
                    "links": {"type": "integer", "minimum": 0, "maximum": 10_000,
                              "description": "Wrapped links in the message"},
                }},
                "Conversion": {"type": "object", "required": ["idempotency_key"], "properties": {
                    "idempotency_key": {"type": "string", "minLength": 1, "maxLength": 200,
                                        "description": "Your order or event id: a retry with it counts once"},
                    "click_id": {"type": ["string", "null"], "description": "The signed click id the redirect "
                                 "appended (pt_cid); attributes campaign, variant, message, recipient and link"},
                    "message": _text("Message id, when there is no click id", required=False),
                    "campaign": _text("Campaign id, with `message`", required=False),
                    "tenant": _text("Tenant, with `message`", required=False),
                    "value": {"type": "number", "minimum": 0, "maximum": MAX_CONVERSION_VALUE,
                              "description": "Amount in `currency` units"},
                    "currency": {"type": "string", "pattern": f"^([A-Za-z]{{{CURRENCY_LEN}}})?$",
                                 "description": "ISO 4217 code such as EUR"},
                    "ts": _TIME,
                }, "description": "Needs `click_id` or `message`."},
                "Delivery": {"type": "object", "required": ["message", "type"], "properties": {
                    "message": _text("Message id of the registered send, as in the message's tokens"),
                    "type": {"enum": list(DELIVERY_TYPES), "description": "What happened"},
                    "id": _text("The event's own id (your platform's event id): with message and type it makes a "
                                "retry count once; default: the type and the ts given (the type alone without one)",
                                required=False),
                    "ts": _TIME,
                    "bounce": {"type": ["string", "null"], "enum": ["", "hard", "soft", None],
                               "description": "For a bounce: hard (permanent) or soft (temporary); default: "
                                              "soft for a 4xx SMTP code, else hard"},
                    "smtp_code": {"oneOf": [{"type": "integer", "minimum": 0, "maximum": 599},
                                            {"type": "string", "pattern": "^[0-9]{1,3}$"}, {"type": "null"}],
                                  "description": "The receiving server's SMTP reply code (0 when unknown)"},
                    "diagnostic": {"type": ["string", "null"],
                                   "description": f"The receiving server's answer (first {MAX_DIAGNOSTIC} "
                                                  "characters kept)"},
                    "campaign": _text("Campaign id (default: the registered send's)", required=False),
                    "variant": _text("Variant (default: the registered send's)", required=False),
                    "recipient": _text("Recipient id (default: the registered send's)", required=False),
                    "tenant": _text("Tenant (default: the API key's, else the default tenant)", required=False),
                }},
                "Consent": {"type": "object", "required": ["recipient", "state"], "properties": {
                    "tenant": _text("Tenant (default: the API key's, else the default tenant)", required=False),
                    "recipient": _text("Recipient id, as in sends"),
                    "state": {"type": "string", "pattern": _any_case(CONSENT_STATES),
                              "description": f"Consent to individual tracking: {', '.join(CONSENT_STATES)} "
                                             "(any case)"},
                    "ts": _TIME,
                    "source": {"type": ["string", "null"], "enum": ["api", "sdk", "csv", None],
                               "description": "Where the consent was recorded (default api)"},
                    "text_version": {"type": ["string", "null"], "maxLength": MAX_TEXT_VERSION,
                                     "description": "Version of the disclosure text the recipient agreed to"},
                }},
                "AggregateSends": {"type": "object", "required": ["campaign", "key"], "properties": {
                    "tenant": _text("Tenant (default: the API key's, else the default tenant)", required=False),
                    "campaign": _text("Campaign id"),
                    "variant": _text("Variant of an A/B test", required=False),
                    "count": {"type": "integer", "minimum": 1, "maximum": MAX_COUNT,
                              "description": "Emails sent with campaign-level tracking (default 1)"},
                    "key": _text("Idempotency key: random or from your run, never from a recipient"),
                    "sent_at": {**_TIME, "description": _TIME["description"] + "; kept to its hour"},
                }},
                "Accepted": {"type": "object", "required": ["accepted"],
                             "properties": {"accepted": {"type": "integer", "minimum": 1}}},
                "Error": {"type": "object", "required": ["error"], "properties": {
                    "error": {"type": "string"},
                    "errors": {"type": "array", "items": {"type": "string"}, "maxItems": 20},
                    "more_errors": {"type": "integer", "minimum": 1}}},
            },
        },
    }
