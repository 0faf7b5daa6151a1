"""Campaign traffic with known truth, re-based from labelled hit patterns: for tests, benchmarks, demos."""

from __future__ import annotations

import random
from collections import defaultdict
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

from schemas.deliveries import Delivery
from schemas.records import RawHit, Record
from schemas.sends import Conversion, Send
from schemas.timefmt import parse_ts
from schemas.tokens import Keyring, TokenPayload
from schemas.topics import Topics


@dataclass(slots=True)
class VariantTruth:
    """What the simulated traffic of one variant is, by the labels it was built from."""

    delivered: int = 0  # sent and not bounced
    unique_opens: int = 0  # messages with a human or proxy open
    opens_human: int = 0
    opens_proxy: int = 0
    opens_machine: int = 0
    opens_duplicate: int = 0
    unique_clicks: int = 0  # messages with a human click
    clicks_human: int = 0
    clicks_filtered: int = 0
    converted_messages: int = 0
    conversions: int = 0
    revenue: float = 0.0
    sent: int = 0
    bounced: int = 0  # hard bounces, and soft ones no delivery followed
    complained: int = 0
    replied: int = 0


@dataclass(slots=True)
class SimHit:
    """One hit of the simulation: what the edge would have received, plus its label."""

    id: str
    ts: float
    kind: str
    method: str
    ip: str
    ua: str
    headers: dict[str, str]
    link: str
    honeypot: bool
    verdict: str


@dataclass(slots=True)
class Simulation:
    campaign: str
    tenant: str
    sends: list[Send] = field(default_factory=list)
    hits: list[tuple[Send, SimHit]] = field(default_factory=list)  # in time order
    conversions: list[Conversion] = field(default_factory=list)
    deliveries: list[Delivery] = field(default_factory=list)
    truth: dict[str, VariantTruth] = field(default_factory=dict)

    def records(self, keyring: Keyring, topics: Topics, edge: str = "sim") -> Iterator[Record]:
        """Sends first, then hits in time order (as the edge would forward them), then conversions, then
        delivery events."""
        for s in self.sends:
            yield Record(topics.sends, s.message.encode(), s.encode())
        for s, h in self.hits:
            sent_ms = round(s.sent_at * 1000)
            payload = TokenPayload(h.kind, s.tenant, s.campaign, s.variant, s.message, s.recipient,  # type: ignore[arg-type]
                                   sent_ms, 0, url=h.link if h.kind != "open" else "",
                                   flags=1 if h.honeypot else 0)
            raw = RawHit(id=h.id, received_at=h.ts, kind=h.kind, method=h.method, host="t.example.com",
                         path="/", token=keyring.mint(payload), ip=h.ip, ua=h.ua, edge=edge, headers=h.headers)
            yield Record(topics.hits_raw, s.message.encode(), raw.encode())
        for c in self.conversions:
            yield Record(topics.conversions, c.message.encode(), c.encode())
        for d in self.deliveries:
            yield Record(topics.deliveries, d.message.encode(), d.encode())


def load_patterns(path: Path) -> list[list[dict[str, Any]]]:
    """Labelled hits grouped by message, each hit with `dt` = seconds after its send."""
    by_message: dict[str, list[dict[str, Any]]] = defaultdict(list)
    with path.open("rb") as f:
        for line in f:
            if line.strip():
                h = orjson.loads(line)
                h["dt"] = parse_ts(h["ts"]) - parse_ts(h["sent_at"])
                by_message[h["message"]].append(h)
    return [sorted(hs, key=lambda h: h["dt"]) for hs in by_message.values()]


def simulate(patterns: Sequence[list[dict[str, Any]]], campaign: str, n_sends: int,
             variants: Sequence[str] = ("A", "B"),
             engaged_share: float = 0.3, click_boost: dict[str, float] | None = None, start: float = 1_790_000_000.0,
             send_spread: float = 3600.0, tenant: str = "", seed: int = 7, bounce_share: float = 0.0) -> Simulation:
    """`n_sends` sends split evenly over `variants`; `engaged_share` of messages get the hits of a random
    labelled message, re-based on their own send time, ids and recipient. `click_boost[v]` makes
    patterns with a human click that much likelier for variant v (an A/B effect with known truth).
    A third of human clickers convert, with a value from 10 to 200. `bounce_share` of messages bounce
    (no hits then; two in three hard, the rest soft with no delivery after), as many have a soft bounce
    followed by a delivery, and one delivered message in a hundred gets a complaint, one in fifty a
    reply (delivery events with the platform's ids; with 0, none and the same traffic as before)."""
    rng = random.Random(seed)
    with_click = [p for p in patterns if any(h["kind"] == "click" and h["label"]["verdict"] == "human" for h in p)]
    sim = Simulation(campaign, tenant)
    pending: list[tuple[float, int, Send, SimHit]] = []
    serial = 0
    for i in range(n_sends):
        variant = variants[i % len(variants)]
        sent_at = start + rng.random() * send_spread
        send = Send(tenant, campaign, variant, f"{campaign}-m{i:07d}", f"r{i:07d}", round(sent_at, 3),
                    mailbox_domain=rng.choice(("gmail.com", "yahoo.com", "outlook.com", "icloud.com", "example.com")))
        sim.sends.append(send)
        truth = sim.truth.setdefault(variant, VariantTruth())
        truth.sent += 1
        if bounce_share and _delivery_events(sim, send, truth, rng, bounce_share):
            continue  # bounced: nobody opens it
        truth.delivered += 1
        if rng.random() >= engaged_share:
            continue
        boost = (click_boost or {}).get(variant, 0.0)
        pattern = rng.choice(with_click) if boost and rng.random() < boost else rng.choice(patterns)
        opened = clicked = False
        for h in pattern:
            serial += 1
            verdict = h["label"]["verdict"]
            hit = SimHit(f"sim{serial:09d}", round(sent_at + h["dt"], 3), h["kind"], h["method"], h["ip"],
                         h["ua"] or "",
                         dict(h["headers"] or {}), h["link"] or "", bool(h["honeypot"]), verdict)
            pending.append((hit.ts, serial, send, hit))
            if h["kind"] == "open":
                truth.opens_human += verdict == "human"
                truth.opens_proxy += verdict == "proxy"
                truth.opens_machine += verdict == "machine"
                truth.opens_duplicate += verdict == "duplicate"
                opened |= verdict in ("human", "proxy")
            elif verdict == "human":
                truth.clicks_human += 1
                clicked = True
            elif verdict == "machine":
                truth.clicks_filtered += 1
        truth.unique_opens += opened
        truth.unique_clicks += clicked
        if clicked and rng.random() < 1 / 3:
            value = float(rng.randint(10, 200))
            last = max(h.ts for _, _, s, h in pending[-len(pattern):])
            sim.conversions.append(Conversion(tenant, f"order-{send.message}", last + 600, value, "EUR",
                                              message=send.message, campaign=campaign))
            truth.converted_messages += 1
            truth.conversions += 1
            truth.revenue += value
    pending.sort(key=lambda x: (x[0], x[1]))
    sim.hits = [(s, h) for _, _, s, h in pending]
    return sim


def _delivery_events(sim: Simulation, send: Send, truth: VariantTruth, rng: random.Random, share: float) -> bool:
    """A send's delivery events, by `share` (see simulate); True when it bounced for good."""
    def event(type_: str, after: float, **fields: object) -> None:
        sim.deliveries.append(Delivery(send.tenant, send.message, type_, f"evt-{len(sim.deliveries):08d}",
                                       round(send.sent_at + after, 3), **fields))  # type: ignore[arg-type]
    draw = rng.random()
    if draw < share:
        if rng.random() < 2 / 3:
            event("bounced", 5, bounce="hard", smtp_code=550, diagnostic="5.1.1 user unknown")
        else:
            event("deferred", 5)
            event("bounced", 3600, bounce="soft", smtp_code=452, diagnostic="4.2.2 mailbox full")
        truth.bounced += 1
        return True
    if draw < 2 * share:
        event("bounced", 5, bounce="soft", smtp_code=451)
        event("delivered", 900)
    if rng.random() < 0.01:
        event("complained", 7200)
        truth.complained += 1
    if rng.random() < 0.02:
        event("replied", 3000)
        truth.replied += 1
    return False

