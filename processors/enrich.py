"""Enrichment: user agent → browser, OS, device, mail client; IP → country, city, ASN (never a proxy's).

Longer than 400 lines because the user-agent signatures and the tables they are read with (mail clients,
devices, proxies, browsers) are one vocabulary the Enricher applies per hit on the compiled hot path
(schemas.native.HOT); the classifier reads the same names.
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import ua_parser

from processors import geodata, uabots
from processors.networks import MAIL_SECURITY, PRIVACY_RELAY, PROVIDER_PROXY, NetworkLists
from schemas.hit import Hit

UNKNOWN = "unknown"

# Device types.
DESKTOP, MOBILE, TABLET, BOT = "desktop", "mobile", "tablet", "bot"

# Mail clients.
GMAIL_PROXY, YAHOO_PROXY, WEBMAIL_PROXY = "gmail_proxy", "yahoo_proxy", "webmail_proxy"
APPLE_MAIL, IOS_MAIL, OUTLOOK, THUNDERBIRD, SAMSUNG_EMAIL, WEBMAIL = (
    "apple_mail", "ios_mail", "outlook", "thunderbird", "samsung_email", "webmail")

# What a user agent is, for classification (UaProfile.kind).
UA_GMAIL_PROXY = "gmail_proxy"        # Gmail's image proxy: a person's open, seen through Google
UA_YAHOO_PROXY = "yahoo_proxy"        # Yahoo / AOL image proxy
UA_WEBMAIL_PROXY = "webmail_proxy"    # other webmails' image proxies naming themselves (HEY, Fastmail, …)
UA_GMAIL_PREFETCH = "gmail_prefetch"  # Gmail's prefetch / content-sampling bot
UA_BARE_MOZILLA = "bare_mozilla"      # exactly "Mozilla/5.0": Apple Mail Privacy Protection's prefetch
UA_LIBRARY = "library"                # HTTP libraries and command-line tools
UA_EMPTY = "empty"                    # no user agent at all
UA_BOT = "bot"                        # self-declared crawlers, link expanders, headless browsers
UA_GENERIC = "generic"                # no shape of a browser, in-app browser or mail client: a program's own UA
UA_APP_HTTP = "app_http"              # an app's own HTTP stack (CFNetwork, Dalvik, ...): no browser engine renders
UA_BROWSER = "browser"                # a web browser (webmail or a click)
UA_MAIL_APP = "mail_app"              # a native mail client (Outlook, Apple Mail, iOS Mail, ...)
UA_OTHER = "other"                    # anything else: no opinion

# Network categories whose fetches are the network's own (a scanner's, a provider's): neither the
# device nor the place is a reader's. Privacy relays hide only the place.
_MACHINE_NETWORKS = frozenset({MAIL_SECURITY, PROVIDER_PROXY})

# What the public lists (processors.uabots: crawler-user-agents, and ua_parser's "Spider" device) miss,
# each with where it was seen. The lists match case-sensitively, as their UAs are usually written; these
# are lower-case, so they also catch other spellings of the same tools.
#
# Prefixes of HTTP libraries and tools: a default UA "<name>/<version>" is the UA's own self-description
# (a person's browser or mail client never starts so). Also matched after a "Mozilla/<version>" glued on
# without a space, as in "Mozilla/5.0libwww-perl/5.826" (seen in public bot lists).
_LIBRARY_PREFIXES = (
    "python-urllib",        # urllib3's default "python-urllib3/2.2.1" (the list has only "Python-urllib")
    "curl/", "libcurl",     # the list anchors "^curl": the glued form escapes it
    "lwp::", "lwp-",        # Perl LWP's "LWP::Simple/6.00", "lwp-request/6.15"
    "java/",                # the JDK's HttpURLConnection: "Java/17.0.2"
    "apache-httpclient",    # the list anchors "^Apache-HttpClient": the glued form escapes it
    "jakarta commons-httpclient",
    "php/", "guzzlehttp",   # PHP streams' "PHP/8.2", Guzzle's "GuzzleHttp/7"
    "ruby", "faraday", "rest-client", "http.rb", "typhoeus",    # Ruby's Net::HTTP "Ruby", and gems
    "node/", "undici", "got (", "node-superagent",             # Node.js: fetch (undici), got, superagent
    "postmanruntime", "insomnia/", "httpie",                   # API clients: "PostmanRuntime/7.39.0"
    "winhttp", "reqwest", "hyper/", "dart:io", "dart/",      # Windows, Rust, Dart's "Dart/3.2 (dart:io)"
    "http-kit/",            # Clojure's http-kit client: "http-kit/2.0" (seen in public bot lists)
)
# Lower-case fragments of HTTP tools that do not start their UA with their name.
_LIBRARY_FRAGMENTS = (
    # PowerShell's Invoke-WebRequest: "Mozilla/5.0 (Windows NT; Windows NT 10.0; en-US) WindowsPowerShell/5.1"
    # (Microsoft's Invoke-WebRequest docs, -UserAgent).
    "windowspowershell/",
)
# Lower-case fragments of machines the lists miss.
_BOT_FRAGMENTS = (
    # LiveJournal's feed and link fetcher: "LiveJournal.com (webmaster@livejournal.com; for
    # http://www.livejournal.com/; ...)", its own self-description (seen in public bot lists).
    "livejournal.com (",
    # Office checking that a link exists before opening it: "Microsoft Office Existence Discovery", its own
    # self-description (a HEAD or GET by Word/Outlook, not a person's view).
    "microsoft office existence discovery",
    # New Relic's ping monitor: "NewRelicPinger/1.0 (<account id>)" (New Relic synthetic monitoring docs).
    "newrelicpinger/",
    # Google's "Duplex on the web" agent, named by its token DuplexWeb-Google in Google's crawler documentation.
    "duplexweb-google",
    # SmartBear AlertSite's DejaClick, which records and replays browser transactions for synthetic monitoring
    # ("... Firefox/52.0 DejaClick/2.9.7.2", its playback browser's UA).
    "dejaclick/",
    # PortSwigger's Burp Collaborator: a scanner's out-of-band test payload names its collaborator host.
    "burpcollaborator",
    # Sparkler (USC Data Science's crawler on Apache Spark), which names itself "Sparkler/<version>".
    "sparkler/",
    # Tag Inspector, a tag-auditing site scanner, which names itself "TagInspector/<version>".
    "taginspector/",
)
# Whole user agents that are a placeholder, not a client: "default_user_agent" (seen in public bot lists, an
# SDK's unset default), "-" (how access logs and proxies write a missing header), a script's unset variable.
_GENERIC_UAS = frozenset({
    "default_user_agent", "-", "null", "undefined", "user-agent", "mozilla/5.0 (compatible)",
})
# Words a program uses to say what it is, matched as whole words (letters on neither side), so that a product
# name containing one stays a product name: "CamScanner/4.8.5" and "Banca Caboto" are people's, "Site Monitor",
# "link_checker" and "Sogou-bot" are not. RFC 9110 §10.1.5 asks a User-Agent to name the product, and
# crawler-user-agents' own instances name themselves with these words; no browser or mail client of the
# browser corpora (isbot's, uap-core's) carries one as a word.
_MACHINE_WORDS = frozenset({
    "bot", "bots", "robot", "robots", "crawl", "crawler", "crawling", "spider", "scan", "scanner", "monitor",
    "monitoring", "checker", "check", "validator", "validation", "fetcher", "preview", "headless", "probe",
    "scraper", "grabber", "extractor", "synthetic", "synthetics", "uptime", "health", "healthcheck",
    "healthchecker", "subscribers", "lookup", "daemon", "analyzer", "analyser", "parser", "resolver",
    # the protocol or the language runtime of a program's HTTP stack, named as a word (uap-core's
    # "Debian APT-HTTP/1.3", "scalaj-http/1.0", "aws-sdk-ruby2/2.2.18 ruby/2.1.5", "GuzzleHttp/6.3.3 PHP/7.1.17";
    # gRPC's default "grpc-go/1.60.0"): a browser names its engine, not its protocol. Not "java" (J2ME phone
    # browsers say "(Java; U; MIDP-2.0)") nor "lua" (a Huawei phone model is "LUA-L23").
    "http", "python", "perl", "ruby", "php", "nodejs", "golang", "grpc",
})
# A UA's words: its runs of letters, lower-case.
_NOT_LETTERS = re.compile(r"[^a-z]+")
# A web address or an e-mail address: a crawler's "+http://example.com/bot.html" or "bot@example.com" contact
# (the form crawler-user-agents' instances and Google's, Bing's and Yandex's crawler docs show). A person's
# browser or mail client never names a web page or a mailbox in its UA ("android@111.0" in Ecosia's is a
# version, not an address: the domain must end in letters).
_CONTACT = re.compile(r"https?:|www\.[a-z0-9-]+\.|[a-z0-9._%+-]@[a-z0-9-]+(?:\.[a-z0-9-]+)*\.[a-z]{2,}(?![a-z0-9])")
# Tokens that give a UA the shape of a person's client when ua_parser (uap-core) knows neither its browser nor its
# OS: a rendering engine (AppleWebKit, Gecko, KHTML, Trident, Presto) or a platform a person runs a browser or
# app on (uap-core's OS families, including the old home computers, consoles and feature phones of its test
# cases), or an Apple/Android app stack ("CFNetwork/... Darwin/...", "Dalvik/..."). Matched as substrings: a
# false match only spares a UA, it never makes one a machine.
_CLIENT_SHAPE = re.compile(
    r"applewebkit|gecko|khtml|trident|presto|windows|win(?:[0-9]|nt)|macintosh|mac os|mac_powerpc|"
    r"linux|android|iphone|ipad|ipod|ios|x11|cros|bsd|sunos|amiga|morphos|beos|haiku|syllable|inferno|"
    r"risc ?os|os/2|playstation|nintendo|xbox|roku|tizen|webos|kaios|midp|cldc|symbian|series ?[46]0|"
    r"blackberry|palm|hbbtv|smart-?tv|cfnetwork|darwin|dalvik|j2me|java|brew|openwave|up\.browser|"
    r"docomo|kddi|softbank|vodafone|samsung|nokia|sonyericsson|motorola|\bmot-|lg-|htc|"
    # a CPU architecture: the build of an app for a device ("GoogleApp/14.35.18.28.arm64")
    r"arm64|aarch64|armv[5-8]|x86_64|x64|i[3-6]86|"
    # Mozilla Android Components' own HTTP client, "MozacFetch/<version>" (mozilla-mobile android-components,
    # concept-fetch): Firefox for Android's and Focus's downloads
    r"mozac")
# A program's name in the places a browser leaves alone: inside WebKit's engine comment, which every WebKit and Blink
# browser closes right after "(KHTML, like Gecko" (old ones add ", Safari/419.3"; Googlebot's, GPTBot's and
# Amzn-User's documented UAs put "; compatible; <name>" there), or a "(compatible; <name>)" comment after the
# browser's own tokens (a real browser's "compatible" is in its first comment: "Mozilla/4.0 (compatible; MSIE 8.0;").
_TAGGED_BROWSER = re.compile(r"like gecko;|(?:safari|chrome|firefox|gecko|version)/[^(]*\(compatible")
# An attack payload in place of a UA (a scanner testing the header, never a client): SQL ("' OR 1=1", "SELECT ...
# FROM", "load_file(", "sleep("), PHP or script tags, shell expansions and Shellshock's "() {" (CVE-2014-6271).
_PAYLOAD = re.compile(
    r"'\s*(?:or|and|\+|\|\|)|\bselect\b.*\bfrom\b|load_file\(|sleep\(|<\?|<script|\$\{|\$\(|\(\)\s*\{")
# A browser engine's token: a person reading a page sees it in an engine (a browser, an in-app browser, a mail app's
# web view), and each engine names itself or its browser in the UA (AppleWebKit, Gecko, KHTML, Trident, Presto,
# Chrome, Safari; "Mobile Safari" on Android's stock WebView), or is a proxy browser that renders on its server
# (Opera Mini's Presto, UC Browser's "UCWEB").
_ENGINE = re.compile(r"applewebkit|webkit|gecko|khtml|trident|presto|goanna|chrome|safari|msie|opera|netfront|ucweb")
# The UA an app's own HTTP stack sends when the app fetches a URL itself (feed refresh, link preview, favicon, a
# podcast or sync download), where no engine renders a page:
#   Apple's URL loading system: "<App>/<version> CFNetwork/<version> Darwin/<version>" (and "CFNetwork, iPhone OS");
#   Android's HttpURLConnection default: "Dalvik/2.1.0 (Linux; U; Android 13; <device> Build/<id>)";
#   AFNetworking's default: "<App>/<version> (iPhone; iOS 17.1; Scale/3.00)";
#   an app naming its bundle id in a comment: "<app>/<version> (com.example.app; Android API 28)",
#   "<App>/<version> (com.example.App; build:7383; iOS 12.1.0) Alamofire/4.7.0";
#   an app naming an Apple device or iOS in its comment, "<App>/<version> (iPhone; iPhone OS 7.0.2; en_US)": on iOS
#   every browser and web view is WebKit (App Store Review Guideline 2.5.6), whose UA names AppleWebKit.
_APP_HTTP_STACK = re.compile(
    r"cfnetwork|dalvik/|; ?scale/[0-9]|android api [0-9]|\((?:[a-z][a-z0-9_-]*\.){2,}[a-z][a-z0-9_-]*;|"
    r"\((?:iphone|ipad|ipod)\b|\(ios [0-9]")
# A browser that renders a page without naming an engine in its UA: one that claims Mozilla compatibility (old and
# small desktop browsers: "Mozilla/4.7 (compatible; OffByOne; Windows 2000)"), a feature phone's (the J2ME profile,
# Openwave's UP.Browser, Obigo, Teleca, Samsung's Dolfin and Jasmine, Polaris, BlackBerry's and Nokia's own), a text
# or small browser (Lynx, Links, w3m, Dillo, NetSurf, iCab; the Amiga's AWeb, IBrowse and Voyager; NCSA Mosaic), or a
# product calling itself a browser. A UA with neither
# this nor an engine is a program's own HTTP fetch (an app's API call, a desktop tool, a library): a person reads a
# page in a browser, so its clicks are not a person's (its opens may be: a mail app may load images so).
_ENGINELESS_BROWSER = re.compile(
    r"mozilla/|midp|cldc|up\.browser|openwave|obigo|teleca|dolfin|jasmine|polaris|blackberry|nokia|"
    r"lynx|links|w3m|dillo|netsurf|icab|aweb|ibrowse|voyager|mosaic|browser")
# A "Mozilla/<version>" with something glued on without a space: "Mozilla/5.0libwww-perl/5.826".
_GLUED_MOZILLA = re.compile(r"mozilla/[0-9.]+(?=[a-z])")
# ua_parser families of native mail clients (the parse result names them for us).
_MAIL_APP_FAMILIES = {"Outlook": OUTLOOK, "Apple Mail": APPLE_MAIL, "Thunderbird": THUNDERBIRD}
# ua_parser browser families: a UA parsed as one of these is a browser's, whatever a catch-all rule says.
_NAMED_BROWSERS = frozenset({
    "IE", "Edge", "Chrome", "Chrome Mobile", "Chrome Mobile WebView", "Chromium", "Firefox", "Firefox Mobile",
    "Safari", "Mobile Safari", "Mobile Safari UI/WKWebView", "Opera", "Opera Mini", "Opera Mobile",
    "Samsung Internet", "Android",
})
# ua_parser OS families that mean a desktop computer.
_DESKTOP_OS = frozenset({
    "Windows", "Mac OS X", "macOS", "Linux", "Ubuntu", "Fedora", "Debian", "Chrome OS", "ChromeOS", "FreeBSD",
    "OpenBSD", "NetBSD", "Red Hat", "SUSE", "Mint", "Arch Linux", "Gentoo", "Solaris",
})


@dataclass(frozen=True, slots=True)
class Enrichment:
    """What a hit's user agent and address tell. Unknown is "unknown" for the UA fields, "" for
    country, city and as_org, 0 for asn. Device and place stay unknown for proxies and scanners."""

    browser: str
    os: str
    device: str        # desktop | mobile | tablet | bot | unknown
    mail_client: str   # gmail_proxy | yahoo_proxy | webmail_proxy | apple_mail | ios_mail | outlook | thunderbird |
    #                    samsung_email | webmail | unknown
    country: str       # ISO 3166-1 alpha-2
    city: str
    asn: int
    as_org: str


@dataclass(frozen=True, slots=True)
class UaProfile:
    """One user agent, parsed once: the Enrichment UA fields plus its `kind` for the classifier.

    `masked` is true when the UA belongs to a proxy or prefetcher: nothing about the reader's device
    or place may be taken from such a hit.
    """

    browser: str
    os: str
    device: str
    mail_client: str
    kind: str
    masked: bool


@dataclass(frozen=True, slots=True)
class _Geo:
    country: str
    city: str
    asn: int
    as_org: str


_NO_GEO = _Geo("", "", 0, "")
UNKNOWN_ENRICHMENT = Enrichment(UNKNOWN, UNKNOWN, UNKNOWN, UNKNOWN, "", "", 0, "")


def masked(e: Enrichment, mail_client: str = UNKNOWN) -> Enrichment:
    """`e` without device or place (and with the given mail client): for hits no reader made directly.

    The network (ASN, AS organisation) stays: it is who fetched, not where the reader is.
    """
    key = (mail_client, e.asn, e.as_org)
    m = _MASKED.get(key)
    if m is None:
        m = Enrichment(UNKNOWN, UNKNOWN, UNKNOWN, mail_client, "", "", e.asn, e.as_org)
        if len(_MASKED) >= 10_000:
            _MASKED.clear()
        _MASKED[key] = m
    return m


# Masked enrichments depend on (mail client, ASN, AS org) only: few distinct values, shared.
_MASKED: dict[tuple[str, int, str], Enrichment] = {}


def ua_signature(ua: str) -> str | None:
    """The kind of a user agent recognisable from its text alone (proxies, prefetchers, tools, listed bots),
    else None. Mail-specific signatures first (a listed pattern must not turn Gmail's proxy into a bot), then
    our own table of what the public lists miss, then the crawler-user-agents list (processors.uabots), then
    what no person's client puts in its UA: a contact address, a machine word, an attack payload, a program's
    tag inside or before a browser's UA. (A UA with no client shape at all is told in profile_ua, which has
    ua_parser's parse.)"""
    s = ua.strip()
    if not s:
        return UA_EMPTY
    if "GoogleImageProxy" in s:
        return UA_GMAIL_PROXY
    if "YahooMailProxy" in s:
        return UA_YAHOO_PROXY
    # https://www.hey.com/image-proxy ("hey.com/imageproxy Mozilla/5.0 ...") and
    # https://fastmail.com/policies/bots ("... Chrome/118.0.5993.117 Safari/537.36 FastmailUA/1.0").
    if "hey.com/imageproxy" in s or "FastmailUA" in s:
        return UA_WEBMAIL_PROXY
    if s == "Mozilla/5.0":
        return UA_BARE_MOZILLA
    low = s.lower()
    if "proxy" in low and "mail" in low:
        # Any other webmail's image proxy that says so, the way Google's ("GoogleImageProxy") and Yahoo's
        # ("YahooMailProxy") do: a person's open seen through the webmail, not a program of its own. Before the
        # machine rules below, which would otherwise take it for a bare product token.
        return UA_WEBMAIL_PROXY
    if "gmail-content-sampling" in low:
        return UA_GMAIL_PREFETCH
    # Gmail's prefetcher: a legacy Edge 12 UA with a second "Mozilla/5.0" glued on the end. No real
    # browser repeats the Mozilla token, so the doubled token is the signature, whatever the versions.
    if s.endswith("Mozilla/5.0") and s.count("Mozilla/5.0") >= 2:
        return UA_GMAIL_PREFETCH
    # The same prefetcher's UA without the tail: the exact build it wears. A real Edge 12 of 2015 has
    # other builds (uap-core's test cases have "Edge/12.9600"): the Edge version alone is not enough.
    if "Chrome/42.0.2311.135" in s and "Edge/12.246" in s:
        return UA_GMAIL_PREFETCH
    if low in _GENERIC_UAS:
        return UA_LIBRARY
    glued = _GLUED_MOZILLA.match(low)
    tool = low[glued.end():] if glued is not None else low
    if tool.startswith(_LIBRARY_PREFIXES) or any(f in low for f in _LIBRARY_FRAGMENTS):
        return UA_LIBRARY
    if any(f in low for f in _BOT_FRAGMENTS):
        return UA_BOT
    listed = uabots.default_matcher().match(s)
    if listed is not None:
        return UA_LIBRARY if listed.kind == uabots.LIBRARY else UA_BOT
    if ("http" in low or "www." in low or "@" in low) and _CONTACT.search(low) is not None:
        return UA_BOT
    if not _MACHINE_WORDS.isdisjoint(_NOT_LETTERS.split(low)):
        return UA_BOT
    if ("'" in low or "<" in low or "$" in low or "{" in low or "select" in low or "sleep(" in low
            or "load_file(" in low) and _PAYLOAD.search(low) is not None:
        return UA_BOT
    if "like gecko;" in low or ("(compatible" in low and _TAGGED_BROWSER.search(low) is not None):
        return UA_BOT
    if ", mozilla/" in low:
        # A program or a proxy that put its own name before a browser's UA ("ExampleTool/2.0, Mozilla/5.0 (X11;
        # ..."): a browser's UA starts with its own product token, and lists further tokens with spaces (RFC 9110
        # §10.1.5), never with a comma.
        return UA_BOT
    return None


def _device(ua: str, os_family: str, device_family: str, brand: str) -> str:
    if device_family == "Spider":
        return BOT
    if os_family in ("iOS", "iPadOS"):
        return TABLET if device_family == "iPad" or "iPad" in ua else MOBILE
    if os_family == "Android":
        if brand == "Generic_Android_Tablet" or "Tablet" in device_family:
            return TABLET
        # Android phones say "Mobile"; Android tablets don't.
        return MOBILE if "Mobile" in ua else TABLET
    if os_family in ("Windows Phone", "BlackBerry OS", "KaiOS", "Symbian OS", "Firefox OS"):
        return MOBILE
    if os_family in _DESKTOP_OS or os_family.startswith("Windows"):
        return DESKTOP
    return UNKNOWN


def _mail_client(ua: str, browser: str, os_family: str, device: str) -> str:
    if "GoogleImageProxy" in ua:
        return GMAIL_PROXY
    if "YahooMailProxy" in ua:
        return YAHOO_PROXY
    low = ua.lower()
    if "samsungemail" in low or "com.samsung.android.email" in low:
        return SAMSUNG_EMAIL
    if "thunderbird/" in low:
        return THUNDERBIRD
    if "microsoft outlook" in low or "ms-office" in low or "msoffice" in low or "microsoft office/" in low:
        return OUTLOOK
    if browser in _MAIL_APP_FAMILIES:
        return _MAIL_APP_FAMILIES[browser]
    stripped_webkit = "AppleWebKit/" in ua and "Safari/" not in ua and "Version/" not in ua
    last_token = ua.rstrip().rsplit(" ", 1)[-1]
    if stripped_webkit and os_family in ("iOS", "iPadOS") and last_token.startswith("Mobile/"):
        # iOS Mail renders in a bare WKWebView; in-app browsers add their own tokens after Mobile/.
        return IOS_MAIL
    if stripped_webkit and "Macintosh" in ua and ua.rstrip().endswith("(KHTML, like Gecko)"):
        return APPLE_MAIL
    if device != BOT and "; wv)" not in ua and ("Safari/" in ua or "Firefox/" in ua):
        return WEBMAIL
    return UNKNOWN


def profile_ua(ua: str, parser: Any) -> UaProfile:
    """Parse one user agent with `parser` (a ua_parser.Parser): pure, no cache."""
    sig = ua_signature(ua)
    if sig == UA_GMAIL_PROXY:
        return UaProfile(UNKNOWN, UNKNOWN, UNKNOWN, GMAIL_PROXY, sig, True)
    if sig == UA_YAHOO_PROXY:
        return UaProfile(UNKNOWN, UNKNOWN, UNKNOWN, YAHOO_PROXY, sig, True)
    if sig == UA_WEBMAIL_PROXY:
        return UaProfile(UNKNOWN, UNKNOWN, UNKNOWN, WEBMAIL_PROXY, sig, True)
    if sig == UA_BARE_MOZILLA:
        # Mail Privacy Protection fetches for Apple Mail (macOS and iOS alike): the client is known,
        # the device and place are Apple's relay's.
        return UaProfile(UNKNOWN, UNKNOWN, UNKNOWN, APPLE_MAIL, sig, True)
    if sig == UA_GMAIL_PREFETCH:
        return UaProfile(UNKNOWN, UNKNOWN, UNKNOWN, UNKNOWN, sig, True)
    if sig == UA_EMPTY:
        return UaProfile(UNKNOWN, UNKNOWN, UNKNOWN, UNKNOWN, sig, False)
    result = parser.parse(ua)
    browser = result.user_agent.family if result.user_agent else UNKNOWN
    os_family = result.os.family if result.os else UNKNOWN
    dev = result.device
    device_family = dev.family if dev else ""
    if device_family == "Spider" and browser in _NAMED_BROWSERS:
        # ua_parser's catch-all spider rule matches substrings ("bot" in "Banca Caboto s.p.a.", an IE
        # build's tag); a bot that ua_parser knows gets its own family, not a browser's.
        device_family = ""
    elif (device_family == "Spider" and sig is None and result.user_agent is None
          and _CLIENT_SHAPE.search(ua.lower()) is not None):
        # The same catch-all on a product name alone ("^voyager" takes the Amiga browser "Voyager3/AmigaoS3.1"),
        # where neither the lists, nor a machine word, nor an address says machine, and the UA names a
        # platform a person runs a client on: the shape wins over a name fragment.
        device_family = ""
    device = _device(ua, os_family, device_family, (dev.brand or "") if dev else "")
    if sig in (UA_LIBRARY, UA_BOT):
        return UaProfile(browser, os_family, BOT, UNKNOWN, sig, False)
    if device == BOT:
        return UaProfile(browser, os_family, BOT, UNKNOWN, UA_BOT, False)
    client = _mail_client(ua, browser, os_family, device)
    if (client == UNKNOWN and result.user_agent is None and result.os is None and dev is None
            and _CLIENT_SHAPE.search(ua.lower()) is None):
        # Neither uap-core nor the shape of the text says browser, app or mail client: a bare product token
        # ("GoogleHC/1.0", Google Cloud's health checks; "GitLab/16.8.0", its webhooks), a product name in words,
        # a placeholder ("SomethingWeNeverKnewExisted", uap-core's case of it). A person's click comes from one of
        # those three, so a UA that is none of them is a program's own.
        return UaProfile(UNKNOWN, UNKNOWN, BOT, UNKNOWN, UA_GENERIC, False)
    if client == OUTLOOK and os_family == UNKNOWN and "ms-office" in ua.lower():
        # "Mozilla/4.0 (compatible; ms-office; MSOffice 16)" is Outlook for Windows' Word renderer.
        os_family, device = "Windows", DESKTOP
    if client == WEBMAIL:
        kind = UA_BROWSER
    elif client != UNKNOWN:
        kind = UA_MAIL_APP
    else:
        low = ua.lower()
        # No engine, but an app's own HTTP stack, or no browser at all: the app or program fetching the URL (a
        # person sees a page only in a browser). A native mail app may load a message's images so, hence a kind of
        # its own, not a bot's: the classifier calls its clicks a machine's and leaves its opens alone.
        no_engine = _ENGINE.search(low) is None
        kind = UA_APP_HTTP if no_engine and (_APP_HTTP_STACK.search(low) is not None
                                             or _ENGINELESS_BROWSER.search(low) is None) else UA_OTHER
    return UaProfile(browser, os_family, device, client, kind, False)


@functools.cache
def default_ua_parser() -> Any:
    """A ua_parser 1.x Parser on the fastest resolver installed (ua-parser-rs when present), without
    ua_parser's own cache: the Enricher keeps its own bounded cache in front of it. Built once per
    process (~0.2 s to compile the rules) and shared: parsing holds no state."""
    matchers = ua_parser.load_lazy_builtins()
    return ua_parser.Parser(ua_parser.BestAvailableResolver(matchers))


class Enricher:
    """Turns a hit's user agent and address into an Enrichment.

    GeoIP databases are MaxMind-format (GeoLite2/GeoIP2 City or Country, and ASN) files opened once,
    memory-mapped; a None path means those fields stay unknown, or, with `default_geo`, come from the
    shipped open databases (processors.geodata; a damaged shipped file is logged, not raised).
    `networks`, when given, lets the enricher withhold place from proxy, relay and mail-security
    addresses whatever the UA says.

    Memory: a UA cache of at most `ua_cache_size` profiles (~400 bytes each with the key: 20 MB at
    50,000) and an IP cache of at most `ip_cache_size` entries (~250 bytes: 25 MB at 100,000); each
    drops its older half when full. The ua_parser parse (~20 µs) runs once per distinct UA.
    """

    def __init__(self, city_db: str | Path | None = None, asn_db: str | Path | None = None,
                 networks: NetworkLists | None = None, *, ua_cache_size: int = 50_000,
                 ip_cache_size: int = 100_000, parser: Any = None, default_geo: bool = False) -> None:
        self._city = self._open(city_db, "city") if city_db is not None else (
            geodata.open_default(geodata.DEFAULT_COUNTRY_DB, "country") if default_geo else None)
        self._asn = self._open(asn_db, "asn") if asn_db is not None else (
            geodata.open_default(geodata.DEFAULT_ASN_DB, "asn") if default_geo else None)
        self._networks = networks
        self._parser = parser if parser is not None else default_ua_parser()
        self._ua_cache: dict[str, UaProfile] = {}
        self._ua_cache_size = max(16, ua_cache_size)
        self._ip_cache: dict[str, _Geo] = {}
        self._ip_cache_size = max(16, ip_cache_size)

    @staticmethod
    def _open(path: str | Path, what: str) -> Any:
        return geodata.open_reader(path, what)

    def close(self) -> None:
        """Closes the GeoIP readers (lookups after this give unknown place)."""
        for reader in (self._city, self._asn):
            if reader is not None:
                reader.close()
        self._city = self._asn = None
        self._ip_cache.clear()

    def __enter__(self) -> Enricher:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def ua_profile(self, ua: str) -> UaProfile:
        """The cached profile of a user agent."""
        try:
            return self._ua_cache[ua]
        except KeyError:
            pass
        prof = profile_ua(ua, self._parser)
        cache = self._ua_cache
        if len(cache) >= self._ua_cache_size:
            for key in list(cache)[: self._ua_cache_size // 2]:
                del cache[key]
        cache[ua] = prof
        return prof

    def _geo(self, ip: str) -> _Geo:
        try:
            return self._ip_cache[ip]
        except KeyError:
            pass
        geo = self._lookup_geo(ip)
        cache = self._ip_cache
        if len(cache) >= self._ip_cache_size:
            for key in list(cache)[: self._ip_cache_size // 2]:
                del cache[key]
        cache[ip] = geo
        return geo

    def _lookup_geo(self, ip: str) -> _Geo:
        if self._city is None and self._asn is None:
            return _NO_GEO
        country = city = as_org = ""
        asn = 0
        try:
            if self._city is not None:
                rec = self._city.get(ip)
                if isinstance(rec, dict):
                    c = rec.get("country") or rec.get("registered_country") or {}
                    country = str(c.get("iso_code") or "") if isinstance(c, dict) else ""
                    if not country:  # the shipped open database's record: {"country_code": "US"}
                        cc = rec.get("country_code")
                        country = cc if isinstance(cc, str) else ""
                    cty = rec.get("city")
                    names = cty.get("names") if isinstance(cty, dict) else None
                    city = str(names.get("en") or "") if isinstance(names, dict) else ""
            if self._asn is not None:
                rec = self._asn.get(ip)
                if isinstance(rec, dict):
                    n = rec.get("autonomous_system_number")
                    asn = n if isinstance(n, int) else 0
                    as_org = str(rec.get("autonomous_system_organization") or "")
        except ValueError:
            # Not an IP address (the edge should never send one, a replay file might): unknown place.
            return _NO_GEO
        except geodata.InvalidDatabaseError as exc:  # a file damaged past its header: logged once
            geodata.lookup_failed(exc)
            return _NO_GEO
        if not (country or city or asn or as_org):
            return _NO_GEO
        return _Geo(country, city, asn, as_org)

    def enrich(self, hit: Hit) -> Enrichment:
        """The Enrichment of one hit (pure given the databases; cached per UA and per address)."""
        prof = self.ua_profile(hit.ua)
        geo = self._geo(hit.ip)
        if prof.masked:
            return Enrichment(UNKNOWN, UNKNOWN, UNKNOWN, prof.mail_client, "", "", geo.asn, geo.as_org)
        if self._networks is not None:
            net = self._networks.lookup(hit.ip)
            if net is not None:
                if net.category in _MACHINE_NETWORKS:
                    # A scanner's or provider's own fetch: its UA is not a reader's device either.
                    return Enrichment(UNKNOWN, UNKNOWN, UNKNOWN, UNKNOWN, "", "", geo.asn, geo.as_org)
                if net.category == PRIVACY_RELAY:
                    # The UA is the reader's; the address is the relay's.
                    return Enrichment(prof.browser, prof.os, prof.device, prof.mail_client, "", "",
                                      geo.asn, geo.as_org)
        return Enrichment(prof.browser, prof.os, prof.device, prof.mail_client, geo.country, geo.city,
                          geo.asn, geo.as_org)
