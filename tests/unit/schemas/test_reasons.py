"""Every verdict, source and reason code the classifier can write has a label people read right."""

from __future__ import annotations

import ast
import inspect

import processors.classify as classify
from schemas import reasons

VERDICT_NAMES = {"HUMAN", "PROXY", "MACHINE", "DUPLICATE"}


def _defined_in_classify() -> dict[str, str]:
    """String constants assigned at the top level of processors/classify.py (not imported ones), read
    from the live module so codes added there are checked without touching this test."""
    tree = ast.parse(inspect.getsource(classify))
    names: set[str] = set()
    for node in tree.body:
        targets = node.targets if isinstance(node, ast.Assign) else [node.target] if isinstance(
            node, ast.AnnAssign) else []
        for t in targets:
            for n in (t.elts if isinstance(t, ast.Tuple) else [t]):
                if isinstance(n, ast.Name):
                    names.add(n.id)
    return {k: v for k, v in vars(classify).items() if k in names and k.isupper() and isinstance(v, str)}


def reason_codes() -> dict[str, str]:
    return {k: v for k, v in _defined_in_classify().items() if k.startswith("R_")}


def source_codes() -> dict[str, str]:
    return {k: v for k, v in _defined_in_classify().items()
            if not k.startswith(("R_", "_")) and k not in VERDICT_NAMES}


def test_the_collection_finds_what_classify_defines() -> None:
    # guards the collector itself: a collector that finds nothing would pass everything
    assert reason_codes()["R_FAST"] == "fast_after_send"
    assert len(reason_codes()) >= 24
    assert {"DIRECT", "APPLE_MPP", "SCANNER", "BOT", "INTERNAL_SOURCE", "PREFETCH"} <= set(source_codes())
    assert "CLOUD" not in source_codes()  # imported from processors.networks: a network category, not a source


def test_every_reason_code_has_a_label() -> None:
    missing = sorted(f"{k} = {v!r}" for k, v in reason_codes().items() if v not in reasons.REASONS)
    assert not missing, f"reason codes without a label in schemas/reasons.py: {missing}"


def test_every_source_has_a_label() -> None:
    missing = sorted(f"{k} = {v!r}" for k, v in source_codes().items() if v not in reasons.SOURCES)
    assert not missing, f"sources without a label in schemas/reasons.py: {missing}"


def test_every_verdict_has_a_label() -> None:
    assert {getattr(classify, n) for n in VERDICT_NAMES} <= set(reasons.VERDICTS)
    assert set(reasons.COUNTED_VERDICTS) == set(classify.COUNTED)


def test_labels_are_short_and_explanations_one_line() -> None:
    for table in (reasons.REASONS, reasons.SOURCES, reasons.VERDICTS):
        for code, label in table.items():
            assert 0 < len(label.label) <= 32, code
            assert 0 < len(label.explanation) <= 110, code
            assert "\n" not in label.explanation, code


def test_weak_signals_match_the_classifier() -> None:
    assert set(classify._WEAK) == reasons.WEAK_REASONS


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
