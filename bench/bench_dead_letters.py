"""What junk costs on disk: dead letters from a flood of bad requests, through the real processor into chDB,
sampled as configured and, as the baseline in the same run, every body stored (the processors before
sampling).

1. The edge: --edge-requests junk fetches (random paths, token-shaped random tokens, forged signatures,
   wrong kinds, malformed paths) answered by the real edge app (aiohttp test server on 127.0.0.1), its
   dead letters taken from its publisher.
2. hits.dlq-shaped letters straight into the processor: --records letters like the edge's (random
   token-shaped paths, addresses and user agents; four reasons; two edges), received evenly within
   --seconds: by default ten minutes, a flood whose sampling per minute counts (each minute stores its
   own samples, so a spread stores more than a burst; --seconds 3 is the audit's 40,000 junk requests
   in 2.8 s).

Both go through HitProcessor and ClickHouseWriter into chDB in the batches the batch loop would take (cut at
--batch-records, or --batch-ms after a batch's first letter arrived, by received_at), twice: with --samples
bodies per stage, reason, edge and minute (and six times that per hour), then unsampled (the baseline), each
in a database of its own. Merges of the dead-letter tables (dead_letters, dead_letter_counts) are stopped
while the letters go in, so the first measure is every inserted part as written (`unmerged`); then OPTIMIZE
… FINAL (`merged`). Sizes are system.parts bytes_on_disk of the tables' active parts. The last line is JSON:

    {"letters": …, "counted": …, "stored": …, "unmerged_bytes": …, "merged_bytes": …,
     "baseline": {…}, "ratio_unmerged": …, "ratio_merged": …, …}

Run: make bench-dead-letters, or .venv/bin/python bench/bench_dead_letters.py [--records 100000]
[--edge-requests 2000] [--seconds 600] [--samples 10] [--batch-ms 1000]
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import random
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from aiohttp.test_utils import TestClient, TestServer
from clickhouse_connect.driver.client import Client

from ingest.app import create_app
from ingest.publisher import QueuePublisher
from processors.classify_file import build_classifier
from processors.clickhouse import connect, migrate
from processors.local_runner import LocalRecord
from processors.pipeline import HitProcessor
from processors.step import write_batch
from processors.writer import ClickHouseWriter
from schemas.records import DeadLetter, Record
from schemas.settings import Settings
from schemas.tokens import Keyring, TokenPayload
from schemas.topics import Topics

DATABASE = "bench_dead_letters"
KEY_SPEC = "k1:" + base64.urlsafe_b64encode(b"bench-dead-letters-secret-0123456").rstrip(b"=").decode()
DEAD_LETTER_TABLES = ("dead_letters", "dead_letter_counts")
# With merges stopped every insert stays a part: ClickHouse slows inserts from 1,000 parts in a partition
# (parts_to_delay_insert) and refuses them from 3,000. A run stays under the first.
MAX_INSERTS = 900
UAS = ("curl/8.5.0", "python-requests/2.32.3", "Mozilla/5.0 (compatible; Googlebot/2.1)", "Go-http-client/1.1",
       "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 Chrome/131.0 Safari/537.36")


def b64(rng: random.Random, n: int) -> str:
    return base64.urlsafe_b64encode(rng.randbytes(n)).rstrip(b"=").decode()


def junk_paths(rng: random.Random, keyring: Keyring, n: int) -> list[str]:
    """Paths a scanner or a forger sends: random text, token-shaped random tokens, a forged tag, a
    genuine token of the wrong kind, a path that is not /o/<token>."""
    click = keyring.mint(TokenPayload("click", "", "c", "A", "m", "r", int(time.time() * 1000), 0,
                                      "https://example.com/"))
    out = []
    for i in range(n):
        shape = i % 5
        if shape == 0:
            out.append(f"/o/{b64(rng, 30)}.gif")
        elif shape == 1:
            out.append(f"/o/k1.{b64(rng, 60)}.{b64(rng, 16)}.gif")
        elif shape == 2:
            out.append(f"/c/{click.rsplit('.', 1)[0]}.{b64(rng, 16)}")
        elif shape == 3:
            out.append(f"/o/{click}.gif")
        else:
            out.append(f"/o/{b64(rng, 8)}/{b64(rng, 8)}")
    return out


async def edge_letters(n: int, seed: int) -> list[Record]:
    """The real edge's dead letters for `n` junk requests."""
    rng = random.Random(seed)
    settings = Settings(_env_file=None, signing_keys=KEY_SPEC, edge_id="edge-bench", spool_dir=None)
    bus: asyncio.Queue[Record] = asyncio.Queue()
    app = create_app(settings, publisher=QueuePublisher(bus))
    async with TestClient(TestServer(app, host="127.0.0.1")) as client:
        for path in junk_paths(rng, settings.keyring(), n):
            ip = f"{rng.randrange(1, 224)}.{rng.randrange(256)}.{rng.randrange(256)}.{rng.randrange(1, 255)}"
            async with client.get(path, headers={"User-Agent": rng.choice(UAS), "X-Forwarded-For": ip},
                                  allow_redirects=False) as resp:
                await resp.read()
        # every junk request is one letter, published by the forwarder in the background
        letters = [await asyncio.wait_for(bus.get(), 10) for _ in range(n)]
    assert all(r.topic == Topics().hits_dlq for r in letters)
    return letters


def synthetic_letters(n: int, seconds: float, seed: int, start: float) -> list[tuple[float, bytes]]:
    """`n` letters shaped like the edge's for junk, received evenly within `seconds` from `start`, each
    with its received_at."""
    rng = random.Random(seed)
    reasons = ("malformed", "bad_signature", "unknown_key", "wrong_kind")
    out = []
    for i in range(n):
        ip = f"{rng.randrange(1, 224)}.{rng.randrange(256)}.{rng.randrange(256)}.{rng.randrange(1, 255)}"
        path = f"/o/k1.{b64(rng, 60)}.{b64(rng, 16)}.gif"
        at = start + seconds * i / n
        out.append((at, DeadLetter(id=f"bench-{seed}-{i}", received_at=at, stage="edge", reason=reasons[i % 4],
                                   detail="junk", kind="open", method="GET", host="t.example.com", path=path,
                                   ip=ip, ua=rng.choice(UAS), edge=f"edge-{i // 4 % 2}").encode()))
    return out


def batches(letters: list[tuple[float, bytes]], max_records: int, max_seconds: float) -> list[list[bytes]]:
    """The letters in the batches the batch loop would take off hits.dlq: a batch ends at `max_records`,
    or `max_seconds` after its first letter arrived (received_at; the loop waits no longer to fill it)."""
    out: list[list[bytes]] = []
    first = 0.0
    for at, value in letters:
        if not out or len(out[-1]) >= max_records or at - first >= max_seconds:
            out.append([])
            first = at
        out[-1].append(value)
    return out


async def store(dsn: str, database: str, batched: list[list[bytes]], samples: int) -> float:
    """Every letter through the processor and writer, as hits.dlq records; returns seconds taken."""
    topics = Topics()
    processor = HitProcessor(Keyring.parse(KEY_SPEC), build_classifier(), topics, dead_letter_samples=samples)
    writer = ClickHouseWriter(dsn, database)
    started = time.perf_counter()
    offset = 0
    try:
        for n, values in enumerate(batched):
            records = [LocalRecord(topics.hits_dlq, -1, offset + j, v) for j, v in enumerate(values)]
            offset += len(values)
            # hits.dlq records ask ClickHouse nothing (no lookups): processed, then inserted
            await write_batch(writer, processor.process(records), f"bench-dlq:{n}")
    finally:
        await writer.close()
    return time.perf_counter() - started


def parts(client: Client) -> dict[str, int]:
    """bytes_on_disk of each dead-letter table's active parts."""
    sizes = dict.fromkeys(DEAD_LETTER_TABLES, 0)
    sizes.update({str(t): int(b) for t, b in client.query(
        "SELECT table, sum(bytes_on_disk) FROM system.parts WHERE database = currentDatabase() AND active "
        "AND table IN {t:Array(String)} GROUP BY table", parameters={"t": list(DEAD_LETTER_TABLES)}).result_rows})
    return sizes


def run(dsn: str, database: str, batched: list[list[bytes]], samples: int) -> dict[str, Any]:
    """Stores the letters in `database` with merges stopped, measures the parts as inserted, then merged."""
    migrate(dsn, database, 3650, 3650)
    client = connect(dsn, database)
    try:
        for table in DEAD_LETTER_TABLES:
            client.command(f"SYSTEM STOP MERGES {table}")
        seconds = asyncio.run(store(dsn, database, batched, samples))
        unmerged = parts(client)
        for table in DEAD_LETTER_TABLES:
            client.command(f"SYSTEM START MERGES {table}")
            client.command(f"OPTIMIZE TABLE {table} FINAL")
        merged = parts(client)
        stored = int(client.query("SELECT count() FROM dead_letters FINAL").result_rows[0][0])
        counted, kept = (int(x) for x in client.query(
            "SELECT sum(letters), sum(stored) FROM dead_letter_counts").result_rows[0])
    finally:
        client.close()
    return {"seconds": round(seconds, 2), "counted": counted, "stored": stored, "stored_by_counts": kept,
            "unmerged_bytes": sum(unmerged.values()), "merged_bytes": sum(merged.values()),
            "unmerged_per_table": unmerged, "merged_per_table": merged}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    defaults = Settings.model_fields
    ap.add_argument("--records", type=int, default=100_000, help="hits.dlq-shaped letters fed to the processor")
    ap.add_argument("--edge-requests", type=int, default=2_000, help="junk requests answered by the real edge")
    ap.add_argument("--seconds", type=float, default=600.0, help="the letters' received_at spread")
    ap.add_argument("--samples", type=int, default=int(defaults["dead_letter_samples"].default))
    ap.add_argument("--batch-records", type=int, default=int(defaults["batch_max_records"].default))
    ap.add_argument("--batch-ms", type=int, default=int(defaults["batch_max_ms"].default))
    ap.add_argument("--dir", type=Path, help="chDB folder (default: a temporary one)")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        dsn = f"chdb://{args.dir or Path(tmp) / 'chdb'}"
        edge = asyncio.run(edge_letters(args.edge_requests, 1)) if args.edge_requests else []
        letters = [(DeadLetter.decode(r.value or b"").received_at, r.value or b"") for r in edge]
        letters += synthetic_letters(args.records, args.seconds, 2, time.time())
        batched = batches(letters, args.batch_records, args.batch_ms / 1000)
        if len(batched) > MAX_INSERTS:
            sys.exit(f"{len(batched):,} inserts: unmerged, ClickHouse slows inserts from 1,000 parts; spread the "
                     f"letters over fewer seconds or cut batches less often (--batch-ms) for at most {MAX_INSERTS}")
        sampled = run(dsn, DATABASE, batched, args.samples)
        baseline = run(dsn, DATABASE + "_unsampled", batched, len(letters))
    result = {"letters": len(letters), "edge_letters": len(edge), "spread_s": args.seconds, "inserts": len(batched),
              "samples": args.samples, **sampled, "baseline": baseline,
              "ratio_unmerged": round(sampled["unmerged_bytes"] / baseline["unmerged_bytes"], 4),
              "ratio_merged": round(sampled["merged_bytes"] / baseline["merged_bytes"], 4)}
    print(f"{result['letters']:,} letters ({result['edge_letters']:,} from the edge) over {args.seconds:g} s in "
          f"{result['inserts']:,} inserts: {sampled['stored']:,} stored, {sampled['counted']:,} counted; "
          f"{sampled['unmerged_bytes'] / 1e6:.3f} MB unmerged, {sampled['merged_bytes'] / 1e6:.3f} MB "
          f"merged; unsampled (baseline) {baseline['unmerged_bytes'] / 1e6:.3f} MB unmerged, "
          f"{baseline['merged_bytes'] / 1e6:.3f} MB merged; ratio {result['ratio_unmerged']} unmerged, "
          f"{result['ratio_merged']} merged", file=sys.stderr)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
