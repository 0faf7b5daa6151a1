"""People or machines: verdict, source and reasons per hit, revised in a settle window as behaviour shows."""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass, fields

from processors.enrich import (
    UA_BARE_MOZILLA,
    UA_BOT,
    UA_BROWSER,
    UA_EMPTY,
    UA_GMAIL_PREFETCH,
    UA_GMAIL_PROXY,
    UA_LIBRARY,
    UA_YAHOO_PROXY,
    Enricher,
    Enrichment,
    UaProfile,
    masked,
)
from processors.networks import (
    CLOUD,
    INTERNAL,
    MAIL_SECURITY,
    PRIVACY_RELAY,
    PROVIDER_PROXY,
    NetworkInfo,
    NetworkLists,
    ip_to_int,
)
from schemas.hit import Hit

# Verdicts (ARCHITECTURE.md, "Verdicts").
HUMAN, PROXY, MACHINE, DUPLICATE = "human", "proxy", "machine", "duplicate"
COUNTED = frozenset({HUMAN, PROXY})

# Sources: who fetched.
DIRECT = "direct"                  # the reader's own client
GMAIL_PROXY = "gmail_proxy"        # Gmail's image proxy, fetching when the reader opens
YAHOO_PROXY = "yahoo_proxy"        # Yahoo / AOL image proxy
APPLE_MPP = "apple_mpp"            # Apple Mail Privacy Protection prefetch
GMAIL_PREFETCH = "gmail_prefetch"  # Gmail's prefetch / content sampling right after delivery
SCANNER = "scanner"                # security scanners: named vendors and unnamed ones found by behaviour
BOT = "bot"                        # HTTP libraries, tools, crawlers, link expanders
INTERNAL_SOURCE = "internal"       # the sender's own networks: not a recipient's engagement
PREFETCH = "prefetch"              # a browser's speculative prefetch (Sec-Purpose / Purpose: prefetch)

# Reason codes.
R_NO_SIGNAL = "no_machine_signal"
R_NET_INTERNAL = "net_internal"
R_PREFETCH_HEADER = "prefetch_header"
R_HONEYPOT = "honeypot"
R_EMPTY_UA = "empty_ua"
R_LIB_UA = "lib_ua"
R_BOT_UA = "bot_ua"
R_UA_GMAIL_PREFETCH = "ua_gmail_prefetch"
R_HEAD = "head_request"
R_NET_MAIL_SECURITY = "net_mail_security"
R_UA_GMAIL_PROXY = "ua_gmail_proxy"
R_UA_YAHOO_PROXY = "ua_yahoo_proxy"
R_PROXY_CLICK = "click_by_image_proxy"
R_BARE_MOZILLA = "ua_bare_mozilla"
R_NET_PRIVACY_RELAY = "net_privacy_relay"
R_FAST = "fast_after_send"
R_NET_CLOUD = "net_cloud"
R_NET_PROVIDER = "net_provider"
R_ACCEPT_NOT_IMAGE = "accept_not_image"
R_LINK_BURST = "link_burst"
R_PIXEL_THEN_BURST = "pixel_then_burst"
R_SCANNER_CLIENT = "scanner_client"
R_TIME_OF_CLICK = "time_of_click_check"
R_REPEAT = "repeat_within_window"

# Weak signals: none decides alone; two together make a machine (Mautic-style "two of").
_WEAK = frozenset({R_FAST, R_NET_CLOUD, R_NET_PROVIDER, R_ACCEPT_NOT_IMAGE})


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

    Defaults come from the field data in SIGNALS.md: scanners fetch 5–90 s after send, hit all links
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
    """A click this shortly before another client's click on the same link is a time-of-click check."""
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
        if self.burst_min_links < 2 or self.slow_burst_min_links < 2:
            raise ValueError("ClassifierConfig.burst_min_links and slow_burst_min_links must be at least 2, "
                             f"got {self.burst_min_links!r} and {self.slow_burst_min_links!r}")
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


_V6_CLIENT = 1 << 129  # marks an IPv6 client (see Classifier._client)

_PREFETCH_HEADERS = frozenset({"sec-purpose", "purpose", "x-purpose", "x-moz"})


def _is_prefetch(headers: dict[str, str]) -> bool:
    # Hits carry two or three headers: walking them beats four lookups.
    for name in headers:
        if name in _PREFETCH_HEADERS:
            v = headers[name].lower()
            if "prefetch" in v or "prerender" in v or "preview" in v:
                return True
    return False


def static_verdict(hit: Hit, prof: UaProfile, net: NetworkInfo | None, config: ClassifierConfig) -> Verdict:
    """The verdict a hit earns on its own (UA, network, method, headers, link flags, time since send).

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
    if kind == UA_GMAIL_PREFETCH:
        return verdict_of(MACHINE, GMAIL_PREFETCH, (R_UA_GMAIL_PREFETCH,))
    is_open = hit.kind == "open"
    if hit.method == "HEAD":
        # No mail client displays an image or follows a link with HEAD: a checker probing the URL.
        if category == MAIL_SECURITY:
            return verdict_of(MACHINE, SCANNER, (R_HEAD, R_NET_MAIL_SECURITY))
        return verdict_of(MACHINE, SCANNER, (R_HEAD,))
    if category == MAIL_SECURITY:
        return verdict_of(MACHINE, SCANNER, (R_NET_MAIL_SECURITY,))
    if kind == UA_GMAIL_PROXY:
        if is_open:
            return verdict_of(PROXY, GMAIL_PROXY, (R_UA_GMAIL_PROXY,))
        return verdict_of(MACHINE, GMAIL_PROXY, (R_UA_GMAIL_PROXY, R_PROXY_CLICK))
    if kind == UA_YAHOO_PROXY:
        if is_open:
            return verdict_of(PROXY, YAHOO_PROXY, (R_UA_YAHOO_PROXY,))
        return verdict_of(MACHINE, YAHOO_PROXY, (R_UA_YAHOO_PROXY, R_PROXY_CLICK))
    if kind == UA_BARE_MOZILLA:
        if not is_open:
            return verdict_of(MACHINE, BOT, (R_BARE_MOZILLA,))
        if category == PRIVACY_RELAY:
            return verdict_of(MACHINE, APPLE_MPP, (R_BARE_MOZILLA, R_NET_PRIVACY_RELAY))
        return verdict_of(MACHINE, APPLE_MPP, (R_BARE_MOZILLA,))
    # Weak signals. None decides alone: people read at once, use cloud VPNs, browse from Google's
    # networks; a fast fetch from a cloud with headers no real browser sends is another matter.
    weak: tuple[str, ...] = ()
    if hit.ts - hit.sent_at < config.fast_after_send:
        weak = (R_FAST,)
    if category == CLOUD:
        weak = (*weak, R_NET_CLOUD)
    elif category == PROVIDER_PROXY:
        weak = (*weak, R_NET_PROVIDER)
    if is_open and kind == UA_BROWSER:
        accept = hit.headers.get("accept") if hit.headers else None
        if accept is not None and "image" not in accept:
            # Browsers ask for images with image/* in Accept; scanners wearing a browser's UA often don't.
            weak = (*weak, R_ACCEPT_NOT_IMAGE)
    if len(weak) >= 2:
        if category == PROVIDER_PROXY and is_open and net is not None and net.vendor.startswith("Google"):
            return verdict_of(MACHINE, GMAIL_PREFETCH, weak)
        return verdict_of(MACHINE, SCANNER, weak)
    return verdict_of(HUMAN, DIRECT, weak or (R_NO_SIGNAL,))


class _Tracked:
    """One hit still inside its message's settle window: what behaviour rules need, and its decision."""

    __slots__ = ("click_client", "client", "dup_key", "dup_of", "enrichment", "hit", "is_click", "link", "revision",
                 "ts", "verdict")

    def __init__(self, hit: Hit, enrichment: Enrichment, verdict: Verdict, client: object,
                 dup_key: tuple[str, str, object, str]) -> None:
        self.hit = hit
        self.enrichment = enrichment
        self.verdict = verdict
        self.revision = 0
        self.client = client
        self.dup_key = dup_key
        self.dup_of: _Tracked | None = None
        self.ts = hit.ts
        self.is_click = hit.kind == "click"
        # The client for clicks, None for opens: the burst check's one filter.
        self.click_client = client if self.is_click else None
        self.link = hit.link or hit.link_id


class _MessageState:
    """The live hits of one message (arrival order) and the clients caught acting as scanners."""

    __slots__ = ("evidence", "hits", "last_ts")

    def __init__(self) -> None:
        self.hits: list[_Tracked] = []
        self.evidence: dict[object, float] = {}  # client → latest ts of scanner evidence
        self.last_ts = float("-inf")


class Classifier:
    """Feeds hits one at a time; returns each hit's decision, then revisions of earlier hits.

    Static signals decide most hits at once (UA signatures, networks, HEAD, prefetch headers,
    honeypot links, time since send). Behaviour across one message's hits revises provisional human
    verdicts to machine: a link burst from one client, a pixel followed by such a burst, further
    hits of a client caught scanning, a time-of-click check just before another client's click on
    the same link. A repeat by the same client within the dedupe window is a duplicate of the
    counted original. Revisions only happen within the settle window, in event time (hit.ts), so a
    replay gives the same decisions.

    Memory bound: state is per message in an LRU of at most `max_messages` messages holding at most
    `max_tracked_hits` hits in all (`max_hits_per_message` each); a message is dropped once the
    newest hit seen is `settle_window` past its last hit. Measured on the labelled sample, a
    tracked hit costs ~1.6 KB (its Hit with headers, Enrichment and record) and a message ~0.4 KB
    besides its hits (~5 KB for a typical message of 3 hits). Defaults: 200,000 hits and 50,000
    messages, so at most ~340 MB; in steady state only messages active within the last settle
    window are held. Caches of UA profiles, addresses and network lookups are bounded separately
    (Enricher, NetworkLists; ~60 MB at their defaults). Losing state (eviction, restart) never
    fails: later hits are judged without it, and there are fewer revisions.
    """

    def __init__(self, config: ClassifierConfig, networks: NetworkLists, enricher: Enricher) -> None:
        self.config = config
        self._networks = networks
        self._enricher = enricher
        self._messages: OrderedDict[tuple[str, str], _MessageState] = OrderedDict()
        self._watermark = float("-inf")
        self._next_expiry = float("-inf")
        self._clients: dict[str, object] = {}
        self._hit_count = 0  # hits in all messages' state, kept equal to sum(len(m.hits))
        self._shift_v4 = 32 - config.client_prefix_v4
        self._shift_v6 = 128 - config.client_prefix_v6

    @property
    def tracked_messages(self) -> int:
        """Messages with live state."""
        return len(self._messages)

    @property
    def tracked_hits(self) -> int:
        """Hits still inside a settle window."""
        return self._hit_count

    def _client(self, ip: str) -> object:
        """The client an address belongs to for burst grouping: its /24 (IPv4) or /64 (IPv6) by default,
        as one int (IPv6 prefixes with bit 129 set, above any IPv4 one), which compares faster than a
        tuple in the per-click scans; text that is no address stands for itself."""
        clients = self._clients
        c = clients.get(ip)
        if c is None:
            parsed = ip_to_int(ip)
            if parsed is None:
                c = ip  # not an address: group by the text itself
            elif parsed[0] == 4:
                c = parsed[1] >> self._shift_v4
            else:
                c = (parsed[1] >> self._shift_v6) | _V6_CLIENT
            if len(clients) >= 100_000:
                for key in list(clients)[:50_000]:
                    del clients[key]
            clients[ip] = c
        return c

    def _state(self, hit: Hit) -> _MessageState:
        messages = self._messages
        key = (hit.tenant, hit.message)
        state = messages.get(key)
        if state is None:
            state = _MessageState()
            messages[key] = state
            if len(messages) > self.config.max_messages:
                self._hit_count -= len(messages.popitem(last=False)[1].hits)
        else:
            messages.move_to_end(key)
        return state

    def _expire(self) -> None:
        """Drops messages whose last hit is a settle window behind the newest hit seen (oldest first)."""
        messages = self._messages
        horizon = self._watermark - self.config.settle_window
        while messages:
            first = next(iter(messages.values()))
            if first.last_ts >= horizon:
                break
            self._hit_count -= len(messages.popitem(last=False)[1].hits)

    def _shed(self, keep: _MessageState) -> None:
        """Drops least recently seen messages until the hit bound holds again (never `keep`)."""
        messages = self._messages
        while self._hit_count > self.config.max_tracked_hits and len(messages) > 1:
            key, first = next(iter(messages.items()))
            if first is keep:
                break
            del messages[key]
            self._hit_count -= len(first.hits)

    def feed(self, hit: Hit) -> list[Decision]:
        """This hit's decision first, then revisions of earlier hits of the same message."""
        cfg = self.config
        prof = self._enricher.ua_profile(hit.ua)
        net = self._networks.lookup(hit.ip)
        enrichment = self._enricher.enrich(hit)
        verdict = static_verdict(hit, prof, net, cfg)

        ts = hit.ts
        if ts > self._watermark:
            self._watermark = ts
            if ts >= self._next_expiry:  # at most once per event-time second: the walk is not free
                self._expire()
                self._next_expiry = ts + 1.0
        state = self._state(hit)
        if ts > state.last_ts:
            state.last_ts = ts
        hits = state.hits
        # Hits a settle window behind the message's newest are final: forget them.
        horizon = state.last_ts - cfg.settle_window
        if hits and (hits[0].ts < horizon or len(hits) >= cfg.max_hits_per_message):
            keep = [t for t in hits if t.ts >= horizon]
            if len(keep) >= cfg.max_hits_per_message:
                keep = keep[len(keep) - cfg.max_hits_per_message + 1:]
            self._hit_count -= len(hits) - len(keep)
            state.hits = hits = keep
            if state.evidence:
                state.evidence = {c: e for c, e in state.evidence.items() if e >= horizon}

        client = self._client(hit.ip)
        link = hit.link or hit.link_id
        dup_key = (hit.kind, link, client, hit.ua)
        original: _Tracked | None = None
        later: _Tracked | None = None  # a counted hit that this one, arriving late, fetched before
        if verdict.verdict in COUNTED:
            window = cfg.dedupe_window
            for t in reversed(hits):
                if t.dup_key == dup_key and -window <= ts - t.ts <= window:
                    root = t.dup_of or t
                    rv = root.verdict
                    if rv.verdict in COUNTED and ts < root.ts:
                        later = root
                    elif rv.verdict in COUNTED:
                        original = root
                        verdict = verdict_of(DUPLICATE, rv.source, (R_REPEAT,))
                    elif rv.verdict == MACHINE and verdict.verdict == HUMAN:
                        # The same client again within seconds of a fetch found to be a machine's.
                        verdict = verdict_of(MACHINE, rv.source, (rv.reasons[0], R_REPEAT))
                    break

        tracked = _Tracked(hit, enrichment, verdict, client, dup_key)
        tracked.dup_of = original
        hits.append(tracked)
        self._hit_count += 1
        if self._hit_count > cfg.max_tracked_hits:
            self._shed(state)

        revisions: list[Decision] = []
        if later is not None:
            # Slight disorder: the repeat arrived first. The earlier fetch is the counted one.
            for d in state.hits:
                if d.dup_of is later:
                    d.dup_of = tracked
            later.dup_of = tracked
            previous, previous_e = later.verdict, later.enrichment
            later.verdict = verdict_of(DUPLICATE, verdict.source, (R_REPEAT,))
            later.revision += 1
            later.enrichment = _mask(later.enrichment, later.verdict)
            revisions.append(Decision(later.hit, later.enrichment, later.verdict, later.revision, previous,
                                      previous_e))
        if tracked.is_click and link:
            self._check_burst(state, tracked, revisions)
            self._check_time_of_click(state, tracked, revisions)
        if hit.honeypot:
            self._scanner_evidence(state, client, ts, revisions, tracked)
        elif tracked.verdict.verdict == HUMAN and state.evidence:
            ev = state.evidence.get(client)
            if ev is not None and -cfg.scanner_client_window <= ts - ev <= cfg.scanner_client_window:
                self._revise(state, tracked, SCANNER, R_SCANNER_CLIENT, revisions, tracked)

        v = tracked.verdict
        e = tracked.enrichment = _mask(enrichment, v)
        first = Decision(hit, e, v, 0, None)
        if revisions:
            return [first, *revisions]
        return [first]

    # --- behaviour rules -------------------------------------------------------------------------

    def _check_burst(self, state: _MessageState, new: _Tracked, revisions: list[Decision]) -> None:
        """Distinct links from one client in quick succession: a scanner following every link."""
        cfg = self.config
        client, ts = new.client, new.ts
        slow = cfg.slow_burst_window
        members = [t for t in state.hits if t.click_client == client and -slow <= ts - t.ts <= slow]
        if len(members) < 2:
            return
        fast = cfg.burst_window
        near_links = {t.link for t in members if -fast <= ts - t.ts <= fast}
        burst = len(near_links) >= cfg.burst_min_links
        if not burst:
            burst = len({t.link for t in members}) >= cfg.slow_burst_min_links
        if not burst:
            return
        for t in members:
            if t.verdict.verdict == HUMAN:
                self._revise(state, t, SCANNER, R_LINK_BURST, revisions, new)
        self._scanner_evidence(state, client, min(t.ts for t in members), revisions, new)

    def _scanner_evidence(self, state: _MessageState, client: object, ev_ts: float,
                          revisions: list[Decision], new: _Tracked) -> None:
        """A client acted as a scanner at ev_ts: its pixel just before and hits nearby are the scanner's."""
        cfg = self.config
        prev = state.evidence.get(client)
        if prev is None or ev_ts > prev:
            state.evidence[client] = ev_ts
        for t in state.hits:
            if t.client != client or t.verdict.verdict != HUMAN:
                continue
            d = ev_ts - t.ts
            if not t.is_click and 0 <= d <= cfg.pixel_burst_window:
                self._revise(state, t, SCANNER, R_PIXEL_THEN_BURST, revisions, new)
            elif -cfg.scanner_client_window <= d <= cfg.scanner_client_window:
                self._revise(state, t, SCANNER, R_SCANNER_CLIENT, revisions, new)

    def _check_time_of_click(self, state: _MessageState, new: _Tracked, revisions: list[Decision]) -> None:
        """Safe Links and its kind check a URL at the moment a person clicks: the check arrives a
        fraction of a second before the person's own click on the same link, from another address."""
        window = self.config.time_of_click_window
        ts, link, client = new.ts, new.link, new.client
        for t in state.hits:
            if t is new or not t.is_click or t.link != link or t.client == client:
                continue
            d = ts - t.ts
            if 0 <= d <= window and t.verdict.verdict == HUMAN and new.verdict.verdict == HUMAN:
                self._revise(state, t, SCANNER, R_TIME_OF_CLICK, revisions, None)
            elif -window <= d < 0 and t.verdict.verdict == HUMAN and new.verdict.verdict == HUMAN:
                # Arrived out of order: the new hit is the earlier one, hence the check.
                self._revise(state, new, SCANNER, R_TIME_OF_CLICK, revisions, new)

    @staticmethod
    def _revise(state: _MessageState, t: _Tracked, source: str, reason: str, revisions: list[Decision],
                new: _Tracked | None) -> None:
        """Makes t a machine's; emits a revision unless t is the hit being decided now (`new`).

        Repeats of t (its duplicates) were counted as t's; now they are the machine's too.
        """
        changed = [t, *(d for d in state.hits if d.dup_of is t and d.verdict.verdict == DUPLICATE)]
        weak = _weak_of(t.verdict)
        for d in changed:
            previous, previous_e = d.verdict, d.enrichment
            d.verdict = verdict_of(MACHINE, source, (reason, *weak) if d is t else (reason, R_REPEAT))
            if d is not new:
                d.revision += 1
                d.enrichment = _mask(d.enrichment, d.verdict)
                revisions.append(Decision(d.hit, d.enrichment, d.verdict, d.revision, previous, previous_e))


def _weak_of(v: Verdict) -> tuple[str, ...]:
    return tuple(r for r in v.reasons if r in _WEAK)


def _mask(e: Enrichment, v: Verdict) -> Enrichment:
    """Device and place belong to a reader seen directly; for anything else they are withheld."""
    if v.source == DIRECT:  # human, or a duplicate of a human's hit
        return e
    if v.verdict == PROXY or v.source in (GMAIL_PROXY, YAHOO_PROXY, APPLE_MPP):
        return masked(e, e.mail_client)
    return masked(e)
