"""The classifier on every public corpus the tests hold, and its speed against the previous release.

Runs the real classifier, as `pixeltrack serve` and `process` build it (shipped network lists, open
country/ASN data, hosting ASNs), over:

- bot instances of the crawler-user-agents dependency, and uap-core's spiders that list does not name
  (each one click 2–50 h after send from a residential address with a browser's headers: machine?);
- the browser corpora (isbot's "not a bot" fixtures, uap-core's browsers, apps and mail clients): the
  false-machine rate;
- Apple's published Private Relay list with MPP's user agent: machine / apple_mpp for every range?;
- the labelled sample, the held-out fixture and the harder held-out fixture: verdicts right, counted
  opens and clicks against truth.

Then `bench/bench_classify.py` (enrich + classify on one core) of this tree and of the previous
release (`--baseline-rev`, unpacked from git into a temporary folder, compiled the same way when this
tree runs compiled), interleaved, medians compared. The last line is machine-readable.

Run: make bench-truth   (or .venv/bin/python bench/bench_truth.py [--rounds 3] [--seconds 2])
"""

from __future__ import annotations

import argparse
import os
import re
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from schemas import native  # noqa: E402

native.activate()  # first, before the hot modules load: compiled when a current build is there (make native)

from processors.behaviour import Classifier  # noqa: E402
from processors.classify_file import build_classifier  # noqa: E402
from processors.geodata import HOSTING_ASNS  # noqa: E402
from tests.plugins import corpora  # noqa: E402

# The release before issue 15's work: the figure "today's bench-classify" was measured on.
BASELINE_REV = "90c04fd"


def classifier() -> Classifier:
    return build_classifier(geoip_default=True, hosting_asns=HOSTING_ASNS)


def share(values: list[str], wanted: str) -> float:
    return sum(1 for v in values if v == wanted) / max(1, len(values))


def ua_corpora(make: Callable[[], Classifier]) -> dict[str, float]:
    probe = make()
    parser = probe._enricher._parser  # ua_parser's spider detection decides what uap-core calls a crawler

    def spider(ua: str) -> bool:
        device = parser.parse(ua).device
        return device is not None and device.family == "Spider"

    from processors import uabots
    from processors.enrich import UA_APP_HTTP

    def app_stack(ua: str) -> bool:  # an app's raw HTTP stack: its opens are a person's, its clicks are not
        return probe._enricher.ua_profile(ua).kind == UA_APP_HTTP

    listed = [ua for _, ua in corpora.list_instances()]
    matcher = uabots.default_matcher()
    unlisted_spiders = [ua for ua, _ in corpora.uap_cases() if spider(ua) and matcher.match(ua) is None]
    uap_browsers = [ua for ua, family in corpora.uap_cases()
                    if family not in corpora.UAP_NOT_BROWSERS and not spider(ua)]
    isbot = list(corpora.isbot_browsers())
    stacks = [ua for ua in [*isbot, *uap_browsers] if app_stack(ua)]
    out = {
        "bots_listed": share(corpora.click_verdicts(make(), listed), "machine"),
        "bots_unlisted_spiders": share(corpora.click_verdicts(make(), unlisted_spiders), "machine"),
        "browsers_isbot_machine": share(corpora.click_verdicts(make(), [u for u in isbot if not app_stack(u)]),
                                        "machine"),
        "browsers_uap_machine": share(corpora.click_verdicts(make(), [u for u in uap_browsers if not app_stack(u)]),
                                      "machine"),
        "app_stacks_open_human": share(corpora.open_verdicts(make(), stacks), "human"),
    }
    print(f"bots, crawler-user-agents instances ({len(listed)}): {out['bots_listed']:.2%} machine")
    print(f"bots, uap-core spiders the list does not name ({len(unlisted_spiders)}): "
          f"{out['bots_unlisted_spiders']:.2%} machine")
    print(f"browsers, isbot ({len(isbot)}, app stacks apart): {out['browsers_isbot_machine']:.2%} called machine")
    print(f"browsers, uap-core ({len(uap_browsers)}, app stacks apart): {out['browsers_uap_machine']:.2%} "
          "called machine")
    print(f"apps' own HTTP stacks in those corpora ({len(stacks)}): opens {out['app_stacks_open_human']:.2%} human "
          "(their clicks are machines: no browser engine renders the page)")
    return out


def mpp_corpus(make: Callable[[], Classifier]) -> float:
    addresses = corpora.relay_addresses()
    got = corpora.mpp_verdicts(make(), addresses)
    right = sum(1 for v in got if v == ("machine", "apple_mpp")) / len(got)
    print(f"Apple Private Relay ranges with MPP's UA ({len(addresses)}): {right:.2%} machine / apple_mpp")
    return right


def labelled(make: Callable[[], Classifier]) -> dict[str, float]:
    out = {}
    for name, key in (("labelled-hits.jsonl", "labelled"), ("heldout-hits.jsonl", "heldout"),
                      ("heldout-hard.jsonl", "heldout_hard")):
        s = corpora.score_labelled(name, make)
        print(f"{name} ({s.hits} hits): {s.accuracy:.2%} right; opens {s.opens} vs {s.true_opens} "
              f"({s.open_err:+.2%}), clicks {s.clicks} vs {s.true_clicks} ({s.click_err:+.2%})")
        out[f"{key}_accuracy"] = s.accuracy
        out[f"{key}_open_err"] = s.open_err
        out[f"{key}_click_err"] = s.click_err
    return out


def unpack(rev: str, into: Path) -> Path:
    """The tree of git revision `rev` in `into` (git archive), or SystemExit saying why not."""
    archive = into / "tree.tar"
    done = subprocess.run(["git", "-C", str(ROOT), "archive", "--format=tar", "-o", str(archive), rev],
                          capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"bench-truth: cannot unpack the baseline {rev}: {done.stderr.strip()}")
    tree = into / "baseline"
    with tarfile.open(archive) as tar:
        tar.extractall(tree, filter="data")
    return tree


def classify_rate(tree: Path, seconds: float, env: dict[str, str]) -> float:
    out = subprocess.run([sys.executable, str(tree / "bench" / "bench_classify.py"), "--seconds", str(seconds)],
                         cwd=tree, env={**env, "PYTHONPATH": str(tree)}, capture_output=True, text=True, check=True,
                         timeout=600).stdout
    return float(re.search(r"hits_per_s=(\d+)", out.splitlines()[-1]).group(1))  # type: ignore[union-attr]


def throughput(rev: str, rounds: int, seconds: float) -> tuple[float, float, float]:
    """Medians of bench_classify's hits/s for this tree and for `rev`, interleaved `rounds` times, and the
    median of each round's ratio (the two runs of a round share the machine's mood of that minute)."""
    env = {k: v for k, v in os.environ.items() if k not in native.ENVIRONMENT}
    compiled = native.STATE == "compiled"
    with tempfile.TemporaryDirectory(prefix="pixeltrack-baseline-") as tmp:
        old = unpack(rev, Path(tmp))
        if compiled:  # like with like: the baseline compiled too, into its own build/native
            built = subprocess.run([sys.executable, str(old / "deploy" / "native" / "build.py")], cwd=old,
                                   env={**env, "PYTHONPATH": str(old)}, capture_output=True, text=True, timeout=900)
            if built.returncode != 0:
                compiled = False
        if not compiled:
            env["PIXELTRACK_NATIVE"] = "0"
        print(f"throughput: this tree vs {rev}, both {'compiled' if compiled else 'plain Python'}, "
              f"{rounds} interleaved rounds of {seconds:g} s")
        new_rates, old_rates = [], []
        for _ in range(rounds):
            old_rates.append(classify_rate(old, seconds, env))
            new_rates.append(classify_rate(ROOT, seconds, env))
            print(f"  {rev}: {old_rates[-1]:,.0f} hits/s   this tree: {new_rates[-1]:,.0f} hits/s")
    ratios = [n / o for n, o in zip(new_rates, old_rates, strict=True)]
    return statistics.median(new_rates), statistics.median(old_rates), statistics.median(ratios)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--baseline-rev", default=BASELINE_REV, help=f"the previous release (default {BASELINE_REV})")
    p.add_argument("--rounds", type=int, default=3, help="interleaved throughput rounds (default 3)")
    p.add_argument("--seconds", type=float, default=2.0, help="each bench_classify run's minimum time")
    p.add_argument("--skip-throughput", action="store_true", help="corpora only")
    args = p.parse_args()

    started = time.perf_counter()
    print(f"classifier: shipped networks, open geo/ASN data, {len(HOSTING_ASNS)} hosting ASNs; "
          f"hot path {native.STATE}")
    figures = {**ua_corpora(classifier), "mpp_relay": mpp_corpus(classifier), **labelled(classifier)}
    print(f"corpora in {time.perf_counter() - started:.1f} s")
    line = " ".join(f"{k}={v:.4f}" for k, v in figures.items())
    if not args.skip_throughput:
        new, old, ratio = throughput(args.baseline_rev, args.rounds, args.seconds)
        print(f"enrich + classify: {new:,.0f} hits/s against {old:,.0f} for {args.baseline_rev} (medians); "
              f"median ratio of the rounds {ratio:.2f} (the target is ≥ 0.80)")
        line += f" hits_per_s={new:.0f} baseline_hits_per_s={old:.0f} ratio={ratio:.3f}"
    print(line)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
