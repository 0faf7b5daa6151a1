"""The answers the edge gives: the 43-byte transparent GIF and the redirect (the pages: ingest/pages.py)."""

from __future__ import annotations

from multidict import CIMultiDict, CIMultiDictProxy

# GIF89a, 1x1, one transparent colour: the smallest widely accepted tracking pixel.
GIF = (b"GIF89a\x01\x00\x01\x00\x80\x00\x00\x00\x00\x00\xff\xff\xff!\xf9\x04\x01\x00\x00\x00\x00"
       b",\x00\x00\x00\x00\x01\x00\x01\x00\x00\x02\x02D\x01\x00;")
assert len(GIF) == 43

NO_STORE = "no-store, no-cache, must-revalidate, max-age=0"

PIXEL_HEADERS = CIMultiDictProxy(CIMultiDict({
    "Content-Type": "image/gif",
    "Cache-Control": NO_STORE,
    "Pragma": "no-cache",
    "Expires": "0",
}))

REDIRECT_HEADERS = CIMultiDictProxy(CIMultiDict({
    "Cache-Control": NO_STORE,
    "Pragma": "no-cache",
    "Referrer-Policy": "no-referrer",
}))
