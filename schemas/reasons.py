"""What the classifier's verdicts, sources and reason codes mean, in words a person reads right.

The codes are the values processors/classify.py writes to `events.verdict`, `events.source` and
`events.reasons`, named once in schemas/verdicts.py; this module is the one place that names them for
people (dashboard, report, docs), and labels every one of them (tests/unit/schemas/test_reasons.py).
A weak signal (a fast open, a cloud or provider network, an odd Accept header) decides nothing alone:
on a person's hit it is shown as what it is, "a person can", and only two together make a machine.
"""

from __future__ import annotations

from dataclasses import dataclass

from schemas import verdicts as words
from schemas.verdicts import (
    APPLE_MPP,
    BOT,
    DIRECT,
    DUPLICATE,
    GMAIL_PREFETCH,
    GMAIL_PROXY,
    HUMAN,
    INTERNAL_SOURCE,
    ISOLATION,
    MACHINE,
    PREFETCH,
    PROXY,
    R_ACCEPT_NOT_IMAGE,
    R_AMBIGUOUS_ACCEPT,
    R_AMBIGUOUS_ORDER,
    R_APP_HTTP_CLICK,
    R_BARE_MOZILLA,
    R_BOT_UA,
    R_CLOUD_CLICK_NO_OPEN,
    R_EMPTY_UA,
    R_FAST,
    R_GENERIC_UA,
    R_HEAD,
    R_HEAD_THEN_GET,
    R_HONEYPOT,
    R_LIB_UA,
    R_LINK_BURST,
    R_MESSAGE_BURST,
    R_NET_CLOUD,
    R_NET_CRAWLER,
    R_NET_HOSTING,
    R_NET_INTERNAL,
    R_NET_LINK_PREVIEW,
    R_NET_MAIL_SECURITY,
    R_NET_MONITOR,
    R_NET_PRIVACY_RELAY,
    R_NET_PROVIDER,
    R_NO_SIGNAL,
    R_PIXEL_THEN_BURST,
    R_PLATFORM_MACHINE,
    R_PREFETCH_HEADER,
    R_PROXY_CLICK,
    R_REPEAT,
    R_RESCAN,
    R_SCANNER_CLIENT,
    R_TIME_OF_CLICK,
    R_UA_GMAIL_PREFETCH,
    R_UA_GMAIL_PROXY,
    R_UA_SWITCH,
    R_UA_WEBMAIL_PROXY,
    R_UA_YAHOO_PROXY,
    R_UNSUBSCRIBE_FAST,
    R_VIA_ISOLATION,
    SCANNER,
    WEBMAIL_PROXY,
    YAHOO_PROXY,
)


@dataclass(frozen=True, slots=True)
class Label:
    """A short name for tables and one line saying what it means."""

    label: str
    explanation: str


VERDICTS: dict[str, Label] = {
    HUMAN: Label("person", "a person's own mail client or browser fetched it: counted"),
    PROXY: Label("person via proxy", "an image proxy (Gmail, Yahoo) fetched it as the reader opened: counted"),
    MACHINE: Label("machine", "privacy prefetch, a scanner, a bot or the sender's own network: not counted"),
    DUPLICATE: Label("repeat", "the same client fetched the same thing again within seconds: not counted"),
}
COUNTED_VERDICTS = words.COUNTED

SOURCES: dict[str, Label] = {
    DIRECT: Label("reader's own client", "the recipient's mail client or browser fetched it directly"),
    GMAIL_PROXY: Label("Gmail image proxy", "Google's image proxy fetched the pixel as the reader opened"),
    YAHOO_PROXY: Label("Yahoo image proxy", "Yahoo / AOL's image proxy fetched the pixel as the reader opened"),
    APPLE_MPP: Label("Apple Mail Privacy Protection",
                     "Apple Mail prefetches every image on delivery, read or not"),
    GMAIL_PREFETCH: Label("Gmail prefetch", "Gmail fetched the message's content right after delivery"),
    SCANNER: Label("security scanner", "a mail security service checked the message's pixel and links"),
    BOT: Label("bot or tool", "an HTTP library, crawler, link expander or other automated client"),
    INTERNAL_SOURCE: Label("sender's own network", "a fetch from the sender's own networks: not a recipient"),
    PREFETCH: Label("browser prefetch", "a browser fetched the link speculatively, before any click"),
    WEBMAIL_PROXY: Label("webmail image proxy",
                         "another webmail's image proxy (HEY, Fastmail) fetched the pixel as the reader opened"),
    ISOLATION: Label("browser isolation",
                     "a security vendor's isolation browser rendered it for the reader, long after its own scan"),
}

REASONS: dict[str, Label] = {
    R_NO_SIGNAL: Label("no machine signal", "nothing about the fetch suggests a machine"),
    R_NET_INTERNAL: Label("sender's network", "the address is on one of the sender's own networks"),
    R_PREFETCH_HEADER: Label("prefetch header", "the request said it was a prefetch (Sec-Purpose / Purpose)"),
    R_HONEYPOT: Label("hidden link followed", "a link no person can see was fetched: only scanners follow it"),
    R_EMPTY_UA: Label("no user agent", "the request had no User-Agent at all"),
    R_LIB_UA: Label("HTTP library", "the User-Agent is an HTTP library or command-line tool (curl, requests, …)"),
    R_BOT_UA: Label("bot user agent", "the User-Agent names a crawler, bot or link expander"),
    R_APP_HTTP_CLICK: Label("app's own HTTP stack",
                            "a click by an app's or program's own HTTP (CFNetwork, Dalvik, an SDK, a desktop tool): "
                            "no browser, no reader"),
    R_GENERIC_UA: Label("no browser shape",
                        "the User-Agent has no shape of a browser, in-app browser or mail client: a tool's"),
    R_UA_GMAIL_PREFETCH: Label("Gmail prefetch agent", "the User-Agent is Gmail's prefetch/content sampler"),
    R_HEAD: Label("HEAD request", "a HEAD request: no mail client shows an image or follows a link so"),
    R_NET_MAIL_SECURITY: Label("mail-security network", "the address belongs to a mail security vendor"),
    R_UA_GMAIL_PROXY: Label("Gmail image proxy", "the User-Agent is Google's image proxy"),
    R_UA_YAHOO_PROXY: Label("Yahoo image proxy", "the User-Agent is Yahoo / AOL's image proxy"),
    R_PROXY_CLICK: Label("click by image proxy", "an image proxy fetched a link: proxies never click"),
    R_BARE_MOZILLA: Label("bare Mozilla agent",
                          "the User-Agent is just \"Mozilla/5.0\", as Apple's privacy prefetch sends it"),
    R_NET_PRIVACY_RELAY: Label("Apple privacy relay", "the address is one of Apple's privacy relay egresses"),
    R_FAST: Label("opened within 2 min", "fetched within 2 minutes of delivery"),
    R_NET_CLOUD: Label("cloud network", "the address belongs to a cloud or hosting provider"),
    R_NET_PROVIDER: Label("mail provider network", "the address belongs to a mail provider's fetchers"),
    R_ACCEPT_NOT_IMAGE: Label("not asking for an image",
                              "a browser's User-Agent whose Accept header does not ask for images"),
    R_LINK_BURST: Label("link burst", "one client fetched several links within seconds: a scanner's sweep"),
    R_PIXEL_THEN_BURST: Label("pixel before link burst", "the same client opened shortly before its link burst"),
    R_SCANNER_CLIENT: Label("scanner's client", "a client already caught scanning this message fetched it"),
    R_TIME_OF_CLICK: Label("time-of-click check",
                           "fetched just before another client's click on the link: a URL rewriter's check"),
    R_REPEAT: Label("repeat within seconds", "the same client fetched the same thing seconds earlier"),
    R_UA_WEBMAIL_PROXY: Label("webmail image proxy", "the User-Agent is another webmail's image proxy (HEY, Fastmail)"),
    R_VIA_ISOLATION: Label("via browser isolation",
                           "a mail-security network long after delivery: the vendor renders the reader's click"),
    R_NET_HOSTING: Label("hosting network", "the address's network (AS) is a hosting provider's, on no published list"),
    R_UNSUBSCRIBE_FAST: Label("unsubscribe link fetched at once",
                              "the unsubscribe link was fetched within 2 minutes of delivery: a scanner's sweep"),
    R_NET_CRAWLER: Label("crawler network", "the address is in a search or AI crawler's published ranges"),
    R_NET_LINK_PREVIEW: Label("link-preview network",
                              "the address is in a chat or social app's published link-preview ranges"),
    R_NET_MONITOR: Label("uptime monitor", "the address is an uptime monitor's published probe"),
    R_AMBIGUOUS_ACCEPT: Label("unusual Accept, fast (ambiguous)",
                              "a fast open whose browser did not ask for an image: some mail clients do "
                              "so; counted as a person"),
    R_MESSAGE_BURST: Label("burst across addresses",
                           "several links of one message within seconds, each from another address: a "
                           "scanner on rotating proxies"),
    R_HEAD_THEN_GET: Label("HEAD then GET", "a link checked with HEAD and fetched again at once: a link checker"),
    R_UA_SWITCH: Label("two agents on one link",
                       "the same client fetched one link twice within a second with two User-Agents"),
    R_CLOUD_CLICK_NO_OPEN: Label("cloud click, no open",
                                 "a click from a cloud or hosting network whose client never showed the "
                                 "message: a sandbox"),
    R_RESCAN: Label("re-scan after a click",
                    "a security service fetched the link again right after the reader's click"),
    R_PLATFORM_MACHINE: Label("email platform says machine",
                              "the email platform that reported it flagged a machine (kept; pixeltrack's "
                              "verdict is its own)"),
    R_AMBIGUOUS_ORDER: Label("check or click (ambiguous)",
                             "two clients clicked one link within 2 s with nothing telling which was the "
                             "check: the earlier taken as it"),
}

# Weak signals: one alone leaves a hit a person's, two together make a machine (processors/classify.py).
WEAK_REASONS = words.WEAK

# How a weak signal reads on a counted (person's) hit: what it is, and that it says nothing against them.
_AS_PERSON: dict[str, Label] = {
    R_FAST: Label("fast open (a person can)",
                  "opened within 2 minutes of delivery (a person can: no machine signal)"),
    R_NET_CLOUD: Label("cloud network (a person can)",
                       "from a cloud or hosting network, such as a VPN (a person can: no machine signal)"),
    R_NET_PROVIDER: Label("provider network (a person can)",
                          "from a mail provider's network (a person can: no machine signal)"),
    R_NET_HOSTING: Label("hosting network (a person can)",
                         "from a hosting provider's network, such as a VPN (a person can: no machine signal)"),
    R_ACCEPT_NOT_IMAGE: Label("unusual Accept (a person can)",
                              "the browser did not ask for an image type (a person can: no machine signal)"),
}


def reason(code: str, verdict: str = MACHINE) -> Label:
    """The label of a reason code on a hit with `verdict`; an unknown code reads as itself."""
    if verdict in COUNTED_VERDICTS and code in _AS_PERSON:
        return _AS_PERSON[code]
    known = REASONS.get(code)
    if known is None:
        return Label(code, f"reason code {code!r} (no description yet)")
    if code in WEAK_REASONS and verdict == MACHINE:
        return Label(known.label, known.explanation + " (weak: machine only together with another weak signal)")
    return known


def source(code: str) -> Label:
    """The label of a source; an unknown one (or none) reads as itself."""
    return SOURCES.get(code) or Label(code or "unknown", f"source {code!r} (no description yet)")


def verdict(code: str) -> Label:
    return VERDICTS.get(code) or Label(code or "unknown", f"verdict {code!r} (no description yet)")
