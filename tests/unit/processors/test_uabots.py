"""The crawler-user-agents matcher: same answers as the list's own regexes, on either backend."""

from __future__ import annotations

import re
from functools import cache

import crawleruseragents
import pytest
import yaml

from processors import uabots

from .builders import FIXTURES

CORPORA = FIXTURES / "useragents"


@cache
def corpus_uas() -> tuple[str, ...]:
    """Every UA of the two public corpora and every example instance of the list: bots and browsers."""
    groups = yaml.safe_load((CORPORA / "isbot-browsers.yml").read_text(encoding="utf-8"))
    cases = yaml.safe_load((CORPORA / "uap-core-test_ua.yaml").read_text(encoding="utf-8"))["test_cases"]
    instances = [str(ua) for e in crawleruseragents.CRAWLER_USER_AGENTS_DATA for ua in e["instances"]]
    return (*(ua for uas in groups.values() for ua in uas), *(str(c["user_agent_string"]) for c in cases),
            *instances)


@cache
def first_by_re() -> dict[str, int | None]:
    """The independent answer for every corpus UA: each pattern compiled alone by `re`, tried in order."""
    regexes = [re.compile(e.pattern) for e in uabots.list_entries()]
    return {ua: next((idx for idx, r in enumerate(regexes) if r.search(ua)), None) for ua in corpus_uas()}


def test_list_version_is_recorded() -> None:
    major, minor = (int(x) for x in uabots.LIST_VERSION.split(".")[:2])
    assert (major, minor) >= (1, 67)
    assert uabots.list_entries()[0].source == f"crawler-user-agents {uabots.LIST_VERSION}"


@pytest.mark.parametrize("rust", [True, False])
def test_matcher_agrees_with_each_pattern_alone(rust: bool) -> None:
    if rust:
        pytest.importorskip("ua_parser_rs")
    entries = uabots.list_entries()
    matcher = uabots.BotMatcher(entries, rust=rust)
    assert matcher.backend == ("ua-parser-rs" if rust else "python")
    expected = first_by_re()
    assert len(expected) > 4000
    index = {id(e): i for i, e in enumerate(matcher.entries)}
    for ua, idx in expected.items():
        found = matcher.match(ua)
        assert (None if found is None else index[id(found)]) == idx, ua


def test_kinds_follow_the_list_tags() -> None:
    m = uabots.default_matcher()
    assert [getattr(m.match(ua), "kind", None) for ua in
            ("python-requests/2.32.3", "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)",
             "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 "
             "Safari/537.36")] == [uabots.LIBRARY, uabots.BOT, None]


def test_narrowed_patterns_keep_their_bots_and_drop_the_browsers() -> None:
    by_pattern = {str(e["pattern"]): [str(ua) for ua in e["instances"]]
                  for e in crawleruseragents.CRAWLER_USER_AGENTS_DATA}
    assert set(uabots.NARROWED) <= set(by_pattern)   # a release that renames one shows up here
    for original, narrowed in uabots.NARROWED.items():
        if narrowed is not None:
            assert all(re.search(narrowed, ua) for ua in by_pattern[original]), original
    browsers = {
        "Sonic": "Mozilla/5.0 (Windows NT 10.0.18362; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Slack/4.4.2 "
                 "Chrome/78.0.3904.130 Electron/7.2.1 Safari/537.36 WindowsStore/10.0.18362 Sonic Slack_SSB/4.4.2",
        "Viber": "Viber/12.8.0.1 CFNetwork/1121.2.2 Darwin/19.3.0",
        r"008\/": "Opera/9.80 (MAUI Runtime; Opera Mini/4.4.39008/37.9178; U; en) Presto/2.12.423 Version/12.16",
        r"RED\/": "Mozilla/5.0 (iPad; U; CPU iPhone OS 7_0 like Mac OS X; de-DE) WIRED/3.2.3.11.87970",
        r"Fetch\/": "MozacFetch/49.0.20200702190156",
    }
    for original, ua in browsers.items():
        assert re.search(original, ua), original
        assert uabots.default_matcher().match(ua) is None, original


@pytest.mark.parametrize(("pattern", "literals"), [
    (r"Googlebot\/", ["Googlebot/"]),
    (r"S[eE][mM]rushBot", ["S", "rushBot"]),
    (r"AdsBot-Google([^-]|$)", ["AdsBot-Google"]),
    (r"^Apache-HttpClient", ["Apache-HttpClient"]),
    (r"Ahrefs(Bot|SiteAudit)", ["Ahrefs"]),
    (r"Bark[rR]owler", ["Bark", "owler"]),
    (r"https?:\/\/x", ["http", "://x"]),     # the "s" may be absent: the run stops before it
    (r"Chirp|gotosocial", []),                # an alternation requires no text
    (r"(^| )sentry\/", ["sentry/"]),          # text inside a group is not required
])
def test_required_literals(pattern: str, literals: list[str]) -> None:
    assert uabots.required_literals(pattern) == literals


def test_patterns_an_engine_cannot_read_do_not_break_the_others() -> None:
    entries = [uabots.Entry("(?<![A-Za-z])Fetch/", uabots.BOT, "test"),   # look-behind: Python only
               uabots.Entry("Broken(", uabots.BOT, "test"),                # no engine reads this
               uabots.Entry("Googlebot/", uabots.BOT, "test")]
    m = uabots.BotMatcher(entries)
    assert m.backend == "python"
    assert [e.pattern for e, _ in m.rejected] == ["Broken("]
    assert [getattr(m.match(ua), "pattern", None) for ua in ("Fetch/2.0a", "MozacFetch/49", "Googlebot/2.1")] == [
        "(?<![A-Za-z])Fetch/", None, "Googlebot/"]
