"""The OpenAPI document is valid 3.1 and says what the handlers do: every route, status and schema."""

from __future__ import annotations

import asyncio
import io
from collections.abc import Sequence
from typing import Any

import orjson
import pytest
from aiohttp.test_utils import TestClient, TestServer
from jsonschema import Draft202012Validator
from openapi_spec_validator import validate

from ingest.api import MAX_BODY, MAX_ITEMS, create_api_app
from ingest.esp.routes import EspSettings
from ingest.openapi import openapi_document
from ingest.publisher import QueuePublisher
from schemas.records import Record
from schemas.tokens import ClickRef, Keyring, mint_click_ref
from schemas.topics import Topics
from tests.plugins.esp import Signers, fixture

KEY = {"Authorization": "Bearer k-secret"}
SEND = {"campaign": "c", "message": "m-1", "recipient": "r-1", "sent_at": "2026-11-30T10:00:00Z"}
CONSENT = {"recipient": "r-1", "state": "denied", "ts": "2026-11-30T10:00:00Z", "text_version": "2026-11"}
AGGREGATE = {"campaign": "c", "variant": "B", "count": 12, "key": "run-1/0", "sent_at": "2026-11-30T10:20:00Z"}


class RefusingPublisher(QueuePublisher):
    """A transport that never acknowledges (Kafka unreachable, say)."""

    async def publish(self, records: Sequence[Record]) -> None:
        raise ConnectionError("no broker")


def document() -> dict[str, Any]:
    return orjson.loads(orjson.dumps(openapi_document(MAX_ITEMS, MAX_BODY)))


def schema_validator(doc: dict[str, Any], schema: dict[str, Any]) -> Draft202012Validator:
    return Draft202012Validator({**schema, "components": doc["components"]})


def test_the_document_is_valid_openapi_3_1() -> None:
    doc = document()
    validate(doc)
    assert doc["openapi"].startswith("3.1")


def test_every_route_of_the_app_is_documented_and_nothing_else(keyring: Keyring) -> None:
    app = create_api_app(keyring, ["k-secret"], Topics(), QueuePublisher(asyncio.Queue()), own_publisher=False)
    routes = {(r.method.lower(), r.resource.canonical) for r in app.router.routes()  # type: ignore[union-attr]
              if r.method != "HEAD"}
    documented = {(method, path) for path, ops in document()["paths"].items() for method in ops}
    assert routes == documented


def esp_cases(signers: Signers) -> list[tuple[str, str, dict[str, str], Any, str]]:
    """The email platforms' receivers: signed as each platform signs (tests/plugins/esp.py)."""
    ids = {"pt_m": "m-7", "pt_c": "spring", "pt_s": "1795990000000"}
    now, big = 1_796_000_000, b"[" + b" " * MAX_BODY + b"]"
    sendgrid = orjson.dumps([{**fixture("sendgrid")["events"]["open"], **ids}])
    not_a_list = b'{"event": "open"}'
    mailgun_event = {**fixture("mailgun")["events"]["delivered"], "user-variables": ids}
    mailgun = signers.mailgun_body(mailgun_event, now)
    postmark = orjson.dumps({**fixture("postmark")["records"]["Delivery"], "Metadata": ids})
    ses_event = fixture("ses")["events"]["Delivery"]
    ses_event = {**ses_event, "mail": {**ses_event["mail"], "tags": {k: [v] for k, v in ids.items()}}}
    ses = orjson.dumps(signers.sns_envelope(ses_event))
    other_topic = orjson.dumps(signers.sns_envelope(ses_event, topic="arn:aws:sns:us-east-1:123456789012:other"))
    sg, pm = signers.sendgrid_headers(sendgrid, now), signers.postmark_headers()
    return [
        ("/v1/esp/sendgrid", "post", sg, sendgrid, "200"),
        ("/v1/esp/sendgrid", "post", signers.sendgrid_headers(not_a_list, now), not_a_list, "400"),
        ("/v1/esp/sendgrid", "post", {}, sendgrid, "401"),
        ("/v1/esp/sendgrid?tenant=nobody", "post", sg, sendgrid, "404"),
        ("/v1/esp/sendgrid", "post", sg, big, "413"),
        ("/v1/esp/sendgrid", "post", sg | {"x-refuse": "1"}, sendgrid, "503"),
        ("/v1/esp/mailgun", "post", {}, mailgun, "200"),
        ("/v1/esp/mailgun", "post", {}, b"[1]", "400"),
        ("/v1/esp/mailgun", "post", {}, signers.mailgun_body(mailgun_event, now, key="wrong-key-0123456789"), "401"),
        ("/v1/esp/mailgun?tenant=nobody", "post", {}, mailgun, "404"),
        ("/v1/esp/mailgun", "post", {}, big, "413"),
        ("/v1/esp/mailgun", "post", {"x-refuse": "1"}, mailgun, "503"),
        ("/v1/esp/postmark", "post", pm, postmark, "200"),
        ("/v1/esp/postmark", "post", pm, b"{not json", "400"),
        ("/v1/esp/postmark", "post", {}, postmark, "401"),
        ("/v1/esp/postmark?tenant=nobody", "post", pm, postmark, "404"),
        ("/v1/esp/postmark", "post", pm, big, "413"),
        ("/v1/esp/postmark", "post", pm | {"x-refuse": "1"}, postmark, "503"),
        ("/v1/esp/ses", "post", {}, ses, "200"),
        ("/v1/esp/ses", "post", {}, orjson.dumps(ses_event), "400"),
        ("/v1/esp/ses", "post", {}, other_topic, "403"),
        ("/v1/esp/ses?tenant=nobody", "post", {}, ses, "404"),
        ("/v1/esp/ses", "post", {}, big, "413"),
        ("/v1/esp/ses", "post", {"x-refuse": "1"}, ses, "503"),
    ]


# One request per documented (path, method, status): what makes the handler answer so.
def cases(keyring: Keyring, signers: Signers) -> list[tuple[str, str, dict[str, str], Any, str]]:
    click_id = mint_click_ref(keyring, ClickRef("", "spring", "A", "m-7", "r-7", "hit-42", "pricing"))
    return [*esp_cases(signers),
        ("/v1/sends", "post", KEY, {"sends": [SEND]}, "202"),
        ("/v1/sends", "post", KEY, [SEND, {**SEND, "message": "m-2"}], "202"),
        ("/v1/sends", "post", KEY, b"{not json", "400"),
        ("/v1/sends", "post", {}, {"sends": [SEND]}, "401"),
        ("/v1/sends", "post", {"Authorization": "Bearer wrong"}, {"sends": [SEND]}, "401"),
        ("/v1/sends", "post", KEY, {"sends": [SEND] * (MAX_ITEMS + 1)}, "413"),
        ("/v1/sends", "post", KEY, b"[" + b" " * MAX_BODY + b"]", "413"),  # aiohttp's limit, answered as JSON
        ("/v1/sends", "post", KEY, {"sends": [{"campaign": "c", "recipient": "r"}]}, "422"),
        ("/v1/sends", "post", KEY, {"sends": []}, "422"),
        ("/v1/sends", "post", KEY | {"x-refuse": "1"}, {"sends": [SEND]}, "503"),
        ("/v1/conversions", "post", KEY, {"conversions": [
            {"idempotency_key": "o-1", "value": 49.5, "currency": "EUR", "click_id": click_id}]}, "202"),
        ("/v1/conversions", "post", KEY, {"conversions": [
            {"idempotency_key": "o-2", "value": 5, "message": "m-7", "campaign": "spring"}]}, "202"),
        ("/v1/conversions", "post", KEY, b"[", "400"),
        ("/v1/conversions", "post", {}, {"conversions": []}, "401"),
        ("/v1/conversions", "post", KEY, [{"idempotency_key": "o", "message": "m"}] * (MAX_ITEMS + 1), "413"),
        ("/v1/conversions", "post", KEY, {"conversions": [{"idempotency_key": "o-3", "value": -1, "message": "m"}]},
         "422"),
        ("/v1/conversions", "post", KEY | {"x-refuse": "1"}, {"conversions": [
            {"idempotency_key": "o-4", "message": "m-7"}]}, "503"),
        ("/v1/events", "post", KEY, {"events": [
            {"message": "m-7", "type": "bounced", "bounce": "hard", "smtp_code": 550, "id": "evt-1",
             "diagnostic": "5.1.1 user unknown"}, {"message": "m-8", "type": "complained"}]}, "202"),
        ("/v1/events", "post", KEY, b"{", "400"),
        ("/v1/events", "post", {}, {"events": [{"message": "m-7", "type": "delivered"}]}, "401"),
        ("/v1/events", "post", KEY, [{"message": "m", "type": "delivered"}] * (MAX_ITEMS + 1), "413"),
        ("/v1/events", "post", KEY, {"events": [{"message": "m-7", "type": "opened"}]}, "422"),
        ("/v1/events", "post", KEY | {"x-refuse": "1"}, {"events": [{"message": "m-7", "type": "replied"}]}, "503"),
        ("/v1/consents", "post", KEY, {"consents": [CONSENT, {**CONSENT, "state": "Granted", "source": "sdk"}]},
         "202"),
        ("/v1/consents", "post", KEY, b"{", "400"),
        ("/v1/consents", "post", {}, {"consents": [CONSENT]}, "401"),
        ("/v1/consents", "post", KEY, [CONSENT] * (MAX_ITEMS + 1), "413"),
        ("/v1/consents", "post", KEY, {"consents": [{**CONSENT, "state": "maybe"}]}, "422"),
        ("/v1/consents", "post", KEY | {"x-refuse": "1"}, {"consents": [CONSENT]}, "503"),
        ("/v1/aggregate-sends", "post", KEY, {"aggregate_sends": [AGGREGATE]}, "202"),
        ("/v1/aggregate-sends", "post", KEY, b"[", "400"),
        ("/v1/aggregate-sends", "post", {}, [AGGREGATE], "401"),
        ("/v1/aggregate-sends", "post", KEY, [AGGREGATE] * (MAX_ITEMS + 1), "413"),
        ("/v1/aggregate-sends", "post", KEY, [{**AGGREGATE, "count": 0}], "422"),
        ("/v1/aggregate-sends", "post", KEY | {"x-refuse": "1"}, [AGGREGATE], "503"),
        ("/v1/health", "get", {}, None, "200"),
        ("/v1/openapi.json", "get", {}, None, "200"),
    ]


def test_the_cases_cover_every_documented_answer(keyring: Keyring, signers: Signers) -> None:
    documented = {(path, method, status) for path, ops in document()["paths"].items()
                  for method, op in ops.items() for status in op["responses"]}
    assert {(p.split("?")[0], m, s) for p, m, _, _, s in cases(keyring, signers)} == documented


async def test_every_documented_answer_is_given_as_documented(keyring: Keyring, signers: Signers) -> None:
    doc = document()
    clients = {}
    for refuse in (False, True):
        publisher = RefusingPublisher(asyncio.Queue()) if refuse else QueuePublisher(asyncio.Queue())
        app = create_api_app(keyring, ["k-secret"], Topics(), publisher, own_publisher=False,
                             clock=lambda: 1_796_000_000.0, esp=EspSettings(signers.secrets(), 600.0, signers.fetch))
        clients[refuse] = TestClient(TestServer(app, host="127.0.0.1"))
    async with clients[False] as ok, clients[True] as refusing:
        for path, method, headers, body, status in cases(keyring, signers):
            op = doc["paths"][path.split("?")[0]][method]
            client = refusing if headers.pop("x-refuse", None) else ok
            raw = body if isinstance(body, bytes) else None if body is None else orjson.dumps(body)
            data = io.BytesIO(raw) if raw is not None and len(raw) > 1 << 20 else raw
            resp = await client.request(method.upper(), path, headers=headers, data=data)
            assert str(resp.status) == status, (path, method, status, await resp.text())
            documented = op["responses"][status]
            (media, content), = documented["content"].items()
            assert resp.content_type == media
            errors = list(schema_validator(doc, content["schema"]).iter_errors(await resp.json()))
            assert errors == [], (path, status, errors[:1])
            if status in ("200", "202") and method == "post":  # what the handler took, the request schema takes
                request_schema = op["requestBody"]["content"]["application/json"]["schema"]
                taken = orjson.loads(body) if isinstance(body, bytes) else body
                assert list(schema_validator(doc, request_schema).iter_errors(taken)) == [], path


@pytest.mark.parametrize("bad", [
    {"sends": [{"campaign": "c", "recipient": "r"}]},
    {"sends": [{**SEND, "campaign": "x" * 201}]},
    {"sends": [{**SEND, "links": -1}]},
    {"sends": []},
    [{"idempotency_key": "o", "message": "m", "value": 2e12}],
    {"events": [{"message": "m", "type": "opened"}]},
    {"events": [{"message": "m", "type": "bounced", "smtp_code": 700}]},
    {"events": [{"type": "delivered"}]},
])
def test_what_the_handler_refuses_the_request_schema_refuses(bad: Any) -> None:
    doc = document()
    path = "/v1/conversions" if isinstance(bad, list) else "/v1/events" if "events" in bad else "/v1/sends"
    schema = doc["paths"][path]["post"]["requestBody"]["content"]["application/json"]["schema"]
    assert list(schema_validator(doc, schema).iter_errors(bad)) != []
