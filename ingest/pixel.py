"""The answers the edge gives: the 43-byte transparent GIF, the redirect, the not-found page."""

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

NOT_FOUND_HTML = (b"<!doctype html><html><head><meta charset=\"utf-8\"><title>Link not found</title>"
                  b"<meta name=\"robots\" content=\"noindex\"></head><body><h1>Link not found</h1>"
                  b"<p>This link is not valid or has expired.</p></body></html>")

NOT_FOUND_HEADERS = CIMultiDictProxy(CIMultiDict({
    "Content-Type": "text/html; charset=utf-8",
    "Cache-Control": NO_STORE,
    "X-Robots-Tag": "noindex",
}))
