"""What the classifier's verdicts, sources and reason codes mean, in words a person reads right.

The codes are the values processors/classify.py writes to `events.verdict`, `events.source` and
`events.reasons`; this module is the one place that names them for people (dashboard, report, docs).
A weak signal (a fast open, a cloud or provider network, an odd Accept header) decides nothing alone:
on a person's hit it is shown as what it is, "a person can", and only two together make a machine.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Label:
    """A short name for tables and one line saying what it means."""

    label: str
    explanation: str


VERDICTS: dict[str, Label] = {
    "human": Label("person", "a person's own mail client or browser fetched it: counted"),
    "proxy": Label("person via proxy", "an image proxy (Gmail, Yahoo) fetched it as the reader opened: counted"),
    "machine": Label("machine", "privacy prefetch, a scanner, a bot or the sender's own network: not counted"),
    "duplicate": Label("repeat", "the same client fetched the same thing again within seconds: not counted"),
}
COUNTED_VERDICTS = frozenset({"human", "proxy"})

SOURCES: dict[str, Label] = {
    "direct": Label("reader's own client", "the recipient's mail client or browser fetched it directly"),
    "gmail_proxy": Label("Gmail image proxy", "Google's image proxy fetched the pixel as the reader opened"),
    "yahoo_proxy": Label("Yahoo image proxy", "Yahoo / AOL's image proxy fetched the pixel as the reader opened"),
    "apple_mpp": Label("Apple Mail Privacy Protection",
                       "Apple Mail prefetches every image on delivery, read or not"),
    "gmail_prefetch": Label("Gmail prefetch", "Gmail fetched the message's content right after delivery"),
    "scanner": Label("security scanner", "a mail security service checked the message's pixel and links"),
    "bot": Label("bot or tool", "an HTTP library, crawler, link expander or other automated client"),
    "internal": Label("sender's own network", "a fetch from the sender's own networks: not a recipient"),
    "prefetch": Label("browser prefetch", "a browser fetched the link speculatively, before any click"),
    "webmail_proxy": Label("webmail image proxy",
                           "another webmail's image proxy (HEY, Fastmail) fetched the pixel as the reader opened"),
    "isolation": Label("browser isolation",
                       "a security vendor's isolation browser rendered it for the reader, long after its own scan"),
}

REASONS: dict[str, Label] = {
    "no_machine_signal": Label("no machine signal", "nothing about the fetch suggests a machine"),
    "net_internal": Label("sender's network", "the address is on one of the sender's own networks"),
    "prefetch_header": Label("prefetch header", "the request said it was a prefetch (Sec-Purpose / Purpose)"),
    "honeypot": Label("hidden link followed", "a link no person can see was fetched: only scanners follow it"),
    "empty_ua": Label("no user agent", "the request had no User-Agent at all"),
    "lib_ua": Label("HTTP library", "the User-Agent is an HTTP library or command-line tool (curl, requests, …)"),
    "bot_ua": Label("bot user agent", "the User-Agent names a crawler, bot or link expander"),
    "ua_gmail_prefetch": Label("Gmail prefetch agent", "the User-Agent is Gmail's prefetch/content sampler"),
    "head_request": Label("HEAD request", "a HEAD request: no mail client shows an image or follows a link so"),
    "net_mail_security": Label("mail-security network", "the address belongs to a mail security vendor"),
    "ua_gmail_proxy": Label("Gmail image proxy", "the User-Agent is Google's image proxy"),
    "ua_yahoo_proxy": Label("Yahoo image proxy", "the User-Agent is Yahoo / AOL's image proxy"),
    "click_by_image_proxy": Label("click by image proxy", "an image proxy fetched a link: proxies never click"),
    "ua_bare_mozilla": Label("bare Mozilla agent",
                             "the User-Agent is just \"Mozilla/5.0\", as Apple's privacy prefetch sends it"),
    "net_privacy_relay": Label("Apple privacy relay", "the address is one of Apple's privacy relay egresses"),
    "fast_after_send": Label("opened within 2 min", "fetched within 2 minutes of delivery"),
    "net_cloud": Label("cloud network", "the address belongs to a cloud or hosting provider"),
    "net_provider": Label("mail provider network", "the address belongs to a mail provider's fetchers"),
    "accept_not_image": Label("not asking for an image",
                              "a browser's User-Agent whose Accept header does not ask for images"),
    "link_burst": Label("link burst", "one client fetched several links within seconds: a scanner's sweep"),
    "pixel_then_burst": Label("pixel before link burst", "the same client opened shortly before its link burst"),
    "scanner_client": Label("scanner's client", "a client already caught scanning this message fetched it"),
    "time_of_click_check": Label("time-of-click check",
                                 "fetched just before another client's click on the link: a URL rewriter's check"),
    "repeat_within_window": Label("repeat within seconds", "the same client fetched the same thing seconds earlier"),
    "ua_webmail_proxy": Label("webmail image proxy", "the User-Agent is another webmail's image proxy (HEY, Fastmail)"),
    "via_isolation": Label("via browser isolation",
                           "a mail-security network long after delivery: the vendor renders the reader's click"),
    "net_hosting": Label("hosting network", "the address's network (AS) is a hosting provider's, on no published list"),
    "unsubscribe_fast": Label("unsubscribe link fetched at once",
                              "the unsubscribe link was fetched within 2 minutes of delivery: a scanner's sweep"),
    "net_crawler": Label("crawler network", "the address is in a search or AI crawler's published ranges"),
    "net_link_preview": Label("link-preview network",
                              "the address is in a chat or social app's published link-preview ranges"),
    "net_monitor": Label("uptime monitor", "the address is an uptime monitor's published probe"),
    "ambiguous_accept_not_image": Label("unusual Accept, fast (ambiguous)",
                                        "a fast open whose browser did not ask for an image: some mail clients do "
                                        "so; counted as a person"),
    "message_link_burst": Label("burst across addresses",
                                "several links of one message within seconds, each from another address: a "
                                "scanner on rotating proxies"),
    "head_then_get": Label("HEAD then GET", "a link checked with HEAD and fetched again at once: a link checker"),
    "ua_switch_same_link": Label("two agents on one link",
                                 "the same client fetched one link twice within a second with two User-Agents"),
    "cloud_click_without_open": Label("cloud click, no open",
                                      "a click from a cloud or hosting network whose client never showed the "
                                      "message: a sandbox"),
    "rescan_after_click": Label("re-scan after a click",
                                "a security service fetched the link again right after the reader's click"),
    "ambiguous_click_order": Label("check or click (ambiguous)",
                                   "two clients clicked one link within 2 s with nothing telling which was the "
                                   "check: the earlier taken as it"),
}

# Weak signals: one alone leaves a hit a person's, two together make a machine (processors/classify.py).
WEAK_REASONS = frozenset({"fast_after_send", "net_cloud", "net_provider", "net_hosting", "accept_not_image"})

# How a weak signal reads on a counted (person's) hit: what it is, and that it says nothing against them.
_AS_PERSON: dict[str, Label] = {
    "fast_after_send": Label("fast open (a person can)",
                             "opened within 2 minutes of delivery (a person can: no machine signal)"),
    "net_cloud": Label("cloud network (a person can)",
                       "from a cloud or hosting network, such as a VPN (a person can: no machine signal)"),
    "net_provider": Label("provider network (a person can)",
                          "from a mail provider's network (a person can: no machine signal)"),
    "net_hosting": Label("hosting network (a person can)",
                         "from a hosting provider's network, such as a VPN (a person can: no machine signal)"),
    "accept_not_image": Label("unusual Accept (a person can)",
                              "the browser did not ask for an image type (a person can: no machine signal)"),
}


def reason(code: str, verdict: str = "machine") -> Label:
    """The label of a reason code on a hit with `verdict`; an unknown code reads as itself."""
    if verdict in COUNTED_VERDICTS and code in _AS_PERSON:
        return _AS_PERSON[code]
    known = REASONS.get(code)
    if known is None:
        return Label(code, f"reason code {code!r} (no description yet)")
    if code in WEAK_REASONS and verdict == "machine":
        return Label(known.label, known.explanation + " (weak: machine only together with another weak signal)")
    return known


def source(code: str) -> Label:
    """The label of a source; an unknown one (or none) reads as itself."""
    return SOURCES.get(code) or Label(code or "unknown", f"source {code!r} (no description yet)")


def verdict(code: str) -> Label:
    return VERDICTS.get(code) or Label(code or "unknown", f"verdict {code!r} (no description yet)")
