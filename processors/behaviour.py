"""The Classifier: one message's hits remembered through its settle window, and the behaviour rules that
revise earlier verdicts (bursts, scanners caught, time-of-click checks, re-scans, duplicates).

The verdict of a hit on its own (static signals), and the Verdict, Decision and ClassifierConfig types, are
processors/classify.py.

Longer than 400 lines because the Classifier is one class: every behaviour rule reads and revises the same
per-message state (_MessageState), and mypyc compiles a class from one module. What needs no state (the static
verdict, the types) is classify.py.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Collection

from processors.classify import ClassifierConfig, Decision, Verdict, static_verdict, verdict_of
from processors.enrich import Enricher, Enrichment, masked
from processors.networks import CLOUD, MAIL_SECURITY, NetworkLists, ip_to_int
from schemas.hit import Hit
from schemas.tokens import FLAG_IMAGE
from schemas.verdicts import (
    APPLE_MPP,
    COUNTED,
    DIRECT,
    DUPLICATE,
    GMAIL_PROXY,
    HUMAN,
    MACHINE,
    PROXY,
    R_AMBIGUOUS_ACCEPT,
    R_AMBIGUOUS_ORDER,
    R_CLOUD_CLICK_NO_OPEN,
    R_HEAD_THEN_GET,
    R_LINK_BURST,
    R_MESSAGE_BURST,
    R_PIXEL_THEN_BURST,
    R_REPEAT,
    R_RESCAN,
    R_SCANNER_CLIENT,
    R_TIME_OF_CLICK,
    R_UA_SWITCH,
    SCANNER,
    WEBMAIL_PROXY,
    YAHOO_PROXY,
)
from schemas.verdicts import WEAK as _WEAK

_V6_CLIENT = 1 << 129  # marks an IPv6 client (see Classifier._client)

# Where a hit came from, as far as behaviour rules care (_Tracked.net_kind).
_NET_NONE, _NET_CLOUD, _NET_SECURITY = 0, 1, 2


class _Tracked:
    """One hit still inside its message's settle window: what behaviour rules need, and its decision."""

    __slots__ = ("client", "dup_key", "dup_of", "enrichment", "hit", "is_click", "is_head", "link",
                 "net_kind", "revision", "ts", "verdict")

    def __init__(self, hit: Hit, enrichment: Enrichment, verdict: Verdict, client: object,
                 dup_key: tuple[str, str, object, str], net_kind: int) -> None:
        self.hit = hit
        self.enrichment = enrichment
        self.verdict = verdict
        self.revision = 0
        self.client = client
        self.dup_key = dup_key
        self.dup_of: _Tracked | None = None
        self.ts = hit.ts
        # Downloads are judged as clicks (a scanner fetches every link and document of a message); an open
        # through one of the email's images is an open like the pixel's, whatever image it fetched. A visit (a
        # page view on the sender's site after a click) is neither: a person views several pages in seconds.
        self.is_click = hit.kind in ("click", "download")
        self.link = (hit.link or hit.link_id) if self.is_click else ""
        self.is_head = hit.method == "HEAD"
        # _NET_NONE, _NET_CLOUD (a listed cloud or a hosting AS) or _NET_SECURITY (a mail-security network).
        self.net_kind = net_kind


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
    honeypot links, unsubscribe links fetched at once, time since send, a hosting AS). Behaviour
    across one message's hits revises provisional human verdicts to machine: a link burst from one
    client, or from rotating addresses (every link within seconds, each from another client), a
    pixel followed by such a burst, further hits of a client caught scanning, a GET after a HEAD of
    the link, one link fetched with two UAs at once, a hosting network's click without an open, and,
    around another client's click on the same link, a time-of-click check just before it or a
    vendor's re-scan just after it (which of the two is the machine's is decided by evidence, and
    marked ambiguous when there is none). A mail-security network's fetch after its delivery-time
    scan window is a person's through the vendor's isolation browser unless behaviour says otherwise.
    A repeat by the same client within the dedupe window, or by the same image proxy from any node
    within the proxy window, is a duplicate of the counted original. Revisions only happen within the
    settle window, in event time (hit.ts), so a replay gives the same decisions. Bursts, evidence and
    duplicates are per message: many readers behind one address never make each other machines.

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

    def __init__(self, config: ClassifierConfig, networks: NetworkLists, enricher: Enricher,
                 hosting_asns: Collection[int] = ()) -> None:
        """`hosting_asns`: autonomous systems of hosting providers, for addresses no network list names
        (a weak signal, like a listed cloud); the enricher's ASN database says which AS an address is in."""
        self.config = config
        self._hosting_asns = frozenset(hosting_asns)
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

    def judge(self, hit: Hit) -> tuple[Verdict, Enrichment]:
        """The static verdict and enrichment of a hit of no message (a site visit without a click id):
        no state kept, nothing revised later."""
        enrichment = self._enricher.enrich(hit)
        hosting = enrichment.asn != 0 and enrichment.asn in self._hosting_asns
        verdict = static_verdict(hit, self._enricher.ua_profile(hit.ua), self._networks.lookup(hit.ip), self.config,
                                 hosting)
        return verdict, enrichment

    def feed(self, hit: Hit) -> list[Decision]:
        """This hit's decision first, then revisions of earlier hits of the same message."""
        cfg = self.config
        prof = self._enricher.ua_profile(hit.ua)
        net = self._networks.lookup(hit.ip)
        enrichment = self._enricher.enrich(hit)
        asn = enrichment.asn
        hosting = asn != 0 and asn in self._hosting_asns
        verdict = static_verdict(hit, prof, net, cfg, hosting)
        category = net.category if net is not None else ""
        if category == MAIL_SECURITY:
            net_kind = _NET_SECURITY
        elif category == CLOUD or (hosting and category == ""):
            net_kind = _NET_CLOUD
        else:
            net_kind = _NET_NONE

        if not hit.message:
            # A campaign-level (aggregate) hit: no message to compare it with, and hits of different
            # recipients must not make one another duplicates or a burst. Its own signals decide it.
            return [Decision(hit, _mask(enrichment, verdict), verdict, 0, None)]
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
        is_open = hit.kind == "open"
        # One reading loads the pixel and every image of the email at once: one open, so opens are
        # deduplicated whatever they fetched (a pixel's link is "", an image's its address).
        link = "" if is_open else (hit.link or hit.link_id)
        if verdict.verdict == PROXY:
            # An image proxy fetches from many nodes and re-fetches a pixel it has not cached yet a minute
            # later from another one (https://outsolvi.com/glossary/gmail-image-proxy: "the cached image
            # can be re-fetched as the user scrolls, generating duplicate open events"): one open per
            # proxy and pixel within the proxy window, whatever the node or its UA version.
            dup_key: tuple[str, str, object, str] = (hit.kind, link, verdict.source, "")
            window = cfg.proxy_dedupe_window
        else:
            dup_key = (hit.kind, link, client, hit.ua)
            window = cfg.dedupe_window
        original: _Tracked | None = None
        later: _Tracked | None = None  # a counted hit that this one, arriving late, fetched before
        if verdict.verdict in COUNTED:
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
        elif is_open and verdict.verdict == MACHINE:
            original = self._machine_reading(hits, hit, dup_key, ts, cfg.dedupe_window)
            if original is not None:
                verdict = verdict_of(DUPLICATE, original.verdict.source, (R_REPEAT,))

        tracked = _Tracked(hit, enrichment, verdict, client, dup_key, net_kind)
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
            self._check_click(state, tracked, revisions)
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

    @staticmethod
    def _machine_reading(hits: list[_Tracked], hit: Hit, dup_key: tuple[str, str, object, str], ts: float,
                         window: float) -> _Tracked | None:
        """The machine's open that this machine open repeats in one reading, when either fetched one of the
        email's images: Apple's MPP or a scanner loading the pixel and every image is one machine open, as
        a person's reading is one open (a pixel fetched twice stays two, as before images were tracked)."""
        image = bool(hit.link_flags & FLAG_IMAGE)
        for t in reversed(hits):
            if t.dup_key == dup_key and 0 <= ts - t.ts <= window:
                root = t.dup_of or t
                if root.verdict.verdict == MACHINE and (image or root.hit.link_flags & FLAG_IMAGE):
                    return root
                return None
        return None

    # --- behaviour rules -------------------------------------------------------------------------

    def _check_click(self, state: _MessageState, new: _Tracked, revisions: list[Decision]) -> None:
        """The behaviour rules a click triggers, from one pass over the message's live hits (at most
        max_hits_per_message): link bursts by one client and across clients, a GET following a HEAD, one
        link fetched with two UAs, a cloud's click without an open, and checks and re-scans around
        another client's click on the same link."""
        cfg = self.config
        client, ts, link, ua = new.client, new.ts, new.link, new.hit.ua
        slow, msg_win = cfg.slow_burst_window, cfg.message_burst_window
        pair_win = max(cfg.time_of_click_window, cfg.rescan_window)
        ua_win, head_win = cfg.ua_switch_window, cfg.head_then_get_window
        members: list[_Tracked] = []       # this client's clicks within the slow burst window (new too)
        others: list[_Tracked] | None = None  # other clients' clicks on this link within the pair window
        switched: list[_Tracked] | None = None  # this client's fetches of this link with another UA
        head_before = opened = mixed = False  # mixed: another client clicked within the message burst window
        if new.verdict.verdict not in COUNTED:
            # Already a machine's (most clicks: scanners): only its part in a burst matters.
            for t in state.hits:
                if t.is_click:
                    d = ts - t.ts
                    if t.client == client:
                        if -slow <= d <= slow:
                            members.append(t)
                    elif -msg_win <= d <= msg_win:
                        mixed = True
            if len(members) >= 2:
                self._check_burst(state, new, members, revisions)
            if mixed:
                self._check_message_burst(state, new, revisions)
            return
        for t in state.hits:
            if not t.is_click:
                if t.client == client and t.ts <= ts:
                    opened = True
                continue
            d = ts - t.ts
            if t.client == client:
                if -slow <= d <= slow:
                    members.append(t)
                if t.link == link and t is not new and -ua_win <= d <= ua_win and t.hit.ua != ua:
                    if switched is None:
                        switched = []
                    switched.append(t)
            else:
                if -msg_win <= d <= msg_win:
                    mixed = True
                if t.link == link and -pair_win <= d <= pair_win:
                    if others is None:
                        others = []
                    others.append(t)
            if t.is_head and t.link == link and 0 <= d <= head_win:
                head_before = True

        if len(members) >= 2:
            self._check_burst(state, new, members, revisions)
        if mixed:
            self._check_message_burst(state, new, revisions)
        if new.verdict.verdict != HUMAN:
            return
        if head_before and not new.is_head:
            # Link checkers probe with HEAD, then fetch with GET, often from another address of their pool
            # (https://github.com/beyondcode/helo-community/issues/34: "tries to perform a HEAD request
            # ... If this fails, an actual GET request will be sent").
            self._revise(state, new, SCANNER, R_HEAD_THEN_GET, revisions, new)
            return
        if switched is not None:
            # A person's click is one fetch by one browser; a sandbox detonating a link fetches it at once
            # with two engines (two UAs) from the same place.
            for t in switched:
                if t.verdict.verdict == HUMAN:
                    self._revise(state, t, SCANNER, R_UA_SWITCH, revisions, new)
            self._revise(state, new, SCANNER, R_UA_SWITCH, revisions, new)
            return
        if new.net_kind == _NET_CLOUD and not opened and new.ts - new.hit.sent_at <= self.config.sandbox_window:
            # A hosting network clicking one link minutes after delivery without ever showing the message:
            # a sandbox no list names ("click event with no open event" and "click sourced from a known
            # datacenter IP", https://www.autoemails.com/help/agent/mark-bot-unsubscribe). A person on a
            # cloud VPN who opened the message from it first stays a person, and so does one clicking
            # hours later with images off: sandboxes detonate within the first minutes (sandbox_window).
            self._revise(state, new, SCANNER, R_CLOUD_CLICK_NO_OPEN, revisions, new)
            return
        if others is not None:
            self._check_time_of_click(state, new, others, revisions)

    def _check_burst(self, state: _MessageState, new: _Tracked, members: list[_Tracked],
                     revisions: list[Decision]) -> None:
        """Distinct links from one client in quick succession: a scanner following every link."""
        cfg = self.config
        ts = new.ts
        fast = cfg.burst_window
        near_links = {t.link for t in members if -fast <= ts - t.ts <= fast}
        burst = len(near_links) >= cfg.burst_min_links
        if not burst:
            burst = len({t.link for t in members}) >= cfg.slow_burst_min_links
        if not burst:
            return
        for t in members:
            if t.verdict.verdict in COUNTED:
                self._revise(state, t, SCANNER, R_LINK_BURST, revisions, new)
        self._scanner_evidence(state, new.client, min(t.ts for t in members), revisions, new)

    def _check_message_burst(self, state: _MessageState, new: _Tracked, revisions: list[Decision]) -> None:
        """Every link of one message within a second or two, each from another address: a scanner on
        rotating (often residential) proxies. People behind one address click one or two links of their
        own message; a forwarded message's readers do not click three links within two seconds."""
        cfg = self.config
        ts, window = new.ts, cfg.message_burst_window
        near = [t for t in state.hits if t.is_click and -window <= ts - t.ts <= window]
        if len(near) < cfg.message_burst_min_links:
            return
        links = {t.link for t in near}
        if len(links) < cfg.message_burst_min_links:
            return
        clients = {t.client for t in near}
        if len(clients) < 2:
            return  # one client: the per-client burst rule's case
        for t in near:
            if t.verdict.verdict in COUNTED:
                self._revise(state, t, SCANNER, R_MESSAGE_BURST, revisions, new)
        start = min(t.ts for t in near)
        # An open that was ambiguous on its own (fast, no image/* in Accept) just before the burst is the
        # scanner's rendering of the message, whatever address it used.
        window = cfg.pixel_burst_window
        for t in state.hits:
            if (not t.is_click and t.verdict.verdict == HUMAN and R_AMBIGUOUS_ACCEPT in t.verdict.reasons
                    and 0 <= start - t.ts <= window):
                self._revise(state, t, SCANNER, R_PIXEL_THEN_BURST, revisions, new)
        for c in clients:
            prev = state.evidence.get(c)
            if prev is None or start > prev:
                state.evidence[c] = start

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

    def _check_time_of_click(self, state: _MessageState, new: _Tracked, others: list[_Tracked],
                             revisions: list[Decision]) -> None:
        """Two clients' clicks on one link close together: one is a machine's, but which?

        Safe Links and its kind check a URL at the moment a person clicks: the check arrives a fraction
        of a second before the person's own click, from another address
        (https://learn.microsoft.com/en-us/defender-office-365/safe-links-about). Other vendors re-scan at
        click time too ("Rescanning the link at the time the user clicks on it",
        https://vipre.helpjuice.com/en_US/email-cloud-addon-link-isolation/link-isolation-overview), and
        their fetch lands after the person's: a second later, or 12 s later from another network with
        another OS in the UA (https://github.com/resend/resend-node/issues/901); Outlook's on-click scan
        came "immediately before/after my user agent"
        (https://thomask.sdf.org/blog/2022/07/22/outlook-doesnt-automatically-send-email-links-to-bing.html).

        Within `time_of_click_window` the one from a mail-security or cloud network is the machine; else
        the one whose client had not shown the message before; else (no evidence either way) the earlier
        one, as the check, marked ambiguous. Up to `rescan_window` later, only a later fetch with such
        evidence against it is a re-scan; without evidence two clicks that far apart stay people's.
        """
        toc_win = self.config.time_of_click_window
        for t in others:
            if t.verdict.verdict != HUMAN or new.verdict.verdict != HUMAN:
                continue
            earlier, later = (t, new) if t.ts <= new.ts else (new, t)
            extra: tuple[str, ...] = ()
            e_net, l_net = earlier.net_kind != _NET_NONE, later.net_kind != _NET_NONE
            if e_net != l_net:
                machine = earlier if e_net else later
            else:
                earlier_read = self._shown_before(state, earlier)
                later_read = self._shown_before(state, later)
                if earlier_read and not later_read:
                    machine = later
                elif later_read and not earlier_read:
                    machine = earlier
                else:
                    machine = earlier
                    extra = (R_AMBIGUOUS_ORDER,)
            if later.ts - earlier.ts > toc_win and machine is earlier:
                continue  # too far apart for a check at the moment of the click
            reason = R_TIME_OF_CLICK if machine is earlier else R_RESCAN
            self._revise(state, machine, SCANNER, reason, revisions, new, extra)
            if machine is new:
                return

    def _shown_before(self, state: _MessageState, t: _Tracked) -> bool:
        """Whether t's client fetched something of the message, counted, well before t (a reader's trail)."""
        before = t.ts - self.config.time_of_click_window
        client = t.client
        return any(h.client == client and h.ts < before and h.verdict.verdict in COUNTED for h in state.hits)

    @staticmethod
    def _revise(state: _MessageState, t: _Tracked, source: str, reason: str, revisions: list[Decision],
                new: _Tracked | None, extra: tuple[str, ...] = ()) -> None:
        """Makes t a machine's; emits a revision unless t is the hit being decided now (`new`).

        Repeats of t (its duplicates) were counted as t's; now they are the machine's too.
        """
        changed = [t, *(d for d in state.hits if d.dup_of is t and d.verdict.verdict == DUPLICATE)]
        weak = _weak_of(t.verdict)
        for d in changed:
            previous, previous_e = d.verdict, d.enrichment
            d.verdict = verdict_of(MACHINE, source, (reason, *extra, *weak) if d is t else (reason, R_REPEAT))
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
    if v.verdict == PROXY or v.source in (GMAIL_PROXY, YAHOO_PROXY, WEBMAIL_PROXY, APPLE_MPP):
        return masked(e, e.mail_client)
    return masked(e)
