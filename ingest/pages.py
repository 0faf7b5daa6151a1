"""The HTML pages the edge answers with: link not found (404), the unsubscribe form, its confirmation."""

from __future__ import annotations

from multidict import CIMultiDict, CIMultiDictProxy

from ingest.pixel import NO_STORE

NOT_FOUND_HTML = (b"<!doctype html><html><head><meta charset=\"utf-8\"><title>Link not found</title>"
                  b"<meta name=\"robots\" content=\"noindex\"></head><body><h1>Link not found</h1>"
                  b"<p>This link is not valid or has expired.</p></body></html>")

NOT_FOUND_HEADERS = CIMultiDictProxy(CIMultiDict({
    "Content-Type": "text/html; charset=utf-8",
    "Cache-Control": NO_STORE,
    "X-Robots-Tag": "noindex",
}))

UNSUBSCRIBE_PAGE = """<!doctype html><html><head><meta charset="utf-8"><meta name="robots" content="noindex">
<title>Unsubscribe</title></head><body><h1>Unsubscribe</h1><p>Stop receiving these emails?</p>
<form method="post"><input type="hidden" name="List-Unsubscribe" value="One-Click">
<button type="submit">Unsubscribe</button></form></body></html>"""
UNSUBSCRIBED_PAGE = """<!doctype html><html><head><meta charset="utf-8"><meta name="robots" content="noindex">
<title>Unsubscribed</title></head><body><h1>You are unsubscribed</h1></body></html>"""
UNSUBSCRIBE_FAILED_PAGE = """<!doctype html><html><head><meta charset="utf-8"><meta name="robots" content="noindex">
<title>Unsubscribe</title></head><body><h1>Please try again</h1><p>Your unsubscribe could not be recorded
just now. Please try again in a minute.</p></body></html>"""
HTML_NO_STORE = {"Content-Type": "text/html; charset=utf-8", "Cache-Control": "no-store",
                 "X-Robots-Tag": "noindex"}
