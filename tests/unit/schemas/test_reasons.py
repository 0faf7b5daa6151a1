"""Every verdict, source and reason code the classifier can write has a label people read right."""

from __future__ import annotations

import processors.classify as classify
from schemas import reasons, verdicts

VERDICT_NAMES = {"HUMAN", "PROXY", "MACHINE", "DUPLICATE"}


def _constants() -> dict[str, str]:
    """The str constants of schemas/verdicts.py, read from the live module so codes added there are
    checked without touching this test."""
    return {k: v for k, v in vars(verdicts).items() if k.isupper() and isinstance(v, str)}


def reason_codes() -> dict[str, str]:
    return {k: v for k, v in _constants().items() if k.startswith("R_")}


def source_codes() -> dict[str, str]:
    return {k: v for k, v in _constants().items() if not k.startswith("R_") and k not in VERDICT_NAMES}


def test_the_collection_finds_every_word() -> None:
    # guards the collector itself: a collector that finds nothing would pass everything
    assert reason_codes()["R_FAST"] == "fast_after_send"
    assert len(reason_codes()) >= 38
    assert {"DIRECT", "APPLE_MPP", "SCANNER", "BOT", "INTERNAL_SOURCE", "PREFETCH"} <= set(source_codes())
    assert len(source_codes()) == 11
    assert {k: v for k, v in _constants().items() if k in VERDICT_NAMES} == {
        "HUMAN": "human", "PROXY": "proxy", "MACHINE": "machine", "DUPLICATE": "duplicate"}


def test_the_word_sets_hold_every_constant() -> None:
    # a code added as a constant but left out of its set would miss its label check and the SQL check
    assert set(reason_codes().values()) == verdicts.REASONS
    assert set(source_codes().values()) == verdicts.SOURCES
    assert {getattr(verdicts, n) for n in VERDICT_NAMES} == verdicts.VERDICTS
    assert {"human", "proxy"} == verdicts.COUNTED
    assert verdicts.WEAK <= verdicts.REASONS
    assert len(set(_constants().values())) == len(_constants())  # no two names for one word


def test_classify_decides_with_the_shared_words() -> None:
    # processors/classify.py re-exports them (tests and tools import them from there) and defines none
    for name, value in _constants().items():
        assert getattr(classify, name) is value, name
    assert classify.COUNTED is verdicts.COUNTED
    assert classify._WEAK is verdicts.WEAK


def test_every_reason_code_has_a_label() -> None:
    missing = sorted(f"{k} = {v!r}" for k, v in reason_codes().items() if v not in reasons.REASONS)
    assert not missing, f"reason codes without a label in schemas/reasons.py: {missing}"
    assert set(reasons.REASONS) == verdicts.REASONS  # and no label for a code nothing writes


def test_every_source_has_a_label() -> None:
    missing = sorted(f"{k} = {v!r}" for k, v in source_codes().items() if v not in reasons.SOURCES)
    assert not missing, f"sources without a label in schemas/reasons.py: {missing}"
    assert set(reasons.SOURCES) == verdicts.SOURCES


def test_every_verdict_has_a_label() -> None:
    assert set(reasons.VERDICTS) == verdicts.VERDICTS
    assert set(reasons.COUNTED_VERDICTS) == set(classify.COUNTED) == {"human", "proxy"}


def test_labels_are_short_and_explanations_one_line() -> None:
    for table in (reasons.REASONS, reasons.SOURCES, reasons.VERDICTS):
        for code, label in table.items():
            assert 0 < len(label.label) <= 32, code
            assert 0 < len(label.explanation) <= 110, code
            assert "\n" not in label.explanation, code


def test_weak_signals_match_the_classifier() -> None:
    assert set(classify._WEAK) == reasons.WEAK_REASONS == {
        "fast_after_send", "net_cloud", "net_provider", "net_hosting", "accept_not_image"}


def test_a_persons_fast_open_reads_as_a_persons() -> None:
    fast = reasons.reason("fast_after_send", "human")
    assert fast.label == "fast open (a person can)"
    assert fast.explanation == "opened within 2 minutes of delivery (a person can: no machine signal)"
    for code in reasons.WEAK_REASONS:  # every weak signal on a counted hit says it is no machine signal
        assert "no machine signal" in reasons.reason(code, "human").explanation
        assert "no machine signal" in reasons.reason(code, "proxy").explanation
    machine = reasons.reason("fast_after_send", "machine")
    assert machine.label == "opened within 2 min"
    assert "together with another weak signal" in machine.explanation
    assert "a person can" not in machine.explanation


def test_strong_reasons_read_the_same_whatever_the_verdict() -> None:
    assert reasons.reason("honeypot", "machine") == reasons.reason("honeypot", "human") == reasons.REASONS["honeypot"]


def test_unknown_codes_read_as_themselves() -> None:
    assert reasons.reason("new_code").label == "new_code"
    assert reasons.source("somewhere").label == "somewhere"
    assert reasons.source("").label == "unknown"
    assert reasons.source("apple_mpp").label == "Apple Mail Privacy Protection"
