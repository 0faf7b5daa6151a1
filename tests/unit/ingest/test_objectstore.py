"""Presigned GETs of the document store (ingest/objectstore.py): AWS Signature Version 4 query-string
authentication, checked against the example of Amazon S3's API reference, and the edge redirecting a
download of a stored document to a short-lived signed URL."""

from __future__ import annotations

import hashlib
import hmac
import time
from collections.abc import AsyncIterator
from urllib.parse import parse_qs, urlsplit

import pytest
from aiohttp import web
from pydantic import ValidationError

from ingest.app import create_app
from ingest.fastpath import EdgeSite
from ingest.objectstore import DocumentStore, document_store, presign_get, signing_key
from schemas.records import RawHit
from schemas.settings import Settings
from schemas.tokens import TokenPayload
from tests.unit.ingest.test_edge_properties import CollectingPublisher
from tests.unit.ingest.test_fastpath import KEYRING, exchange, get

# The example in "Authenticating Requests: Using Query Parameters (AWS Signature Version 4)", Amazon S3 API
# Reference: GET test.txt of examplebucket, presigned on 2013-05-24 00:00:00 UTC for 86,400 seconds with the
# documentation's example credentials.
EXAMPLE_KEY_ID = "AKIAIOSFODNN7EXAMPLE"
EXAMPLE_SECRET = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"
EXAMPLE_NOW = 1369353600.0  # 20130524T000000Z
EXAMPLE_URL = ("https://examplebucket.s3.amazonaws.com/test.txt?X-Amz-Algorithm=AWS4-HMAC-SHA256"
               "&X-Amz-Credential=AKIAIOSFODNN7EXAMPLE%2F20130524%2Fus-east-1%2Fs3%2Faws4_request"
               "&X-Amz-Date=20130524T000000Z&X-Amz-Expires=86400&X-Amz-SignedHeaders=host"
               "&X-Amz-Signature=aeeed9bbccd4d02ee5c0109b86d86835f995330da4c265957d157751f604d404")
BUCKET = "https://docs-bucket.s3.eu-west-1.amazonaws.com/"


def test_the_example_of_amazons_reference() -> None:
    assert presign_get("https://examplebucket.s3.amazonaws.com/test.txt", access_key_id=EXAMPLE_KEY_ID,
                       secret_access_key=EXAMPLE_SECRET, region="us-east-1", expires=86400,
                       now=EXAMPLE_NOW) == EXAMPLE_URL


def test_the_signing_key_and_signature_of_amazons_reference() -> None:
    """The Signature Version 4 documentation's worked example (IAM ListUsers, 2015-08-30): its derived
    signing key and the signature of its string to sign."""
    key = signing_key("wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY", "20150830", "us-east-1", "iam")
    assert key.hex() == "c4afb1cc5771d871763a393e44b703571b55cc28424d1a5e86da6ed3c154a4b9"
    to_sign = ("AWS4-HMAC-SHA256\n20150830T123600Z\n20150830/us-east-1/iam/aws4_request\n"
               "f536975d06c0309214f805bb90ccff089219ecd68b2577efef23edd43b7e1a59")
    assert hmac.new(key, to_sign.encode(), hashlib.sha256).hexdigest() == (
        "5d672d79c15b13162d9279b0855cfba6789a8edb4c82c400e06b5924a6f2b5d7")


def test_anything_changed_changes_the_signature() -> None:
    base = {"access_key_id": EXAMPLE_KEY_ID, "secret_access_key": EXAMPLE_SECRET, "region": "us-east-1",
            "expires": 86400, "now": EXAMPLE_NOW}
    url = "https://examplebucket.s3.amazonaws.com/test.txt"
    signatures = {presign_get(u, **kw).rsplit("=", 1)[1] for u, kw in [  # type: ignore[arg-type]
        (url, base), (url.replace("test", "Test"), base), (url + "?versionId=2", base),
        (url, {**base, "expires": 60}), (url, {**base, "now": EXAMPLE_NOW + 1}), (url, {**base, "region": "eu-west-1"}),
        (url, {**base, "secret_access_key": EXAMPLE_SECRET + "x"}), (url, {**base, "session_token": "tok"})]}
    assert len(signatures) == 8


def test_paths_and_queries_are_encoded_once_and_kept() -> None:
    url = presign_get("https://b.s3.amazonaws.com:443/price lists/2026%20Q1/liste-prix-été.pdf?versionId=a+b&x=",
                      access_key_id="K", secret_access_key="S", region="eu-west-1", expires=300, now=EXAMPLE_NOW,
                      session_token="tok/en=")
    parts = urlsplit(url)
    assert parts.netloc == "b.s3.amazonaws.com"  # the default port, as a client's Host header omits it
    assert parts.path == "/price%20lists/2026%20Q1/liste-prix-%C3%A9t%C3%A9.pdf"
    query = parse_qs(parts.query, keep_blank_values=True)
    assert query["versionId"] == ["a b"]
    assert query["x"] == [""]
    assert query["X-Amz-Security-Token"] == ["tok/en="]
    assert query["X-Amz-Expires"] == ["300"]
    assert query["X-Amz-Credential"] == ["K/20130524/eu-west-1/s3/aws4_request"]
    names = [p.split("=", 1)[0] for p in parts.query.split("&")]
    assert names[:-1] == sorted(names[:-1])  # the canonical order, the signature last
    assert names[-1] == "X-Amz-Signature"


@pytest.mark.parametrize("bad", ["ftp://b.example/x", "https:///x", "https://user:pw@b.example/x", "/relative"])
def test_what_is_no_http_url_of_a_host_is_refused(bad: str) -> None:
    with pytest.raises(ValueError, match="no http"):
        presign_get(bad, access_key_id="K", secret_access_key="S", region="r", expires=60, now=EXAMPLE_NOW)


def test_the_store_signs_only_its_own_objects() -> None:
    store = DocumentStore(BUCKET + "docs", access_key_id="K", secret_access_key="S", region="eu-west-1",
                          expires=120, clock=lambda: EXAMPLE_NOW)
    inside = [BUCKET + "docs/price-list.pdf", "https://docs-bucket.s3.eu-west-1.amazonaws.com:443/docs/a/b.pdf"]
    outside = [BUCKET + "other/x.pdf", BUCKET + "docsx/x.pdf", "http://docs-bucket.s3.eu-west-1.amazonaws.com/docs/x",
               "https://docs-bucket.s3.eu-west-1.amazonaws.com.evil.example/docs/x.pdf",
               "https://k:s@docs-bucket.s3.eu-west-1.amazonaws.com/docs/x.pdf", "https://files.example.com/docs/x.pdf"]
    for url in inside:
        signed = store(url)
        assert "X-Amz-Signature=" in signed
        assert "X-Amz-Expires=120&" in signed
    assert [store(url) for url in outside] == outside


def test_settings_name_what_is_missing() -> None:
    base = Settings(_env_file=None, spool_dir=None)  # type: ignore[call-arg]
    assert document_store(base) is None
    with pytest.raises(ValueError, match="PIXELTRACK_DOCUMENT_STORE_ACCESS_KEY_ID"):
        document_store(base.model_copy(update={"document_store_url": BUCKET}))
    with pytest.raises(ValidationError):
        Settings(_env_file=None, document_store_url="s3://bucket/")  # type: ignore[call-arg]
    with pytest.raises(ValidationError):
        Settings(_env_file=None, document_url_seconds=604801)  # type: ignore[call-arg]


@pytest.fixture(params=["fast", "plain"])
async def edge(request: pytest.FixtureRequest) -> AsyncIterator[tuple[int, CollectingPublisher]]:
    s = Settings(_env_file=None, edge_id="os", spool_dir=None, producer_linger_ms=0,  # type: ignore[call-arg]
                 document_store_url=BUCKET, document_store_region="eu-west-1", document_store_access_key_id="AKID",
                 document_store_secret_access_key="secret-access-key", document_url_seconds=90)
    publisher = CollectingPublisher()
    runner = web.AppRunner(create_app(s, publisher=publisher, keyring=KEYRING), access_log=None)
    await runner.setup()
    site = EdgeSite(runner, "127.0.0.1", 0) if request.param == "fast" else web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    yield int(runner.addresses[0][1]), publisher
    await runner.cleanup()


async def test_a_download_of_a_stored_document_redirects_to_a_short_lived_signed_url(
        edge: tuple[int, CollectingPublisher]) -> None:
    port, publisher = edge
    now = int(time.time() * 1000)
    stored = KEYRING.mint(TokenPayload("download", "", "c", "A", "m-1", "r-1", now, url=BUCKET + "price-list.pdf"))
    public = KEYRING.mint(TokenPayload("download", "", "c", "A", "m-2", "r-2", now,
                                       url="https://files.example.com/whitepaper.pdf"))
    (status, headers, _), = await exchange(port, get(f"/d/{stored}"))
    assert status == 302
    location = urlsplit(headers["location"])
    assert (location.scheme, location.netloc, location.path) == (
        "https", "docs-bucket.s3.eu-west-1.amazonaws.com", "/price-list.pdf")
    query = parse_qs(location.query)
    assert query["X-Amz-Expires"] == ["90"]
    assert query["X-Amz-Credential"][0].startswith("AKID/")
    assert abs(time.mktime(time.strptime(query["X-Amz-Date"][0], "%Y%m%dT%H%M%SZ")) - time.mktime(
        time.gmtime())) < 60
    assert "no-store" in headers["cache-control"]
    (status, headers, _), = await exchange(port, get(f"/d/{public}"))
    assert (status, headers["location"]) == (302, "https://files.example.com/whitepaper.pdf")
    # The hit recorded is the download of the document's address, whatever the redirect was.
    kinds = [RawHit.decode(r.value).kind for r in publisher.records if r.topic == "hits.raw"]
    assert kinds == ["download", "download"]
