"""Edge throughput and latency on one core, against a bare aiohttp handler and nginx's empty_gif.

Servers run pinned to core 0 (taskset); the load generators and the Kafka broker on core 1, so the
edge's core does the edge's work only: HTTP, token check, RawHit, journal append, queue, and its
producer task publishing to a real Kafka broker (deploy/kafka/kafka.sh in a temp folder, acks=all,
idempotence, lz4). Servers measured in the same run, with the same load:

  (a) bare:  bench/bare_gif.py, an aiohttp handler returning the GIF and nothing else
  (b) edge:  `python -m ingest.workers` (what `pixeltrack edge` runs), one worker, spool in a temp folder
  (c) nginx: `empty_gif` at /o/, one worker process, if nginx is installed (nginx_rps=na otherwise)
  and, for information, the edge with its fast path off (`edge-aiohttp`: every request through
  aiohttp's handlers, PIXELTRACK_EDGE_FAST_PATH=false); --no-aiohttp-edge skips it

Throughput: wrk (Debian's package; installed with apt-get when missing), one thread, 64 keep-alive
connections, every request a different signed pixel; --rounds rounds, servers interleaved, the median
of each taken (the machine may be shared). Latency: bench/loadgen.py holds half the edge's maximum rate
(open loop, measured from the scheduled send time, as wrk2 would) and reports p50 and p99.

The last line is machine-readable:

    edge_rps=… bare_rps=… ratio=… p50_ms=… p99_ms=… nginx_rps=…

Run: .venv/bin/python bench/bench_edge.py   (make bench-edge)
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import edge_rig as rig
from loadgen import ConstantRate, get_requests

NGINX_CONF = """
worker_processes 1;
daemon off;
pid {dir}/nginx.pid;
error_log {dir}/error.log warn;
events {{ worker_connections 4096; }}
http {{
    access_log off;
    client_body_temp_path {dir}/body; proxy_temp_path {dir}/proxy; fastcgi_temp_path {dir}/fastcgi;
    uwsgi_temp_path {dir}/uwsgi; scgi_temp_path {dir}/scgi;
    server {{
        listen 127.0.0.1:{port};
        location /o/ {{ empty_gif; add_header Cache-Control "no-store, no-cache, must-revalidate, max-age=0"; }}
    }}
}}
"""


def nginx_binary() -> str | None:
    return shutil.which("nginx") or (str(p) if (p := Path("/usr/sbin/nginx")).exists() else None)


def start_nginx(folder: Path, port: int) -> subprocess.Popen[bytes]:
    folder.mkdir(parents=True, exist_ok=True)
    conf = folder / "nginx.conf"
    conf.write_text(NGINX_CONF.format(dir=folder, port=port))
    binary = nginx_binary()
    assert binary is not None
    return rig.start_pinned([binary, "-p", str(folder), "-c", str(conf)], port, log_file=folder / "out.log")


def measure(name: str, port: int, pid: int, script: Path, seconds: float, connections: int) -> rig.WrkResult:
    url = f"http://127.0.0.1:{port}"
    rig.wrk(url, script, 2, connections)  # warm-up
    cpu0 = rig.cpu_seconds(pid)
    r = rig.wrk(url, script, seconds, connections)
    cpu = rig.cpu_seconds(pid) - cpu0
    rig.log(f"  {name:12s} {r.rps:9.0f} req/s  wrk p50 {r.p50_ms:6.2f} ms  p99 {r.p99_ms:6.2f} ms  "
            f"cpu {cpu * 1e6 / max(r.requests, 1):6.1f} us/req  {r.errors}")
    return r


def half_rate_latency(port: int, paths: list[str], rate: float, seconds: float) -> tuple[float, float, str]:
    gen = ConstantRate("127.0.0.1", port, get_requests(paths), rate=rate, duration=seconds, connections=64)
    out = rig.run_async(gen.run())
    assert out is gen.outcome
    o = gen.outcome
    settle = min(o.latencies[0][0] + 1.0, o.latencies[-1][0]) if o.latencies else 0.0  # skip the first second
    note = (f"sent {o.sent} answered {o.answered} errors {o.errors} unsent {o.unsent} "
            f"statuses {dict(sorted(o.statuses.items()))}")
    return o.percentile(50, since=settle) * 1000, o.percentile(99, since=settle) * 1000, note


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--seconds", type=float, default=10.0, help="wrk run per server and round")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--connections", type=int, default=64)
    p.add_argument("--tokens", type=int, default=20000, help="distinct pixels in the wrk script")
    p.add_argument("--latency-seconds", type=float, default=15.0, help="constant-rate run at half the max")
    p.add_argument("--keep", action="store_true", help="keep the temp folder (logs)")
    p.add_argument("--edge-env", action="append", default=[], metavar="NAME=VALUE",
                   help="extra PIXELTRACK_* setting for the edge (repeatable), e.g. PIXELTRACK_PRODUCER_LINGER_MS=20")
    p.add_argument("--skip-bare", action="store_true", help="measure the edge (and nginx) only")
    p.add_argument("--no-aiohttp-edge", dest="aiohttp_edge", action="store_false",
                   help="skip the edge with its fast path off (PIXELTRACK_EDGE_FAST_PATH=false)")
    args = p.parse_args()
    if (os.cpu_count() or 1) < 2:
        raise SystemExit("bench_edge pins servers and load to different cores: it needs 2")
    os.sched_setaffinity(0, {int(rig.LOAD_CORE)})  # this process generates load (constant-rate run)
    rig.ensure_wrk()

    tmp = Path(tempfile.mkdtemp(prefix="pixeltrack-bench-edge-"))
    procs: list[subprocess.Popen[bytes]] = []
    broker = rig.Broker(tmp / "kafka")
    try:
        rig.log(f"kafka: starting a broker in {tmp / 'kafka'} (pinned to core {rig.LOAD_CORE})")
        bootstrap = broker.start()
        prefix = "bench."
        rig.run_async(rig.create_topics(bootstrap, [f"{prefix}hits.raw", f"{prefix}hits.dlq"]))
        key_spec, keyring = rig.bench_keys()
        paths = rig.pixel_paths(keyring, args.tokens)
        script = tmp / "paths.lua"
        rig.write_wrk_script(paths, script)

        ports = {"bare": rig.free_port(), "edge": rig.free_port()}
        bare = rig.start_pinned([sys.executable, str(Path(__file__).parent / "bare_gif.py"), str(ports["bare"])],
                                ports["bare"], log_file=tmp / "bare.log")
        procs.append(bare)
        extra = dict(kv.split("=", 1) for kv in args.edge_env)
        edge = rig.start_edge(rig.edge_env(key_spec, bootstrap, tmp / "spool", prefix, **extra), ports["edge"],
                              tmp / "edge.log")
        procs.append(edge)
        servers = {"bare": bare, "edge": edge}
        if args.aiohttp_edge:
            # The same edge with its fast path off (every request through aiohttp's handlers): what the
            # fast path is worth, measured in the same rounds. Not in the last line.
            ports["edge-aiohttp"] = rig.free_port()
            off = {**extra, "PIXELTRACK_EDGE_FAST_PATH": "false", "PIXELTRACK_EDGE_ID": "bench-aiohttp"}
            env = rig.edge_env(key_spec, bootstrap, tmp / "spool-aiohttp", prefix, **off)
            servers["edge-aiohttp"] = rig.start_edge(env, ports["edge-aiohttp"], tmp / "edge-aiohttp.log")
            procs.append(servers["edge-aiohttp"])
        if nginx_binary():
            ports["nginx"] = rig.free_port()
            servers["nginx"] = start_nginx(tmp / "nginx", ports["nginx"])
            procs.append(servers["nginx"])
        else:
            rig.log("nginx: not installed (apt-get install nginx-light to compare); nginx_rps=na")

        results: dict[str, list[rig.WrkResult]] = {name: [] for name in servers}
        total_edge_requests = 0
        for r in range(args.rounds):
            rig.log(f"round {r + 1}/{args.rounds}: wrk -t1 -c{args.connections} -d{args.seconds:g}s, "
                    f"{args.tokens} distinct pixels")
            for name, proc in servers.items():
                if name == "bare" and args.skip_bare and results["bare"]:
                    continue
                res = measure(name, ports[name], proc.pid, script, args.seconds, args.connections)
                results[name].append(res)
                if name == "edge":
                    total_edge_requests += res.requests
        rps = {name: statistics.median(x.rps for x in rs) for name, rs in results.items()}

        # Every request the edge answered is a hit it must have sent to Kafka: check the books.
        deadline = time.monotonic() + 30
        while rig.metric(ports["edge"], "pixeltrack_edge_spool_bytes") > 0 and time.monotonic() < deadline:
            time.sleep(0.5)
        hits = rig.metric(ports["edge"], "pixeltrack_edge_hits_total")
        published = rig.metric(ports["edge"], "pixeltrack_edge_published_total")
        batches = rig.metric(ports["edge"], "pixeltrack_edge_publish_seconds_count")
        dropped = rig.metric(ports["edge"], "pixeltrack_edge_spool_dropped_total")
        rig.log(f"edge books: {hits:.0f} hits answered, {published:.0f} published to Kafka (acks=all) in "
                f"{batches:.0f} batches, {dropped:.0f} dropped, spool "
                f"{rig.metric(ports['edge'], 'pixeltrack_edge_spool_bytes'):.0f} bytes pending; "
                f"rss {rig.rss_mb(edge.pid):.0f} MB")

        half = rps["edge"] / 2
        rig.log(f"latency: constant {half:.0f} req/s (half the edge's max) for {args.latency_seconds:g}s, "
                "bench/loadgen.py on core 1")
        p50, p99, note = half_rate_latency(ports["edge"], paths, half, args.latency_seconds)
        rig.log(f"  edge  p50 {p50:.2f} ms  p99 {p99:.2f} ms  ({note})")
        bp50, bp99, bnote = half_rate_latency(ports["bare"], paths, rps["bare"] / 2, args.latency_seconds / 3)
        rig.log(f"  bare  p50 {bp50:.2f} ms  p99 {bp99:.2f} ms at {rps['bare'] / 2:.0f} req/s ({bnote})")

        nginx = f"{rps['nginx']:.0f}" if "nginx" in rps else "na"
        last = (f"edge_rps={rps['edge']:.0f} bare_rps={rps['bare']:.0f} ratio={rps['edge'] / rps['bare']:.3f} "
                f"p50_ms={p50:.2f} p99_ms={p99:.2f} nginx_rps={nginx}")
    finally:
        for proc in procs:
            rig.stop(proc)
        try:
            broker.stop()
        except Exception as exc:  # the figures are printed; a stuck broker is only reported
            rig.log(f"kafka: stop failed: {exc}")
        if args.keep:
            rig.log(f"kept {tmp}")
        else:
            shutil.rmtree(tmp, ignore_errors=True)
    rig.log(last)
    return 0


if __name__ == "__main__":
    sys.exit(main())
