"""Builders for the processors' unit tests: hits at a time after send, common UAs and addresses."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from processors.behaviour import Classifier
from processors.classify import Decision
from processors.pipeline import DEAD_LETTER_COLUMNS, BatchOutput
from schemas.hit import Hit
from schemas.records import DeadLetter
from schemas.topics import Topics

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures"

SENT = 1_796_000_000.0  # an epoch second in November 2026, the messages' sent_at

CHROME = ("Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
          "Chrome/131.0.0.0 Safari/537.36")
APPLE_MAIL = "Mozilla/5.0 (Macintosh; Intel Mac OS X 14_5) AppleWebKit/605.1.15 (KHTML, like Gecko)"
GMAIL_PROXY = "Mozilla/5.0 (Windows NT 5.1; rv:11.0) Gecko Firefox/11.0 (via ggpht.com GoogleImageProxy)"
YAHOO_PROXY = "YahooMailProxy; https://help.yahoo.com/kb/yahoo-mail-proxy-SLN28749.html"
IMG_ACCEPT = {"accept": "image/avif,image/webp,image/apng,image/svg+xml,image/*,*/*;q=0.8",
              "accept-language": "en-GB,en;q=0.9"}
HTML_ACCEPT = {"accept": "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8",
               "accept-language": "en-GB,en;q=0.9"}
HOME_IP = "81.2.69.142"          # a residential address no list names
UNLISTED_CLOUD = "198.51.100.200"  # a server on a network no shipped list names (documentation space)
LINKS = ("https://shop.example.com/a", "https://shop.example.com/b", "https://shop.example.com/c",
         "https://blog.example.com/d", "https://example.com/e")


def make_hit(at: float, kind: str = "open", *, ip: str = HOME_IP, ua: str = APPLE_MAIL, link: str = "",
             message: str = "m-1", method: str = "GET", headers: dict[str, str] | None = None,
             honeypot: bool = False, hit_id: str = "", sent_at: float = SENT) -> Hit:
    """A hit `at` seconds after send."""
    if headers is None:
        headers = dict(IMG_ACCEPT if kind == "open" else HTML_ACCEPT)
    return Hit(id=hit_id or f"{message}-{kind}-{at}", ts=sent_at + at, kind=kind, method=method, ip=ip, ua=ua,
               message=message, recipient="r-" + message, campaign="c", sent_at=sent_at, headers=headers,
               link=link, honeypot=honeypot)


def feed_all(classifier: Classifier, hits: Sequence[Hit]) -> dict[str, Decision]:
    """Feeds hits in order; the latest decision per hit id (final verdicts)."""
    final: dict[str, Decision] = {}
    for h in hits:
        for d in classifier.feed(h):
            final[d.hit.id] = d
    return final


def processor_letters(out: BatchOutput) -> list[dict[str, object]]:
    """The dead letters the processor made of a batch's records (its dead_letters rows of stage "processor"
    not read from hits.dlq), by column name."""
    rows = [dict(zip(DEAD_LETTER_COLUMNS, row, strict=True)) for row in out.dead_letters.rows]
    return [row for row in rows if row["stage"] == "processor" and row["src_topic"] != Topics().hits_dlq]


def as_hits_dlq_values(out: BatchOutput) -> list[bytes]:
    """The processor's own letters of a batch as an older processor sent them through hits.dlq (a backlog
    there after an upgrade): encoded DeadLetters."""
    return [DeadLetter(id=str(d["id"]), received_at=float(str(d["received_at"])), stage=str(d["stage"]),
                       reason=str(d["reason"]), detail=str(d["detail"]), kind=str(d["kind"]),
                       method=str(d["method"]), host=str(d["host"]), path=str(d["path"]), ip=str(d["ip"]),
                       ua=str(d["user_agent"]), edge=str(d["edge"]), raw=str(d["raw"])).encode()
            for d in processor_letters(out)]
