"""People or machines: the verdict, source and reasons of a hit on its own (static signals), and their types.

The Classifier, which revises earlier verdicts in a settle window as behaviour shows, is processors/behaviour.py.
"""

from __future__ import annotations

from dataclasses import dataclass, fields

from processors.enrich import (
    UA_APP_HTTP,
    UA_BARE_MOZILLA,
    UA_BOT,
    UA_BROWSER,
    UA_EMPTY,
    UA_GENERIC,
    UA_GMAIL_PREFETCH,
    UA_GMAIL_PROXY,
    UA_LIBRARY,
    UA_WEBMAIL_PROXY,
    UA_YAHOO_PROXY,
    Enrichment,
    UaProfile,
)
from processors.networks import (
    CLOUD,
    CRAWLER,
    INTERNAL,
    LINK_PREVIEW,
    MAIL_SECURITY,
    MONITOR,
    PRIVACY_RELAY,
    PROVIDER_PROXY,
    NetworkInfo,
)
from schemas.hit import Hit
from schemas.tokens import FLAG_UNSUBSCRIBE

# Verdicts, sources and reason codes are named once, in schemas/verdicts.py; the names stay importable from
# here, where they are decided (also those only processors/behaviour.py uses: hence the noqa).
from schemas.verdicts import (  # noqa: F401
    APPLE_MPP,
    BOT,
    COUNTED,
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
from schemas.verdicts import WEAK as _WEAK  # noqa: F401 (importable from here, see above)

# Network categories that are machines by themselves (networks.py), with their reason.
_MACHINE_NETWORK_REASONS: dict[str, str] = {CRAWLER: R_NET_CRAWLER, LINK_PREVIEW: R_NET_LINK_PREVIEW,
                                            MONITOR: R_NET_MONITOR}


@dataclass(frozen=True, slots=True)
class Verdict:
    """What fetched a hit: verdict (human | proxy | machine | duplicate), source, and reason codes."""

    verdict: str
    source: str
    reasons: tuple[str, ...]


@dataclass(slots=True)
class Decision:
    """A verdict about one hit. `revision` is 0 for the first decision about a hit and +1 for each
    revision; `previous` is the verdict a revision replaces (None when revision == 0), and
    `previous_enrichment` the enrichment written with it (a machine's verdict withholds device and
    place, so a revision's two rows can differ there: the row that cancels must match the one it
    cancels)."""

    hit: Hit
    enrichment: Enrichment
    verdict: Verdict
    revision: int
    previous: Verdict | None
    previous_enrichment: Enrichment | None = None


@dataclass(frozen=True, slots=True)
class ClassifierConfig:
    """Windows and bounds of the classifier; every window is in event time (seconds of hit.ts).

    Defaults come from the field data in docs/signals.md: scanners fetch 5–90 s after send, hit all links
    within a second or two (gaps of a few hundred ms), the pixel up to ~40 s before their link burst;
    retries by one client come within seconds, real re-opens minutes to hours later.
    """

    dedupe_window: float = 10.0
    """A repeat by the same client (address + UA) of the same pixel or link within this is a duplicate."""
    settle_window: float = 300.0
    """A verdict may be revised until the message has seen hits this much later; then it is final."""
    fast_after_send: float = 120.0
    """A hit this soon after send is "fast" (a weak signal: people do read at once)."""
    burst_window: float = 2.0
    """`burst_min_links` distinct links from one client within this is a link burst."""
    burst_min_links: int = 2
    slow_burst_window: float = 10.0
    """`slow_burst_min_links` distinct links from one client within this is a (slower) link burst."""
    slow_burst_min_links: int = 3
    pixel_burst_window: float = 120.0
    """An open by a client up to this long before its link burst is the scanner's too."""
    scanner_client_window: float = 60.0
    """Other hits of a client within this of its scanner evidence (burst, honeypot) are the scanner's."""
    time_of_click_window: float = 2.0
    """Two clients' clicks on one link this close: one is a check (before) or a re-scan (after) of the other."""
    rescan_window: float = 30.0
    """A fetch of a link this soon after a reader's click on it, from another client with no trail of its own
    (or from a mail-security or cloud network when the reader's was not), is the vendor's re-scan."""
    security_scan_window: float = 300.0
    """A mail-security network's fetch this soon after send is its delivery-time scan; later ones are a
    person's clicks through the vendor's browser isolation unless behaviour says otherwise."""
    sandbox_window: float = 3600.0
    """A click from a hosting network with no open of its client this soon after send is a sandbox's
    detonation (they fetch 3–40 minutes after delivery); later, a person on a VPN with images off."""
    proxy_dedupe_window: float = 300.0
    """An image proxy's repeat of the same pixel within this, from any of its nodes, is a duplicate."""
    message_burst_window: float = 2.0
    """`message_burst_min_links` distinct links of one message within this, from two or more clients, is a
    scanner spread over rotating addresses."""
    message_burst_min_links: int = 3
    head_then_get_window: float = 60.0
    """A GET of a link this soon after a HEAD of it (any client) is the link checker's follow-up."""
    ua_switch_window: float = 1.0
    """One client fetching one link with two user agents within this is a sandbox, not a person."""
    client_prefix_v4: int = 24
    """Bursts group addresses by prefix: scanners spread one visit over neighbouring addresses."""
    client_prefix_v6: int = 64
    max_messages: int = 50_000
    """Most messages with live state; the least recently seen is dropped first (see Classifier)."""
    max_hits_per_message: int = 32
    """Most hits kept per message; older ones are final when pushed out."""
    max_tracked_hits: int = 200_000
    """Most hits kept over all messages; least recently seen messages are dropped to stay under it."""

    def __post_init__(self) -> None:
        for f in fields(self):
            value = getattr(self, f.name)
            if not isinstance(value, int | float) or value <= 0:
                raise ValueError(f"ClassifierConfig.{f.name} must be a positive number, got {value!r}")
        if self.burst_min_links < 2 or self.slow_burst_min_links < 2 or self.message_burst_min_links < 2:
            raise ValueError("ClassifierConfig.burst_min_links, slow_burst_min_links and message_burst_min_links "
                             f"must be at least 2, got {self.burst_min_links!r}, {self.slow_burst_min_links!r} "
                             f"and {self.message_burst_min_links!r}")
        if self.client_prefix_v4 > 32 or self.client_prefix_v6 > 128:
            raise ValueError("ClassifierConfig.client_prefix_v4 must be ≤ 32 and client_prefix_v6 ≤ 128, got "
                             f"{self.client_prefix_v4!r} and {self.client_prefix_v6!r}")


_VERDICTS: dict[tuple[str, str, tuple[str, ...]], Verdict] = {}


def verdict_of(verdict: str, source: str, reasons: tuple[str, ...]) -> Verdict:
    """An interned Verdict (verdicts are immutable and few: sharing them saves the per-hit allocation)."""
    key = (verdict, source, reasons)
    v = _VERDICTS.get(key)
    if v is None:
        v = Verdict(verdict, source, reasons)
        if len(_VERDICTS) < 10_000:  # combinations are few; the guard only bounds pathological input
            _VERDICTS[key] = v
    return v


_PREFETCH_HEADERS = frozenset({"sec-purpose", "purpose", "x-purpose", "x-moz"})


def _is_prefetch(headers: dict[str, str]) -> bool:
    # Hits carry two or three headers: walking them beats four lookups.
    for name in headers:
        if name in _PREFETCH_HEADERS:
            v = headers[name].lower()
            if "prefetch" in v or "prerender" in v or "preview" in v:
                return True
    return False


def static_verdict(hit: Hit, prof: UaProfile, net: NetworkInfo | None, config: ClassifierConfig,
                   hosting: bool = False) -> Verdict:
    """The verdict a hit earns on its own (UA, network, method, headers, link flags, time since send).
    `hosting` says the address's AS is a hosting provider's (from the enrichment's ASN), for networks
    no list names.

    Pure. A `human` answer here is provisional: behaviour across the message's hits may revise it.
    """
    category = net.category if net is not None else ""
    if category == INTERNAL:
        return verdict_of(MACHINE, INTERNAL_SOURCE, (R_NET_INTERNAL,))
    if _is_prefetch(hit.headers):
        return verdict_of(MACHINE, PREFETCH, (R_PREFETCH_HEADER,))
    if hit.honeypot:
        return verdict_of(MACHINE, SCANNER, (R_HONEYPOT,))
    kind = prof.kind
    if kind == UA_EMPTY:
        return verdict_of(MACHINE, BOT, (R_EMPTY_UA,))
    if kind == UA_LIBRARY:
        return verdict_of(MACHINE, BOT, (R_LIB_UA,))
    if kind == UA_BOT:
        return verdict_of(MACHINE, BOT, (R_BOT_UA,))
    if kind == UA_GENERIC:
        return verdict_of(MACHINE, BOT, (R_GENERIC_UA,))
    if kind == UA_GMAIL_PREFETCH:
        return verdict_of(MACHINE, GMAIL_PREFETCH, (R_UA_GMAIL_PREFETCH,))
    is_open = hit.kind == "open"
    if kind == UA_APP_HTTP and not is_open:
        # An app's own HTTP stack fetching the link (feed refresh, link preview, prefetch): a person sees a page
        # only in a browser engine, whose UA names it. Its opens stay (a native mail app may load images so).
        return verdict_of(MACHINE, BOT, (R_APP_HTTP_CLICK,))
    since_send = hit.ts - hit.sent_at
    if hit.method == "HEAD":
        # No mail client displays an image or follows a link with HEAD: a checker probing the URL.
        if category == MAIL_SECURITY:
            return verdict_of(MACHINE, SCANNER, (R_HEAD, R_NET_MAIL_SECURITY))
        return verdict_of(MACHINE, SCANNER, (R_HEAD,))
    if category == MAIL_SECURITY:
        if since_send < config.security_scan_window:
            return verdict_of(MACHINE, SCANNER, (R_NET_MAIL_SECURITY,))
        # Long after delivery the vendor's network fetches for a person: click-time protection renders
        # the page in its isolation browser "at each click for the lifetime of a URL"
        # (https://knowledge.broadcom.com/external/article/170869/email-threat-isolation-for-email-securit.html).
        # Provisional: a check just before another client's click, or a re-scan just after, is revised.
        if is_open:
            return verdict_of(PROXY, ISOLATION, (R_VIA_ISOLATION, R_NET_MAIL_SECURITY))
        return verdict_of(HUMAN, ISOLATION, (R_VIA_ISOLATION, R_NET_MAIL_SECURITY))
    if kind == UA_GMAIL_PROXY:
        if is_open:
            return verdict_of(PROXY, GMAIL_PROXY, (R_UA_GMAIL_PROXY,))
        return verdict_of(MACHINE, GMAIL_PROXY, (R_UA_GMAIL_PROXY, R_PROXY_CLICK))
    if kind == UA_YAHOO_PROXY:
        if is_open:
            return verdict_of(PROXY, YAHOO_PROXY, (R_UA_YAHOO_PROXY,))
        return verdict_of(MACHINE, YAHOO_PROXY, (R_UA_YAHOO_PROXY, R_PROXY_CLICK))
    if kind == UA_WEBMAIL_PROXY:
        # https://www.hey.com/image-proxy: "Does not crawl: Never follows links"; Fastmail's proxy
        # (https://fastmail.com/policies/bots) loads images when a user opens an email.
        if is_open:
            return verdict_of(PROXY, WEBMAIL_PROXY, (R_UA_WEBMAIL_PROXY,))
        return verdict_of(MACHINE, WEBMAIL_PROXY, (R_UA_WEBMAIL_PROXY, R_PROXY_CLICK))
    if kind == UA_BARE_MOZILLA:
        if not is_open:
            return verdict_of(MACHINE, BOT, (R_BARE_MOZILLA,))
        if category == PRIVACY_RELAY:
            return verdict_of(MACHINE, APPLE_MPP, (R_BARE_MOZILLA, R_NET_PRIVACY_RELAY))
        return verdict_of(MACHINE, APPLE_MPP, (R_BARE_MOZILLA,))
    machine_net = _MACHINE_NETWORK_REASONS.get(category)
    if machine_net is not None:
        # Crawlers, link previews and monitors publish the ranges they fetch from; no reader is behind
        # them whatever the UA says (proxy and MPP UAs are decided above: Googlebot's ranges lie inside
        # Gmail's).
        return verdict_of(MACHINE, BOT, (machine_net,))
    fast = since_send < config.fast_after_send
    if fast and not is_open and hit.link_flags & FLAG_UNSUBSCRIBE:
        # Scanners follow every link, the unsubscribe link too, on delivery
        # (https://help.pushwoosh.com/hc/en-us/articles/30493475150493): a GET never unsubscribes, and
        # one this fast is the scanner's, not a person's click.
        return verdict_of(MACHINE, SCANNER, (R_UNSUBSCRIBE_FAST, R_FAST))
    # Weak signals. None decides alone: people read at once, use cloud VPNs, browse from Google's
    # networks; a fast fetch from a cloud with headers no real browser sends is another matter.
    weak: tuple[str, ...] = ()
    if fast:
        weak = (R_FAST,)
    network = True
    if category == CLOUD:
        weak = (*weak, R_NET_CLOUD)
    elif category == PROVIDER_PROXY:
        weak = (*weak, R_NET_PROVIDER)
    elif hosting and category == "":
        weak = (*weak, R_NET_HOSTING)
    else:
        network = False
    if is_open and kind == UA_BROWSER:
        accept = hit.headers.get("accept") if hit.headers else None
        if accept is not None and "image" not in accept:
            # Browsers ask for images with image/* in Accept; scanners wearing a browser's UA often don't,
            # but neither do some mail clients (Outlook's Word renderer, Android apps with their own HTTP
            # stack), so this only counts together with the network's signal.
            weak = (*weak, R_ACCEPT_NOT_IMAGE)
    if len(weak) >= 2:
        if not network:
            # Fast and without image/* in Accept: a person reading at once in such a client, or a scanner
            # that no list names. Counted; a link burst of the same client later revises it.
            return verdict_of(HUMAN, DIRECT, (*weak, R_AMBIGUOUS_ACCEPT))
        if category == PROVIDER_PROXY and is_open and net is not None and net.vendor.startswith("Google"):
            return verdict_of(MACHINE, GMAIL_PREFETCH, weak)
        return verdict_of(MACHINE, SCANNER, weak)
    return verdict_of(HUMAN, DIRECT, weak or (R_NO_SIGNAL,))
