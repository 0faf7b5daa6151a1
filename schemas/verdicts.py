"""The classifier's words, named once: verdicts, sources and reason codes as stored in ClickHouse.

These are the values of `events.verdict`, `events.source` and `events.reasons` (docs/architecture.md,
"Records"). processors/classify.py decides with them, the triggers, dashboard and report read them,
schemas/reasons.py labels them for people; the SQL in schemas/clickhouse, the dashboard, the report,
docs/analysts.md and the Grafana board spells them as literals, and tests/unit/schemas/test_shared_words.py
fails when a literal there is not one of these. Plain `Final` str (processors/classify.py is compiled
with mypyc, which inlines them): renaming one renames a stored value, so it is a data migration.
"""

from __future__ import annotations

from typing import Final

# Verdicts: what fetched a hit.
HUMAN: Final = "human"
PROXY: Final = "proxy"
MACHINE: Final = "machine"
DUPLICATE: Final = "duplicate"
VERDICTS: Final = frozenset({HUMAN, PROXY, MACHINE, DUPLICATE})
COUNTED: Final = frozenset({HUMAN, PROXY})
"""A person's hits: the verdicts opens and clicks count."""

# Sources: who fetched.
DIRECT: Final = "direct"                  # the reader's own client
GMAIL_PROXY: Final = "gmail_proxy"        # Gmail's image proxy, fetching when the reader opens
YAHOO_PROXY: Final = "yahoo_proxy"        # Yahoo / AOL image proxy
# Other webmails' image proxies that say who they are in the UA (HEY, Fastmail): an open through them
# is a person's, counted with device and place withheld, like Gmail's and Yahoo's.
WEBMAIL_PROXY: Final = "webmail_proxy"
# A person's fetch rendered by a security vendor's remote browser (Menlo, Zscaler, Proofpoint, Symantec
# isolation): it comes from the vendor's network, long after the vendor's own delivery-time scan.
ISOLATION: Final = "isolation"
APPLE_MPP: Final = "apple_mpp"            # Apple Mail Privacy Protection prefetch
GMAIL_PREFETCH: Final = "gmail_prefetch"  # Gmail's prefetch / content sampling right after delivery
SCANNER: Final = "scanner"                # security scanners: named vendors and unnamed ones found by behaviour
BOT: Final = "bot"                        # HTTP libraries, tools, crawlers, link expanders
INTERNAL_SOURCE: Final = "internal"       # the sender's own networks: not a recipient's engagement
PREFETCH: Final = "prefetch"              # a browser's speculative prefetch (Sec-Purpose / Purpose: prefetch)
SOURCES: Final = frozenset({DIRECT, GMAIL_PROXY, YAHOO_PROXY, WEBMAIL_PROXY, ISOLATION, APPLE_MPP, GMAIL_PREFETCH,
                            SCANNER, BOT, INTERNAL_SOURCE, PREFETCH})

# Reason codes.
R_NO_SIGNAL: Final = "no_machine_signal"
R_NET_INTERNAL: Final = "net_internal"
R_PREFETCH_HEADER: Final = "prefetch_header"
R_HONEYPOT: Final = "honeypot"
R_EMPTY_UA: Final = "empty_ua"
R_LIB_UA: Final = "lib_ua"
R_BOT_UA: Final = "bot_ua"
R_APP_HTTP_CLICK: Final = "app_http_click"  # a click by an app's own HTTP stack: no engine, no reader
R_GENERIC_UA: Final = "generic_ua"  # a UA with no shape of a browser, in-app browser or mail client
R_UA_GMAIL_PREFETCH: Final = "ua_gmail_prefetch"
R_HEAD: Final = "head_request"
R_NET_MAIL_SECURITY: Final = "net_mail_security"
R_UA_GMAIL_PROXY: Final = "ua_gmail_proxy"
R_UA_YAHOO_PROXY: Final = "ua_yahoo_proxy"
R_UA_WEBMAIL_PROXY: Final = "ua_webmail_proxy"
R_VIA_ISOLATION: Final = "via_isolation"
R_NET_HOSTING: Final = "net_hosting"
R_UNSUBSCRIBE_FAST: Final = "unsubscribe_fast"
R_NET_CRAWLER: Final = "net_crawler"            # a search or AI crawler's published ranges
R_NET_LINK_PREVIEW: Final = "net_link_preview"  # a link-preview fetcher's published ranges (chat and social apps)
R_NET_MONITOR: Final = "net_monitor"            # an uptime monitor's published probe addresses
R_AMBIGUOUS_ACCEPT: Final = "ambiguous_accept_not_image"
R_MESSAGE_BURST: Final = "message_link_burst"
R_HEAD_THEN_GET: Final = "head_then_get"
R_UA_SWITCH: Final = "ua_switch_same_link"
R_CLOUD_CLICK_NO_OPEN: Final = "cloud_click_without_open"
R_RESCAN: Final = "rescan_after_click"
R_AMBIGUOUS_ORDER: Final = "ambiguous_click_order"
R_PROXY_CLICK: Final = "click_by_image_proxy"
R_BARE_MOZILLA: Final = "ua_bare_mozilla"
R_NET_PRIVACY_RELAY: Final = "net_privacy_relay"
R_FAST: Final = "fast_after_send"
R_NET_CLOUD: Final = "net_cloud"
R_NET_PROVIDER: Final = "net_provider"
R_ACCEPT_NOT_IMAGE: Final = "accept_not_image"
R_LINK_BURST: Final = "link_burst"
R_PIXEL_THEN_BURST: Final = "pixel_then_burst"
R_SCANNER_CLIENT: Final = "scanner_client"
R_TIME_OF_CLICK: Final = "time_of_click_check"
R_REPEAT: Final = "repeat_within_window"
# The email platform that reported the hit (SendGrid's sg_machine_open, Mailgun's client-info.bot) said a
# machine fetched it: kept beside pixeltrack's own verdict, which it does not decide (docs/esp.md).
R_PLATFORM_MACHINE: Final = "platform_machine_flag"
REASONS: Final = frozenset({
    R_NO_SIGNAL, R_NET_INTERNAL, R_PREFETCH_HEADER, R_HONEYPOT, R_EMPTY_UA, R_LIB_UA, R_BOT_UA, R_GENERIC_UA,
    R_APP_HTTP_CLICK, R_UA_GMAIL_PREFETCH,
    R_HEAD, R_NET_MAIL_SECURITY, R_UA_GMAIL_PROXY, R_UA_YAHOO_PROXY, R_UA_WEBMAIL_PROXY, R_VIA_ISOLATION,
    R_NET_HOSTING, R_UNSUBSCRIBE_FAST, R_NET_CRAWLER, R_NET_LINK_PREVIEW, R_NET_MONITOR, R_AMBIGUOUS_ACCEPT,
    R_MESSAGE_BURST, R_HEAD_THEN_GET, R_UA_SWITCH, R_CLOUD_CLICK_NO_OPEN, R_RESCAN, R_AMBIGUOUS_ORDER,
    R_PROXY_CLICK, R_BARE_MOZILLA, R_NET_PRIVACY_RELAY, R_FAST, R_NET_CLOUD, R_NET_PROVIDER, R_ACCEPT_NOT_IMAGE,
    R_LINK_BURST, R_PIXEL_THEN_BURST, R_SCANNER_CLIENT, R_TIME_OF_CLICK, R_REPEAT, R_PLATFORM_MACHINE,
})
# Weak signals: none decides alone; two together make a machine (Mautic-style "two of"), as long as
# one of the two is the network's: a mail client that sends `Accept: */*` and is read at once is a person.
WEAK: Final = frozenset({R_FAST, R_NET_CLOUD, R_NET_PROVIDER, R_NET_HOSTING, R_ACCEPT_NOT_IMAGE})
