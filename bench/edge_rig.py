"""The pieces the edge benchmarks share: a Kafka broker in a temp folder, servers pinned to a core,
wrk, minted tokens, /proc readings. Everything listens and is loaded on 127.0.0.1 only."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import os
import re
import shutil
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from schemas.tokens import Keyring, TokenPayload  # noqa: E402

KAFKA_SH = ROOT / "deploy" / "kafka" / "kafka.sh"
SERVER_CORE = "0"  # servers under test
LOAD_CORE = "1"  # load generators (and the Kafka broker, so the edge's core is the edge's alone)


def log(line: str) -> None:
    print(line, flush=True)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def ensure_wrk() -> str:
    """wrk from Debian's packages; installed (we are root in the bench's machines) when missing."""
    found = shutil.which("wrk")
    if found:
        return found
    log("wrk not found: apt-get update && apt-get install -y wrk")
    subprocess.run(["apt-get", "update", "-qq"], check=True, stdout=subprocess.DEVNULL)
    subprocess.run(["apt-get", "install", "-y", "-qq", "wrk"], check=True, stdout=subprocess.DEVNULL,
                   env={**os.environ, "DEBIAN_FRONTEND": "noninteractive"})
    found = shutil.which("wrk")
    if not found:
        raise SystemExit("wrk could not be installed")
    return found


def pin(pid: int, core: str) -> None:
    """Pins every thread of a running process (a JVM's included) to `core`."""
    subprocess.run(["taskset", "-a", "-p", "-c", core, str(pid)], check=True, stdout=subprocess.DEVNULL)


BROKER_NICE = 10


def yield_to_load(pid: int) -> None:
    """Lowers every thread of the broker to nice BROKER_NICE. With two cores the broker shares the load
    generator's: at its default weight a burst of broker work (a produce request, a log roll, its GC)
    holds the load generator for milliseconds, and an open-loop generator charges that delay to the
    server under test. Niced, the broker still gets all the time the generator leaves (it keeps up with
    the edge: the books at the end check every hit reached it), and the generator runs when it must.
    The servers' core is not touched."""
    for task in Path(f"/proc/{pid}/task").iterdir():
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.setpriority(os.PRIO_PROCESS, int(task.name), BROKER_NICE)


class Broker:
    """A real Kafka broker (deploy/kafka/kafka.sh) in `folder`, pinned to the load generators' core."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.bootstrap = ""

    def start(self) -> str:
        out = subprocess.run([str(KAFKA_SH), "start", str(self.folder)], check=True, capture_output=True,
                             text=True, timeout=240)
        self.bootstrap = out.stdout.strip().splitlines()[-1]
        pid = int((self.folder / "broker.pid").read_text())
        pin(pid, LOAD_CORE)
        yield_to_load(pid)
        return self.bootstrap

    def stop(self) -> None:
        subprocess.run([str(KAFKA_SH), "stop", str(self.folder)], check=True, timeout=120)


async def create_topics(bootstrap: str, names: list[str], partitions: int = 4) -> None:
    from aiokafka.admin import AIOKafkaAdminClient, NewTopic

    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(n, num_partitions=partitions, replication_factor=1) for n in names])
    finally:
        await admin.close()


def bench_keys() -> tuple[str, Keyring]:
    secret = os.urandom(32)
    spec = f"b1:{base64.urlsafe_b64encode(secret).decode().rstrip('=')}"
    return spec, Keyring.parse(spec)


def pixel_paths(keyring: Keyring, n: int, run: str = "bench") -> list[str]:
    """n pixel paths, each for its own message (so hits spread over partitions like real traffic)."""
    now = int(time.time() * 1000)
    return [f"/o/{keyring.mint(TokenPayload('open', '', run, 'A', f'{run}-m{i}', f'r{i}', now))}.gif"
            for i in range(n)]


def write_wrk_script(paths: list[str], file: Path) -> None:
    """A wrk Lua script cycling through `paths` (each request a different token)."""
    quoted = ",".join(f'"{p}"' for p in paths)
    file.write_text(
        f"paths = {{{quoted}}}\n"
        "i = math.random(#paths)\n"
        "request = function()\n"
        "  i = i + 1\n"
        "  if i > #paths then i = 1 end\n"
        '  return wrk.format("GET", paths[i], {["User-Agent"] = "wrk", ["Accept"] = "image/*"})\n'
        "end\n")


@dataclass
class WrkResult:
    rps: float
    requests: int
    p50_ms: float
    p99_ms: float
    errors: str


def _ms(text: str) -> float:
    m = re.match(r"([\d.]+)(us|ms|s)", text)
    if not m:
        return float("nan")
    value, unit = float(m.group(1)), m.group(2)
    return value / 1000 if unit == "us" else value * 1000 if unit == "s" else value


def wrk(url: str, script: Path, seconds: float, connections: int = 64) -> WrkResult:
    """wrk with one thread on the load core; as many requests as the server answers."""
    assert url.startswith("http://127.0.0.1:"), "load goes to this machine only"
    out = subprocess.run(["taskset", "-c", LOAD_CORE, "wrk", "-t1", f"-c{connections}", f"-d{seconds:g}s",
                          "--latency", "-s", str(script), url], check=True, capture_output=True, text=True,
                         timeout=seconds + 60).stdout
    return parse_wrk(out)


def parse_wrk(out: str) -> WrkResult:
    """wrk's summary: rate and count, p50/p99 from the "Latency Distribution" block alone (the thread
    stats above it end in a "+/- Stdev" percentage such as 87.99%, which is no percentile)."""
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    requests = int(re.search(r"(\d+) requests in", out).group(1))  # type: ignore[union-attr]
    percentiles: dict[str, float] = {}
    _, found, rest = out.partition("Latency Distribution")
    if found:
        for line in rest.splitlines()[1:]:
            m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)%\s+(\S+)\s*", line)
            if m is None:
                break  # the block ends at the first line that is not "<percent>% <latency>"
            percentiles[m.group(1)] = _ms(m.group(2))
    errors = re.search(r"Socket errors: (.*)|Non-2xx or 3xx responses: (\d+)", out)
    return WrkResult(rps, requests, percentiles.get("50", float("nan")), percentiles.get("99", float("nan")),
                     errors.group(0) if errors else "")


def cpu_seconds(pid: int) -> float:
    """CPU seconds (user + system) of `pid` and its live children (nginx's worker, say, under its master;
    `taskset` execs the server, so the pid is the server's own)."""
    total = 0
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:  # gone meanwhile
            continue
        if stat.parent.name == str(pid) or fields[1] == str(pid):  # fields[1]: the parent's pid
            total += int(fields[11]) + int(fields[12])
    return total / os.sysconf("SC_CLK_TCK")


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def wait_listening(port: int, proc: subprocess.Popen[bytes], timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        if proc.poll() is not None:
            raise SystemExit(f"server exited with {proc.returncode} before listening on {port}")
        try:
            socket.create_connection(("127.0.0.1", port), 0.5).close()
            return
        except OSError:
            if time.monotonic() > deadline:
                raise SystemExit(f"nothing listens on {port} after {timeout}s") from None
            time.sleep(0.1)


def start_pinned(cmd: list[str], port: int, env: dict[str, str] | None = None, log_file: Path | None = None,
                 core: str = SERVER_CORE) -> subprocess.Popen[bytes]:
    with open(log_file or os.devnull, "ab") as out:
        proc = subprocess.Popen(["taskset", "-c", core, *cmd], env={**os.environ, **(env or {})}, cwd=ROOT,
                                stdout=out, stderr=subprocess.STDOUT)
    wait_listening(port, proc)
    return proc


def edge_env(key_spec: str, bootstrap: str, spool: Path, prefix: str, **extra: str) -> dict[str, str]:
    env = {"PIXELTRACK_SIGNING_KEYS": key_spec, "PIXELTRACK_KAFKA_BOOTSTRAP": bootstrap,
           "PIXELTRACK_SPOOL_DIR": str(spool), "PIXELTRACK_TOPIC_PREFIX": prefix, "PIXELTRACK_EDGE_ID": "bench",
           "PYTHONPATH": str(ROOT)}
    env.update(extra)
    return env


def start_edge(env: dict[str, str], port: int, log_file: Path, workers: int = 1) -> subprocess.Popen[bytes]:
    return start_pinned([sys.executable, "-m", "ingest.workers", "--workers", str(workers), "--host",
                         "127.0.0.1", "--port", str(port)], port, env, log_file)


def metric(port: int, name: str) -> float:
    """A metric of the server on `port`, summed over its series (0 when absent)."""
    import urllib.request

    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as resp:
        text = resp.read().decode()
    total = 0.0
    for line in text.splitlines():
        if line.startswith(name) and line[len(name):len(name) + 1] in (" ", "{"):
            total += float(line.rsplit(" ", 1)[1])
    return total


def stop(proc: subprocess.Popen[bytes], timeout: float = 30.0) -> int:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    return proc.returncode


def run_async(coro: object) -> object:
    try:
        import uvloop

        return uvloop.run(coro)  # type: ignore[arg-type]
    except ImportError:
        return asyncio.run(coro)  # type: ignore[arg-type]
