"""What junk costs on disk: dead letters from a flood of bad requests, through the real processor into chDB.

1. The edge: --edge-requests junk fetches (random paths, token-shaped random tokens, forged signatures,
   wrong kinds, malformed paths) answered by the real edge app (aiohttp test server on 127.0.0.1), its
   dead letters taken from its publisher.
2. hits.dlq-shaped letters straight into the processor: --records letters like the edge's (random
   token-shaped paths, addresses and user agents; four reasons; two edges), received within --seconds
   (a burst: 3 s, as in the audit that found 40,000 junk requests in 2.8 s; --seconds 3600 spreads them
   over an hour, the worst case for sampling by minute).

Both go through HitProcessor and ClickHouseWriter (batches of 20,000, as the runner's) into chDB, then
OPTIMIZE … FINAL, and the dead-letter tables (dead_letters, dead_letter_counts) are measured as
system.parts bytes_on_disk of their active parts. The last line is JSON:

    {"letters": …, "counted": …, "stored": …, "bytes_on_disk": …, "per_table": {…}, "seconds": …}

Run: .venv/bin/python bench/bench_dead_letters.py [--records 100000] [--edge-requests 2000] [--samples 10]
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

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from aiohttp.test_utils import TestClient, TestServer

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
BATCH = 20_000
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
    settings = Settings(_env_file=None, signing_keys=KEY_SPEC, edge_id="edge-bench", spool_dir=None)  # type: ignore[call-arg]
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


def synthetic_letters(n: int, seconds: float, seed: int, start: float) -> list[bytes]:
    """`n` letters shaped like the edge's for junk, received evenly within `seconds` from `start`."""
    rng = random.Random(seed)
    reasons = ("malformed", "bad_signature", "unknown_key", "wrong_kind")
    out = []
    for i in range(n):
        ip = f"{rng.randrange(1, 224)}.{rng.randrange(256)}.{rng.randrange(256)}.{rng.randrange(1, 255)}"
        path = f"/o/k1.{b64(rng, 60)}.{b64(rng, 16)}.gif"
        out.append(DeadLetter(id=f"bench-{seed}-{i}", received_at=start + seconds * i / n, stage="edge",
                              reason=reasons[i % 4], detail="junk", kind="open", method="GET",
                              host="t.example.com", path=path, ip=ip, ua=rng.choice(UAS),
                              edge=f"edge-{i % 2}").encode())
    return out


async def store(dsn: str, values: list[bytes], samples: int) -> float:
    """Every letter through the processor and writer, as hits.dlq records; returns seconds taken."""
    topics = Topics()
    processor = HitProcessor(Keyring.parse(KEY_SPEC), build_classifier(), topics, dead_letter_samples=samples)
    writer = ClickHouseWriter(dsn, DATABASE)
    started = time.perf_counter()
    try:
        for n, i in enumerate(range(0, len(values), BATCH)):
            records = [LocalRecord(topics.hits_dlq, -1, i + j, v) for j, v in enumerate(values[i:i + BATCH])]
            # hits.dlq records ask ClickHouse nothing (no lookups): processed, then inserted
            await write_batch(writer, processor.process(records), f"bench-dlq:{n}")
    finally:
        await writer.close()
    return time.perf_counter() - started


def measure(dsn: str) -> dict[str, object]:
    client = connect(dsn, DATABASE)
    try:
        for table in DEAD_LETTER_TABLES:
            client.command(f"OPTIMIZE TABLE {table} FINAL")
        per_table = {str(t): int(b) for t, b in client.query(
            "SELECT table, sum(bytes_on_disk) FROM system.parts WHERE database = currentDatabase() AND active "
            "AND table IN {t:Array(String)} GROUP BY table", parameters={"t": list(DEAD_LETTER_TABLES)}).result_rows}
        stored = int(client.query("SELECT count() FROM dead_letters FINAL").result_rows[0][0])
        counted, kept = (int(x) for x in client.query(
            "SELECT sum(letters), sum(stored) FROM dead_letter_counts").result_rows[0])
    finally:
        client.close()
    return {"counted": counted, "stored": stored, "stored_by_counts": kept, "bytes_on_disk": sum(per_table.values()),
            "per_table": per_table}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--records", type=int, default=100_000, help="hits.dlq-shaped letters fed to the processor")
    ap.add_argument("--edge-requests", type=int, default=2_000, help="junk requests answered by the real edge")
    ap.add_argument("--seconds", type=float, default=3.0, help="the letters' received_at spread")
    ap.add_argument("--samples", type=int, default=int(Settings.model_fields["dead_letter_samples"].default))
    ap.add_argument("--dir", type=Path, help="chDB folder (default: a temporary one)")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        dsn = f"chdb://{args.dir or Path(tmp) / 'chdb'}"
        migrate(dsn, DATABASE, 3650, 3650)
        edge = asyncio.run(edge_letters(args.edge_requests, 1)) if args.edge_requests else []
        values = [r.value for r in edge] + synthetic_letters(args.records, args.seconds, 2, time.time())
        seconds = asyncio.run(store(dsn, values, args.samples))
        result = {"letters": len(values), "edge_letters": len(edge), "samples": args.samples,
                  "seconds": round(seconds, 2), **measure(dsn)}
    print(f"{result['letters']:,} letters ({result['edge_letters']:,} from the edge) in {result['seconds']} s: "
          f"{result['stored']:,} stored, {result['counted']:,} counted, "
          f"{int(result['bytes_on_disk']) / 1e6:.3f} MB on disk {result['per_table']}", file=sys.stderr)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
