"""The rules file: TOML into typed rules, with errors that name the rule and the key."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from processors.triggers.rules import (
    FIRST_OPEN,
    OPENS_WITHOUT_CLICK,
    TAGGED_CLICK,
    RuleError,
    load_rules,
    parse_duration,
    parse_rules,
)

DOC = Path(__file__).resolve().parents[4] / "docs" / "triggers.md"
SECRET = "0123456789abcdef-secret"

HEAD = f"""
[webhooks.crm]
url = "https://crm.example.com/hook"
secret = "{SECRET}"

[tags.pricing]
link_ids = ["pricing"]
"""


def test_the_example_in_the_docs_is_valid() -> None:
    text = DOC.read_text()
    example, _recipient_events = re.findall(r"```toml\n(.*?)```", text, re.S)
    rules = parse_rules(example, default_secret="global-secret-0123456789", source="docs/triggers.md")
    assert [(r.name, r.type, r.webhook) for r in rules.rules] == [
        ("call-engaged-readers", OPENS_WITHOUT_CLICK, "crm"),
        ("tell-sales", TAGGED_CLICK, "sales-chat"),
        ("first-open", FIRST_OPEN, "crm"),
    ]
    call, sales, first = rules.rules
    assert (call.min_opens, call.within, call.verdicts) == (3, 3 * 86400, frozenset({"human", "proxy"}))
    assert [t.name for t in sales.tags] == ["pricing", "demo"]
    assert sales.matched_tags("", "https://example.com/demo?x=1") == ["demo"]
    assert sales.matched_tags("plans", "https://example.com/p") == ["pricing"]
    assert sales.matched_tags("", "https://example.com/demolition") == []
    assert first.verdicts == frozenset({"human"})
    assert first.applies("", "spring-launch")
    assert not first.applies("", "other")
    assert rules.remember == 90 * 86400
    assert rules.webhooks["crm"].secret == b"global-secret-0123456789"  # no secret of its own
    assert rules.webhooks["sales-chat"].secret == b"sales-chat-signing-secret-2026"
    assert rules.webhooks["crm"].timeout == 10


def test_load_rules_reads_a_file(tmp_path: Path) -> None:
    path = tmp_path / "rules.toml"
    path.write_text(HEAD + '[[rules]]\nname = "a"\ntype = "first_open"\n')
    rules = load_rules(path)
    assert rules.rules[0].webhook == "crm"  # the only webhook is the default
    assert rules.source == str(path)
    with pytest.raises(RuleError, match="cannot read the rules file"):
        load_rules(tmp_path / "missing.toml")


def test_the_webhook_secret_never_shows_in_repr() -> None:
    rules = parse_rules(HEAD + '[[rules]]\nname = "a"\ntype = "first_open"\n')
    assert SECRET not in repr(rules)


@pytest.mark.parametrize(("body", "expected"), [
    ('[[rules]]\nname = "a"\ntype = "first_open"\nwebhok = "crm"\n',
     "rule 'a' (rules[0]): unknown key 'webhok' (did you mean 'webhook'?)"),
    ('[[rules]]\nname = "a"\ntype = "opens_without_click"\nmin_opens = 3\nwithin = "3 days"\n',
     "rule 'a' (rules[0]): key 'within': '3 days' is not a duration such as 90s"),
    ('[[rules]]\nname = "a"\ntype = "opens_without_click"\nmin_opens = 3\n',
     "rule 'a' (rules[0]): key 'within': missing"),
    ('[[rules]]\nname = "a"\ntype = "opens_without_click"\nmin_opens = 0\nwithin = "1d"\n',
     "rule 'a' (rules[0]): key 'min_opens': 0 must be a whole number from 1 to 100"),
    ('[[rules]]\nname = "a"\ntype = "tagged_click"\ntags = ["pricng"]\n',
     "rule 'a' (rules[0]): key 'tags': 'pricng' is not defined; defined tags: ['pricing']"),
    ('[[rules]]\nname = "a"\ntype = "tagged_click"\n', "rule 'a' (rules[0]): key 'tags': missing"),
    ('[[rules]]\nname = "a"\ntype = "first_open"\nwebhook = "slack"\n',
     "rule 'a' (rules[0]): key 'webhook': 'slack' is not defined; defined webhooks: ['crm']"),
    ('[[rules]]\nname = "a"\ntype = "first_open"\nverdicts = ["human", "machine"]\n',
     "rule 'a' (rules[0]): key 'verdicts': ['machine'] cannot count as a person's open"),
    ('[[rules]]\nname = "a"\ntype = "tagged_click"\ntags = ["pricing"]\nverdicts = ["human"]\n',
     "rule 'a' (rules[0]): unknown key 'verdicts'"),
    ('[[rules]]\nname = "a"\ntype = "first_click"\n',
     "rule 'a' (rules[0]): key 'type': 'first_click' is not one of opens_without_click, tagged_click, first_open"),
    ('[[rules]]\ntype = "first_open"\n', "rules[0]: key 'name': missing"),
    ('[[rules]]\nname = "a b"\ntype = "first_open"\n', "key 'name': 'a b' is not a name"),
    ('[[rules]]\nname = "a"\ntype = "first_open"\n[[rules]]\nname = "a"\ntype = "first_open"\n',
     "rule 'a' (rules[1]): key 'name': another rule has this name"),
    ('[[rules]]\nname = "a"\ntype = "first_open"\ncampaigns = "spring"\ntenants = 3\n',
     "rule 'a' (rules[0]): key 'tenants': 3 must be a non-empty list of strings"),
    ('[[rule]]\nname = "a"\n', "unknown key 'rule' (did you mean 'rules'?)"),
    ('', "no rules: add at least one [[rules]] section"),
    ('[[rules]\n', "not valid TOML"),
])
def test_errors_name_the_rule_and_the_key(body: str, expected: str) -> None:
    with pytest.raises(RuleError) as info:
        parse_rules(HEAD + body, source="rules.toml")
    assert str(info.value).startswith("rules.toml: ")
    assert expected in str(info.value)


@pytest.mark.parametrize(("top", "expected"), [
    ('remember = 0\n[[rules]]\nname = "a"\ntype = "first_open"\n', "rules.toml: key 'remember': 0 must be longer"),
    ('rules = 3\n', "rules.toml: key 'rules' must be an array of tables"),
])
def test_top_level_errors(top: str, expected: str) -> None:
    with pytest.raises(RuleError, match=re.escape(expected)):
        parse_rules(top + HEAD, source="rules.toml")
    with pytest.raises(RuleError, match=re.escape("rules.toml: key 'webhooks' must be a table")):
        parse_rules('webhooks = []\n[[rules]]\nname = "a"\ntype = "first_open"\n', source="rules.toml")


@pytest.mark.parametrize(("webhooks", "expected"), [
    ('[webhooks.crm]\nurl = "ftp://x"\nsecret = "0123456789abcdef"\n',
     "webhook 'crm': key 'url': 'ftp://x' is not an http(s) URL"),
    ('[webhooks.crm]\nurl = "https://x.example"\n',
     "webhook 'crm': key 'secret': missing, and no global webhook secret is set"),
    ('[webhooks.crm]\nurl = "https://x.example"\nsecret = "short"\n',
     "webhook 'crm': key 'secret': must be a string of at least 16 characters"),
    ('[webhooks.crm]\nurl = "https://x.example"\nsecret = "0123456789abcdef"\ntimeout = "soon"\n',
     "webhook 'crm': key 'timeout': 'soon' is not a duration"),
    ('[webhooks.crm]\nurl = "https://x.example"\nsecret = "0123456789abcdef"\nretries = 3\n',
     "webhook 'crm': unknown key 'retries'"),
    ('[webhooks.a]\nurl = "https://a.example"\nsecret = "0123456789abcdef"\n'
     '[webhooks.b]\nurl = "https://b.example"\nsecret = "0123456789abcdef"\n',
     "rule 'r' (rules[0]): key 'webhook': missing, and there is no default_webhook; defined webhooks: ['a', 'b']"),
    ('default_webhook = "c"\n[webhooks.a]\nurl = "https://a.example"\nsecret = "0123456789abcdef"\n',
     "key 'default_webhook': 'c' is not a webhook"),
    ('[webhooks.crm]\nurl = "https://x.example"\nsecret = "0123456789abcdef"\n[tags.t]\nurl_regex = ["("]\n',
     "tag 't': key 'url_regex': '(' is not a regular expression"),
    ('[webhooks.crm]\nurl = "https://x.example"\nsecret = "0123456789abcdef"\n[tags.t]\n',
     "tag 't': give at least one of link_ids, url_contains, url_regex"),
    ('[webhooks.crm]\nurl = "https://x.example"\nsecret = "0123456789abcdef"\n[tags.t]\nlink_ids = []\n',
     "tag 't': key 'link_ids': [] must be a non-empty list of strings"),
])
def test_webhook_and_tag_errors(webhooks: str, expected: str) -> None:
    with pytest.raises(RuleError, match=re.escape(expected)):
        parse_rules(webhooks + '[[rules]]\nname = "r"\ntype = "first_open"\n', source="rules.toml")


def test_a_global_secret_signs_webhooks_without_their_own() -> None:
    text = '[webhooks.crm]\nurl = "https://x.example"\n[[rules]]\nname = "r"\ntype = "first_open"\n'
    assert parse_rules(text, default_secret="global-0123456789abc").webhooks["crm"].secret == b"global-0123456789abc"
    with pytest.raises(RuleError, match="the global webhook secret is shorter than 16"):
        parse_rules(text, default_secret="short")


@pytest.mark.parametrize(("value", "seconds"), [
    ("90s", 90), ("30m", 1800), ("12h", 43200), ("3d", 259200), ("1w", 604800), ("1d12h", 129600),
    ("500ms", 0.5), (45, 45), (1.5, 1.5), (" 2H ", 7200),
])
def test_durations(value: object, seconds: float) -> None:
    assert parse_duration(value, "k") == seconds


@pytest.mark.parametrize("value", ["", "3", "3 days", "d3", "1d-2h", True, [1], "0s", -5])
def test_bad_durations(value: object) -> None:
    with pytest.raises(RuleError, match=r"^k: "):
        parse_duration(value, "k")
