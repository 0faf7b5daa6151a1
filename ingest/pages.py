"""The HTML pages the edge answers with: link not found (404), the unsubscribe form, its confirmation,
the preferences page and its answers."""

from __future__ import annotations

import html

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

# --- the preferences page (/p/<token>) -----------------------------------------------------------------

_STATE_WORDS = {
    "granted": "you allowed it",
    "denied": "you did not allow it",
    "unknown": "you had not chosen yet",
}
_PREFERENCES_HEAD = ('<!doctype html><html><head><meta charset="utf-8"><meta name="robots" content="noindex">'
                     '<meta name="viewport" content="width=device-width, initial-scale=1">'
                     "<title>Tracking preferences</title></head><body>")


def preferences_page(state: str) -> str:
    """The page a preferences link shows: what is asked, the choice on record when the email was sent
    (`state`, "" when the link does not say) and a form with both choices. It changes nothing itself:
    only its POST does (scanners fetch every link of an email)."""
    known = _STATE_WORDS.get(state)
    on_record = (f"<p>When this email was sent, {html.escape(known)}.</p>" if known else "")
    return (_PREFERENCES_HEAD
            + "<h1>Tracking preferences</h1>"
            "<p>The sender of this email can see whether you open its emails and which links you click, "
            "to learn what interests you. You choose whether they may. Either way you keep receiving the "
            "emails, and you can change your choice here at any time.</p>"
            + on_record
            + '<form method="post">'
            '<p><button type="submit" name="consent" value="granted">Allow open and click tracking</button></p>'
            '<p><button type="submit" name="consent" value="denied">Do not track my opens and clicks</button></p>'
            "</form><p>To stop receiving these emails, use the unsubscribe link in the email.</p></body></html>")


def preferences_saved_page(state: str) -> str:
    """The answer once a choice is kept."""
    said = ("Your opens and clicks may be tracked." if state == "granted"
            else "Your opens and clicks will not be tracked individually.")
    return (_PREFERENCES_HEAD + "<h1>Your choice is saved</h1>"
            f"<p>{html.escape(said)} You keep receiving these emails.</p>"
            "<p>You can change your choice with the same link at any time.</p></body></html>")


PREFERENCES_BAD_CHOICE_PAGE = (_PREFERENCES_HEAD + "<h1>Please choose</h1><p>The form field <code>consent</code> "
                               "must be <code>granted</code> or <code>denied</code>. Nothing was changed.</p>"
                               "</body></html>")
PREFERENCES_FAILED_PAGE = (_PREFERENCES_HEAD + "<h1>Please try again</h1><p>Your choice could not be recorded "
                           "just now. Please try again in a minute.</p></body></html>")
