"""Machine user agents from the public crawler-user-agents list, compiled once into a fast matcher."""

from __future__ import annotations

import functools
import importlib.metadata
import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import crawleruseragents  # type: ignore[import-untyped]  # ships no type information

# The list this matcher was built from (package version; its data is the list's JSON of that release).
LIST_VERSION = importlib.metadata.version("crawler-user-agents")

# What a match is. The list tags HTTP libraries "http-library"; every other entry (crawlers,
# monitors, scanners, link previews, AI fetchers, headless browsers) is a bot.
LIBRARY, BOT = "library", "bot"

# Patterns of the list that also match people's browsers and in-app browsers in public browser
# corpora (isbot's browser list, uap-core's test cases), each with what replaces it: a narrower
# pattern that still matches the list's own instances, or None to leave the entry out.
NARROWED: dict[str, str | None] = {
    # "Sonic" is RankSonic's and a Waseda crawler's name, and also a token of Slack's desktop app
    # ("... WindowsStore/10.0.18362 Sonic Slack_SSB/4.4.2").
    "Sonic": r"RankSonic|\bSonic/",
    # An Android build id (OPPO phones' firmware): every phone on that build matches, not only 80legs.
    r"AP3A\.240617\.008": None,
    # Facebook's in-app browser: a person who tapped a link in the Facebook app.
    "MetaIAB Facebook": None,
    # Site-specific browser for macOS (a person's browser; the list files it as automation).
    "Fluid": None,
    # VS Code's and Trae's Electron shells: a person's editor opening a link, in isbot's browser list.
    r"Code\/1\.": None,
    r"Trae\/": None,
    # Viber's link-preview fetcher sends exactly "Viber"; the app's own browser ends its UA with "Viber".
    "Viber": r"^Viber$",
    # Advanced Web Ranking's bot starts with "008/"; Opera Mini's build numbers contain "39008/37".
    r"008\/": r"^008\/",
    # REDbot starts with "RED/"; Wired's iPad app says "WIRED/3.2".
    r"RED\/": r"^RED\/",
    # Real Chrome builds that load a page at a person's request (a page-speed report, a screenshot, an AI
    # browser): isbot's browser list files them as "misidentified browsers", legitimate user agents, and
    # so do we.
    "GTmetrix": None,
    "YLT Chrome": None,
    "TSM-turingos": None,
    r"Miniature\.io\/": None,
    # A CMS-detection tool's "Fetch/2.0a"; Mozilla Android Components' "MozacFetch/49.0" is a browser's.
    r"Fetch\/": r"(?:^|[^A-Za-z])Fetch/",
}

# Characters that end a run of literal text in a pattern.
_META = frozenset("[](){}|?*+^$.")
# Text of everyday browser UAs: a prefilter key found in it would send every browser to the slow path.
_BROWSER_TEXT = (
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0.0.0 "
    "Safari/537.36 Edg/124.0.0.0 (Macintosh; Intel Mac OS X 10_15_7) Version/17.4.1 Mobile/15E148 "
    "(iPhone; CPU iPhone OS 17_4 like Mac OS X) (Linux; Android 14; Pixel 8 Build/AP1A; wv) "
    "Gecko/20100101 Firefox/125.0 rv:125.0 (X11; Linux x86_64) (compatible; MSIE 9.0; Trident/5.0)"
)
_KEY_LENGTHS = (4, 3)


def required_literals(pattern: str) -> list[str]:
    """Runs of plain text that every match of `pattern` contains, in order; [] when the pattern has a
    top-level alternation (then no text is required). Conservative: text inside groups or classes,
    and a character made optional by a quantifier, are left out."""
    runs: list[str] = []
    run: list[str] = []
    depth = 0
    i, n = 0, len(pattern)

    def close() -> None:
        if run:
            runs.append("".join(run))
            run.clear()

    while i < n:
        ch = pattern[i]
        if ch == "\\":
            nxt = pattern[i + 1] if i + 1 < n else ""
            i += 2
            if depth == 0 and nxt and not nxt.isalnum():
                run.append(nxt)   # an escaped punctuation character is itself
            else:
                close()           # a class (\d, \s, \w) or an assertion (\b)
            continue
        if ch == "[":
            close()
            i += 1
            if i < n and pattern[i] == "^":
                i += 1
            if i < n and pattern[i] == "]":
                i += 1
            while i < n and pattern[i] != "]":
                i += 2 if pattern[i] == "\\" else 1
            i += 1
            continue
        if ch == "(":
            close()
            depth += 1
        elif ch == ")":
            depth -= 1
        elif ch == "|" and depth == 0:
            return []
        elif ch in "?*{":
            if run:
                run.pop()     # the character before it may be absent
            close()
        elif ch in _META:
            close()
        elif depth == 0:
            run.append(ch)
        i += 1
    close()
    return runs


def _key(pattern: str) -> str | None:
    """The prefilter key of a pattern: a short piece of its required text, not common in browsers."""
    runs = sorted(required_literals(pattern), key=len, reverse=True)
    for size in _KEY_LENGTHS:
        windows = [r[j:j + size] for r in runs if len(r) >= size for j in range(len(r) - size + 1)]
        if windows:
            rare = [w for w in windows if w not in _BROWSER_TEXT]
            return (rare or windows)[0]
    return None


@dataclass(frozen=True, slots=True)
class Entry:
    """One machine pattern: its regex text, the kind it means, and where it comes from."""

    pattern: str
    kind: str      # LIBRARY | BOT
    source: str    # "crawler-user-agents <version>" or a description of our own entry


class BotMatcher:
    """Finds the first of many patterns (in their order) found in a user agent, case-sensitively.

    On ua-parser-rs (a dependency of ua-parser's fast resolver) all patterns are one Rust regex set with
    a literal prefilter: ~2 µs for a browser UA. Without it, a prefilter in Python: each pattern has a 3-
    or 4-character key from text it requires, only the patterns whose key occurs in the UA are tried, and
    the few with no such key form one combined regex tried on every UA (tens of µs). Either way it runs
    once per distinct UA upstream (the Enricher's UA cache), and both give the same answers.
    """

    def __init__(self, entries: Iterable[Entry], *, rust: bool = True) -> None:
        kept: list[Entry] = []
        self._regexes: list[re.Pattern[str]] = []
        rejected: list[tuple[Entry, str]] = []
        for e in entries:
            try:
                self._regexes.append(re.compile(e.pattern))
            except re.error as exc:
                # A later list release with a pattern Python cannot read: that entry is lost, not the others.
                rejected.append((e, str(exc)))
                continue
            kept.append(e)
        self.entries = tuple(kept)
        self.rejected = tuple(rejected)
        self._rs: Any = None
        if rust:
            try:
                import ua_parser_rs
                # The family of a match is the entry's index; no version groups are read.
                self._rs = ua_parser_rs.UserAgentExtractor(
                    [(e.pattern, str(idx), None, None, None, None) for idx, e in enumerate(self.entries)])
            except (ImportError, ValueError):
                # Not installed, or a pattern the Rust engine does not take (look-around): Python answers.
                self._rs = None
        self._by_key: dict[int, dict[str, list[int]]] = {size: {} for size in _KEY_LENGTHS}
        rest: list[int] = []
        for idx, e in enumerate(self.entries):
            key = _key(e.pattern)
            if key is None:
                rest.append(idx)
            else:
                self._by_key[len(key)].setdefault(key, []).append(idx)
        self._unkeyed = tuple(rest)
        self._rest = re.compile("|".join(f"(?:{self.entries[idx].pattern})" for idx in rest)) if rest else None

    @property
    def backend(self) -> str:
        """"ua-parser-rs" or "python": which matcher answers."""
        return "ua-parser-rs" if self._rs is not None else "python"

    def match(self, ua: str) -> Entry | None:
        """The first entry (in order) whose pattern is found in `ua`, else None."""
        if self._rs is not None:
            found = self._rs.extract(ua)
            return None if found is None else self.entries[int(found.family)]
        return self.match_python(ua)

    def match_python(self, ua: str) -> Entry | None:
        """`match` by the Python prefilter, whatever the backend."""
        best = len(self.entries)
        for size, table in self._by_key.items():
            if not table:
                continue
            slices = {ua[j:j + size] for j in range(len(ua) - size + 1)}
            for key in slices & table.keys():
                for idx in table[key]:
                    if idx < best and self._regexes[idx].search(ua) is not None:
                        best = idx
        if self._rest is not None and self._rest.search(ua) is not None:
            for idx in self._unkeyed:
                if idx < best and self._regexes[idx].search(ua) is not None:
                    best = idx
                    break
        return self.entries[best] if best < len(self.entries) else None


def list_entries() -> list[Entry]:
    """The crawler-user-agents entries, with the patterns of NARROWED replaced or left out."""
    source = f"crawler-user-agents {LIST_VERSION}"
    out = []
    for item in crawleruseragents.CRAWLER_USER_AGENTS_DATA:
        pattern = str(item["pattern"])
        if pattern in NARROWED:
            narrowed = NARROWED[pattern]
            if narrowed is None:
                continue
            pattern = narrowed
        kind = LIBRARY if "http-library" in item.get("tags", ()) else BOT
        out.append(Entry(pattern, kind, source))
    return out


@functools.cache
def default_matcher() -> BotMatcher:
    """The matcher over the crawler-user-agents list, built once per process (~0.1 s) and shared."""
    return BotMatcher(list_entries())
