"""Short-lived signed URLs of an object store, for download links: an S3-style presigned GET.

A sender keeps its documents (price lists, whitepapers, invoices) in a private bucket and mints download
links to their object addresses (https://BUCKET.s3.REGION.amazonaws.com/KEY, or any S3-compatible store,
virtual-hosted or path-style). With the store configured (PIXELTRACK_DOCUMENT_STORE_*), the edge answers
a download of such an address with a 302 to a presigned GET of it that expires within minutes, so the
document is reachable only through its tracked link; other addresses are redirected to as they are.

The signature is AWS Signature Version 4 with query-string authentication (X-Amz-Algorithm,
X-Amz-Credential, X-Amz-Date, X-Amz-Expires, X-Amz-SignedHeaders=host, X-Amz-Signature; payload
UNSIGNED-PAYLOAD), computed with hmac and hashlib: no SDK. tests/unit/ingest/test_objectstore.py checks
it against the example in Amazon S3's API reference ("Authenticating Requests: Using Query Parameters").
"""

from __future__ import annotations

import hashlib
import hmac
import time
from collections.abc import Callable
from urllib.parse import parse_qsl, quote, unquote, urlsplit, urlunsplit

from schemas.settings import Settings

ALGORITHM = "AWS4-HMAC-SHA256"
MAX_EXPIRES = 7 * 24 * 3600  # the longest a Signature Version 4 presigned URL may live
_UNRESERVED = "-_.~"  # with letters and digits, what Signature Version 4 leaves unencoded
_DEFAULT_PORTS = {"http": 80, "https": 443}


def _encode(text: str, safe: str = "") -> str:
    return quote(text, safe=_UNRESERVED + safe)


def _host(scheme: str, hostname: str, port: int | None) -> str:
    """The Host header a client sends for the URL: no default port."""
    host = f"[{hostname}]" if ":" in hostname else hostname
    return host if port is None or port == _DEFAULT_PORTS.get(scheme) else f"{host}:{port}"


def _hmac(key: bytes, text: str) -> bytes:
    return hmac.new(key, text.encode(), hashlib.sha256).digest()


def signing_key(secret_access_key: str, date: str, region: str, service: str = "s3") -> bytes:
    """The day's key: HMAC-SHA256 chained over the date (YYYYMMDD), region, service and "aws4_request"."""
    key = _hmac(f"AWS4{secret_access_key}".encode(), date)
    return _hmac(_hmac(_hmac(key, region), service), "aws4_request")


def presign_get(url: str, *, access_key_id: str, secret_access_key: str, region: str, expires: int, now: float,
                session_token: str = "", service: str = "s3") -> str:
    """`url` as a GET presigned at `now` (epoch seconds) for `expires` seconds. The URL's own query
    parameters are kept (and signed); its path is encoded as Signature Version 4 encodes it (what is
    percent-encoded already is decoded first, so nothing is encoded twice); a fragment is dropped."""
    if not 1 <= expires <= MAX_EXPIRES:
        raise ValueError(f"expires={expires}: a presigned URL lives 1 s to {MAX_EXPIRES} s")
    parts = urlsplit(url)
    if parts.scheme not in _DEFAULT_PORTS or not parts.hostname or parts.username is not None:
        raise ValueError(f"{url[:80]!r} is no http(s) URL of a host")
    host = _host(parts.scheme, parts.hostname, parts.port)
    amz_date = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(now))
    scope = f"{amz_date[:8]}/{region}/{service}/aws4_request"
    path = _encode(unquote(parts.path) or "/", "/")
    params = [*parse_qsl(parts.query, keep_blank_values=True),
              ("X-Amz-Algorithm", ALGORITHM), ("X-Amz-Credential", f"{access_key_id}/{scope}"),
              ("X-Amz-Date", amz_date), ("X-Amz-Expires", str(expires)), ("X-Amz-SignedHeaders", "host")]
    if session_token:  # temporary credentials (STS): the token is signed with the rest
        params.append(("X-Amz-Security-Token", session_token))
    query = "&".join(f"{k}={v}" for k, v in sorted((_encode(k), _encode(v)) for k, v in params))
    canonical = f"GET\n{path}\n{query}\nhost:{host}\n\nhost\nUNSIGNED-PAYLOAD"
    to_sign = f"{ALGORITHM}\n{amz_date}\n{scope}\n{hashlib.sha256(canonical.encode()).hexdigest()}"
    signature = hmac.new(signing_key(secret_access_key, amz_date[:8], region, service), to_sign.encode(),
                         hashlib.sha256).hexdigest()
    return urlunsplit((parts.scheme, host, path, f"{query}&X-Amz-Signature={signature}", ""))


class DocumentStore:
    """Turns the address of a document in the store (under `base_url`) into a presigned GET valid for
    `expires` seconds; any other address is returned as it is."""

    def __init__(self, base_url: str, *, access_key_id: str, secret_access_key: str, region: str = "us-east-1",
                 expires: int = 300, session_token: str = "", clock: Callable[[], float] = time.time) -> None:
        base = urlsplit(base_url)
        if base.scheme not in _DEFAULT_PORTS or not base.hostname:
            raise ValueError(f"document store {base_url[:80]!r}: give its http(s) base URL")
        if not access_key_id or not secret_access_key:
            raise ValueError("a document store needs an access key id and a secret access key")
        if not 1 <= expires <= MAX_EXPIRES:
            raise ValueError(f"document URLs live 1 s to {MAX_EXPIRES} s, not {expires}")
        self._origin = (base.scheme, _host(base.scheme, base.hostname, base.port))
        self._path = base.path if base.path.endswith("/") else base.path + "/"
        self._key_id, self._secret, self._token = access_key_id, secret_access_key, session_token
        self.region = region
        self.expires = expires
        self._clock = clock

    def covers(self, url: str) -> bool:
        """Whether `url` is an object of this store: same scheme and host, under the base path."""
        try:
            parts = urlsplit(url)
            origin = (parts.scheme, _host(parts.scheme, parts.hostname or "", parts.port))
        except ValueError:
            return False
        return origin == self._origin and parts.username is None and parts.path.startswith(self._path)

    def __call__(self, url: str) -> str:
        if not self.covers(url):
            return url
        return presign_get(url, access_key_id=self._key_id, secret_access_key=self._secret, region=self.region,
                           expires=self.expires, now=self._clock(), session_token=self._token)


def document_store(settings: Settings) -> DocumentStore | None:
    """The settings' document store, or None when PIXELTRACK_DOCUMENT_STORE_URL is unset; ValueError
    naming the missing setting when it is set without its keys."""
    if not settings.document_store_url:
        return None
    if not settings.document_store_access_key_id or settings.document_store_secret_access_key is None:
        raise ValueError("PIXELTRACK_DOCUMENT_STORE_URL is set: give PIXELTRACK_DOCUMENT_STORE_ACCESS_KEY_ID and "
                         "PIXELTRACK_DOCUMENT_STORE_SECRET_ACCESS_KEY too")
    token = settings.document_store_session_token
    return DocumentStore(settings.document_store_url, access_key_id=settings.document_store_access_key_id,
                         secret_access_key=settings.document_store_secret_access_key.get_secret_value(),
                         region=settings.document_store_region, expires=settings.document_url_seconds,
                         session_token=token.get_secret_value() if token is not None else "")
