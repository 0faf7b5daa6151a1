"""`pixeltrack classify`: hit v1 JSON lines in, one final verdict per hit out, in input order."""

from __future__ import annotations

from collections.abc import Collection, Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

from processors.behaviour import Classifier
from processors.classify import ClassifierConfig, Verdict
from processors.enrich import Enricher
from processors.networks import NetworkLists
from schemas.hit import Hit, loads_v1

# Replaced by the hit's first decision before anything is yielded.
_PENDING = Verdict("human", "direct", ())


def build_classifier(geoip_city_db: str | Path | None = None, geoip_asn_db: str | Path | None = None,
                     networks_file: str | Path | None = None, internal_networks: Sequence[str] = (),
                     config: ClassifierConfig | None = None, hosting_asns: Collection[int] = (),
                     geoip_default: bool = False) -> Classifier:
    """A Classifier over the shipped network lists plus `networks_file` and `internal_networks`, with an
    Enricher over the given GeoIP databases (None: no place or ASN, or with `geoip_default` the shipped
    open ones), and `hosting_asns` (hosting providers' AS numbers: a weak signal for addresses no list
    names; processors.geodata.HOSTING_ASNS ships them). Raises ValueError naming a file that cannot be
    read or a network that is not one."""
    networks = NetworkLists.load(networks_file, internal_networks)
    enricher = Enricher(geoip_city_db, geoip_asn_db, networks, default_geo=geoip_default)
    return Classifier(config or ClassifierConfig(), networks, enricher, hosting_asns)


def classify_lines(lines: Iterable[bytes | str], classifier: Classifier) -> Iterator[dict[str, Any]]:
    """One dict per input line: `{"id", "verdict", "source", "reasons"}` with the hit's final verdict,
    or `{"line": n, "error": reason}` (n counted from 1) for a line that is not a hit v1 record.

    Results come after the whole input, in input order, because a later hit may revise an earlier
    verdict. A `label` field is ignored; blank lines are skipped. Memory: one small entry per line
    (the id and a shared Verdict), besides the classifier's own bounded state.
    """
    results: list[tuple[str, Verdict] | tuple[int, str]] = []
    # Hits that a later hit may still revise, by object identity (ids in a file need not be unique).
    # Holding the Hit keeps its identity from being reused; entries two settle windows old are dropped.
    live: dict[int, tuple[Hit, int]] = {}
    keep_for = 2 * classifier.config.settle_window
    newest = float("-inf")
    for n, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            hit = loads_v1(line)
        except ValueError as exc:
            results.append((n, str(exc)))
            continue
        live[id(hit)] = (hit, len(results))
        results.append((hit.id, _PENDING))
        for decision in classifier.feed(hit):
            entry = live.get(id(decision.hit))
            if entry is not None:
                results[entry[1]] = (decision.hit.id, decision.verdict)
        if hit.ts > newest:
            newest = hit.ts
        if n % 4096 == 0:
            live = {k: e for k, e in live.items() if e[0].ts >= newest - keep_for}
    for item in results:
        if isinstance(item[0], int):
            yield {"line": item[0], "error": item[1]}
        else:
            v = item[1]
            assert isinstance(v, Verdict)  # narrows the union for mypy
            yield {"id": item[0], "verdict": v.verdict, "source": v.source, "reasons": list(v.reasons)}
