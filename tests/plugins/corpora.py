"""The public, independently labelled corpora the tests hold, read once: for tests and `make bench-truth`.

Each corpus yields what the classifier is asked about and what the right answer is. User agents are
judged as the outside audit of issue 15 judged them: one click on a link, 2–50 h after send, from a
residential address no list names, with a browser's Accept headers, so only the user agent can tell
a machine from a person.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import crawleruseragents
import orjson
import yaml

from processors.behaviour import Classifier
from processors.classify import COUNTED
from processors.classify_file import classify_lines
from processors.feedformats import read_feed
from schemas.hit import Hit

ROOT = Path(__file__).resolve().parents[2]
FIXTURES = ROOT / "tests" / "fixtures"
USERAGENTS = FIXTURES / "useragents"
APPLE_RELAY = ROOT / "deploy" / "networks" / "feeds" / "published" / "apple-proxy"

SENT = 1_796_000_000.0
HOUR = 3600.0
HOME_IP = "81.2.69.142"  # a residential address no list names
HTML_ACCEPT = {"accept": "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8",
               "accept-language": "en-GB,en;q=0.9"}
IMG_ACCEPT = {"accept": "image/avif,image/webp,image/apng,image/svg+xml,image/*,*/*;q=0.8"}
LINKS = ("https://shop.example.com/a", "https://shop.example.com/b", "https://blog.example.com/d")
MPP_UA = "Mozilla/5.0"  # Apple Mail Privacy Protection's prefetch

# uap-core families that are not a person's browser, app or mail client although ua_parser gives them
# no "Spider" device (uap-core marks most crawlers that way: those are bots here too). Decided by what
# the family names, not by what our detector says.
UAP_NOT_BROWSERS = frozenset({
    # HTTP libraries and command-line tools
    "curl", "libcurl-agent", "Wget", "wget2", "libwww-perl", "Python Requests", "Python aiohttp", "okhttp",
    "Go-http-client", "reqwest", "axios", "got", "AHC", "Apache-HttpClient", "Jersey", "http.rb", "GuzzleHttp",
    "PostmanRuntime", "HTTPie", "HTTrack",
    # a CalDAV/CardDAV sync app speaking through okhttp: it syncs calendars, never opens a link for a person
    "DAVdroid",
    # uptime and synthetic monitors, a vulnerability scanner, headless browsers
    "Catchpoint", "NewRelicPingerBot", "Ruxit Synthetic", "RackspaceBot", "Site24x7", "Monitis",
    "OpenVAS Scanner", "HeadlessChrome", "PhantomJS",
    # feed readers, an ad crawler, Gmail's image proxy (a click through it is the proxy's, not a person's)
    "Feedbin", "Tiny Tiny RSS", "Mediapartners-Google", "GmailImageProxy",
    # more HTTP libraries, SDKs and package managers, and a library tagged onto a browser's UA
    "go-resty", "scalaj-http", "akka-http", "HTTPClient", "lua-resty-http", "aws-sdk-ruby2", "aws-sdk-nodejs",
    "sap-leonardo-iot-sdk-nodejs", "Debian APT-HTTP", "Ubuntu APT-HTTP", "Google-HTTP-Java-Client",
    # crawlers ua_parser gives no "Spider" device, a feed fetcher, a blog platform's server-side fetch, an
    # Amazon S3 storage client (it speaks the S3 API, it never opens a link). Not "Pinterest": uap-core files
    # the Pinterest app and Pinterest's crawler under one family.
    "HuaweiSymantecSpider", "Connector Spider", "moba-crawler", "mobile crawler", "Bloglovin", "Ghost", "S3 Browser",
    # uap-core's "Other": its cases for strings it knows no client in ("SomethingWeNeverKnewExisted")
    "Other",
})


@cache
def isbot_browsers() -> tuple[str, ...]:
    """isbot's "not a bot" fixtures (Unlicense): real browsers and apps."""
    groups = yaml.safe_load((USERAGENTS / "isbot-browsers.yml").read_text(encoding="utf-8"))
    return tuple(ua for uas in groups.values() for ua in uas)


@cache
def uap_cases() -> tuple[tuple[str, str], ...]:
    """(user agent, uap-core family) of every uap-core test case (Apache-2.0)."""
    cases = yaml.safe_load((USERAGENTS / "uap-core-test_ua.yaml").read_text(encoding="utf-8"))["test_cases"]
    return tuple((str(c["user_agent_string"]), str(c["family"])) for c in cases)


def list_instances() -> list[tuple[str, str]]:
    """(pattern, example UA) of every entry of the crawler-user-agents dependency."""
    return [(str(e["pattern"]), str(ua)) for e in crawleruseragents.CRAWLER_USER_AGENTS_DATA
            for ua in e["instances"]]


def click_hit(ua: str, n: int) -> Hit:
    """Click number `n` with `ua`, in a message of its own, 2–50 h after send, from a home address."""
    at = 2 * HOUR + (n * 7919) % int(48 * HOUR)
    message = f"m-{n}"
    return Hit(id=f"{message}-click", ts=SENT + at, kind="click", method="GET", ip=HOME_IP, ua=ua, message=message,
               recipient="r-" + message, campaign="c", sent_at=SENT, headers=dict(HTML_ACCEPT),
               link=LINKS[n % len(LINKS)], honeypot=False)


def click_verdicts(classifier: Classifier, uas: Sequence[str]) -> list[str]:
    """The verdict of one click per user agent (see click_hit)."""
    return [classifier.feed(click_hit(ua, n))[0].verdict.verdict for n, ua in enumerate(uas)]


def open_verdicts(classifier: Classifier, uas: Sequence[str]) -> list[str]:
    """The verdict of one open (a pixel fetch asking for an image) per user agent, 2–50 h after send, from a home
    address: as click_verdicts, for the open."""
    out = []
    for n, ua in enumerate(uas):
        message = f"o-{n}"
        hit = Hit(id=f"{message}-open", ts=SENT + 2 * HOUR + (n * 7919) % int(48 * HOUR), kind="open", method="GET",
                  ip=HOME_IP, ua=ua, message=message, recipient="r-" + message, campaign="c", sent_at=SENT,
                  headers=dict(IMG_ACCEPT), link="", honeypot=False)
        out.append(classifier.feed(hit)[0].verdict.verdict)
    return out


def relay_addresses() -> list[str]:
    """The first address of every range of Apple's published Private Relay egress list (as shipped)."""
    return [str(net.network_address) for name in ("ipv4_merged.txt", "ipv6_merged.txt")
            for net in read_feed(APPLE_RELAY / name, "cidr").networks]


def mpp_verdicts(classifier: Classifier, addresses: Sequence[str]) -> list[tuple[str, str]]:
    """(verdict, source) of one MPP prefetch (an open with UA "Mozilla/5.0") from each address, minutes
    to days after send."""
    out = []
    for n, ip in enumerate(addresses):
        message = f"mpp-{n}"
        hit = Hit(id=f"{message}-open", ts=SENT + 30 + (n * 7919) % int(72 * HOUR), kind="open", method="GET", ip=ip,
                  ua=MPP_UA, message=message, recipient="r-" + message, campaign="c", sent_at=SENT,
                  headers=dict(IMG_ACCEPT), link="", honeypot=False)
        v = classifier.feed(hit)[0].verdict
        out.append((v.verdict, v.source))
    return out


@dataclass(frozen=True, slots=True)
class Scored:
    """A labelled sample's score: verdicts right, and counted (human + proxy) opens and clicks against truth."""

    hits: int
    right: int
    opens: int
    true_opens: int
    clicks: int
    true_clicks: int

    @property
    def accuracy(self) -> float:
        return self.right / self.hits

    @property
    def open_err(self) -> float:
        return (self.opens - self.true_opens) / max(1, self.true_opens)

    @property
    def click_err(self) -> float:
        return (self.clicks - self.true_clicks) / max(1, self.true_clicks)


def score_labelled(name: str, make_classifier: Callable[[], Classifier]) -> Scored:
    """Classifies a labelled hit v1 file of tests/fixtures and scores it against its labels."""
    lines = (FIXTURES / name).read_bytes().splitlines()
    records = [orjson.loads(line) for line in lines]
    out = list(classify_lines(lines, make_classifier()))
    pairs = list(zip(records, out, strict=True))

    def counted(kind: str, truth: bool) -> int:
        return sum(1 for r, o in pairs if r["kind"] == kind and (r["label"] if truth else o)["verdict"] in COUNTED)

    return Scored(len(pairs), sum(o["verdict"] == r["label"]["verdict"] for r, o in pairs),
                  counted("open", False), counted("open", True), counted("click", False), counted("click", True))
