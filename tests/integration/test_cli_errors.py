"""Mistakes a new user makes with `pixeltrack`: each is told in one or two lines, exit code non-zero, no
traceback, and nothing is created or left behind (real processes, a real serve, chDB)."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
KEYS = "k1:ZXJyb3JzLXRlc3Qtc2lnbmluZy1rZXktMDEyMzQ1Njc"


def clean_env(**extra: str) -> dict[str, str]:
    """No PIXELTRACK_* from the caller; this checkout's code first on the path (whatever the cwd)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PIXELTRACK_")}
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    env.update(extra)
    return env


def tree(folder: Path) -> set[str]:
    return {str(p.relative_to(folder)) for p in folder.rglob("*")}


def refused(cwd: Path, *args: str, **env: str) -> str:
    """Runs `pixeltrack ARGS` in `cwd`; asserts the one-line refusal and that nothing under `cwd` changed."""
    before = tree(cwd)
    out = subprocess.run([sys.executable, "-m", "pixeltrack.cli", *args], cwd=cwd, env=clean_env(**env),
                         capture_output=True, text=True, timeout=120)
    lines = out.stderr.strip().splitlines()
    assert out.returncode != 0, out
    assert "Traceback" not in out.stderr
    assert 1 <= len(lines) <= 2, out.stderr
    assert len(lines) + len(out.stdout.strip().splitlines()) <= 2, out  # a banner and one line, at most
    assert lines[0].startswith(f"pixeltrack {args[0]}: "), out.stderr
    assert tree(cwd) == before
    return out.stderr


LINK = ("--base-url", "http://t.example", "--campaign", "c", "--message", "m", "--recipient", "r@example.com")


@pytest.mark.parametrize("command", [
    ("query", "SELECT 1"), ("report", "--campaign", "c"), ("forget", "--recipient", "r@example.com", "--tenant", ""),
    ("link", *LINK)])
def test_a_data_folder_that_is_not_there_is_named_and_not_created(tmp_path: Path, command: tuple[str, ...]) -> None:
    message = refused(tmp_path, *command, "--data", "no-such-folder")
    assert "--data no-such-folder: no such folder" in message


@pytest.mark.parametrize("command", [
    ("query", "SELECT 1"), ("report", "--campaign", "c"), ("forget", "--recipient", "r@example.com", "--tenant", "")])
def test_a_folder_that_is_not_a_serve_data_folder(tmp_path: Path, command: tuple[str, ...]) -> None:
    (tmp_path / "notes").mkdir()
    assert "not a serve data folder (no chdb/ in it)" in refused(tmp_path, *command, "--data", "notes")


def test_link_does_not_create_a_signing_key_serve_would_not_know(tmp_path: Path) -> None:
    (tmp_path / "notes").mkdir()
    assert "no signing key in notes (signing.key)" in refused(tmp_path, "link", *LINK, "--data", "notes")


def test_instrument_neither_creates_a_data_folder_nor_a_key_serve_would_not_know(tmp_path: Path) -> None:
    """Its links are signed for an edge to verify: a key made up in a folder no serve uses verifies nowhere."""
    (tmp_path / "email.html").write_text('<p><a href="https://shop.example/">Shop</a></p>')
    (tmp_path / "list.csv").write_text("recipient\nr-1\n")
    command = ("instrument", "email.html", "--campaign", "c", "--recipients", "list.csv", "--out", "out",
               "--base-url", "http://t.example")
    assert "--data no-such-folder: no such folder" in refused(tmp_path, *command, "--data", "no-such-folder")
    (tmp_path / "notes").mkdir()
    assert "no signing key in notes (signing.key)" in refused(tmp_path, *command, "--data", "notes")


@pytest.mark.parametrize("command", [("query", "SELECT 1"), ("report", "--campaign", "c")])
def test_readers_outside_a_project_folder_create_no_chdb(tmp_path: Path, command: tuple[str, ...]) -> None:
    message = refused(tmp_path, *command)
    assert "no pixeltrack data here (.pixeltrack/chdb does not exist)" in message
    assert not (tmp_path / ".pixeltrack").exists()


@pytest.mark.parametrize("command", ["process", "migrate"])
def test_no_clickhouse_server_is_one_line_naming_it_without_credentials(tmp_path: Path, command: str) -> None:
    message = refused(tmp_path, command, "--clickhouse", "http://pixeltrack:s3cret@127.0.0.1:1",
                      PIXELTRACK_SIGNING_KEYS=KEYS)
    assert message.strip() == (f"pixeltrack {command}: cannot reach ClickHouse at http://127.0.0.1:1: "
                               "[Errno 111] Connection refused")


def test_process_without_kafka_is_one_line_and_creates_no_chdb(tmp_path: Path) -> None:
    """Its defaults (chDB in .pixeltrack/) and no broker: Kafka is checked before anything is created."""
    message = refused(tmp_path, "process", PIXELTRACK_SIGNING_KEYS=KEYS, PIXELTRACK_KAFKA_BOOTSTRAP="127.0.0.1:1")
    assert message.strip() == ("pixeltrack process: cannot reach Kafka at 127.0.0.1:1: start it (`make kafka`, see "
                               "docs/production.md) or set PIXELTRACK_KAFKA_BOOTSTRAP")
    assert not (tmp_path / ".pixeltrack").exists()


@pytest.fixture(scope="module")
def running_serve(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, dict[str, object]]]:
    """A serve on PROJECT/.pixeltrack (its default folder), every port chosen by the system."""
    project = tmp_path_factory.mktemp("project")
    log = project.parent / f"{project.name}-serve.log"
    with open(log, "w") as out:
        proc = subprocess.Popen([sys.executable, "-m", "pixeltrack.cli", "serve", "--port", "0", "--api-port", "0",
                                 "--dashboard-port", "0"], cwd=project, env=clean_env(), stdout=out,
                                stderr=subprocess.STDOUT)
    state = project / ".pixeltrack" / "serve.json"
    deadline = time.monotonic() + 90
    while not state.exists():
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            raise AssertionError(f"serve did not start: {log.read_text()}")
        time.sleep(0.1)
    try:
        yield project, json.loads(state.read_text())
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(60)
    assert "Traceback" not in log.read_text()


def test_a_second_serve_on_the_folder_names_the_running_one(running_serve: tuple[Path, dict[str, object]]) -> None:
    project, info = running_serve
    message = refused(project, "serve", "--port", "0", "--api-port", "0", "--dashboard-port", "0")
    assert f"a serve already runs on .pixeltrack (pid {info['pid']}, dashboard {info['dashboard_url']}/" in message


def test_process_refuses_the_chdb_a_running_serve_owns(running_serve: tuple[Path, dict[str, object]]) -> None:
    project, info = running_serve
    message = refused(project, "process", PIXELTRACK_SIGNING_KEYS=KEYS)  # its default DSN: chdb://.pixeltrack/chdb
    assert f"belongs to the running serve (pid {info['pid']}" in message
    assert "a ClickHouse server" in message


def test_query_without_data_goes_through_the_serve_of_this_folder(
        running_serve: tuple[Path, dict[str, object]]) -> None:
    project, _ = running_serve
    out = subprocess.run([sys.executable, "-m", "pixeltrack.cli", "query", "SELECT 6 * 7 AS answer", "--format", "csv"],
                         cwd=project, env=clean_env(), capture_output=True, text=True, timeout=120)
    assert (out.returncode, out.stdout) == (0, "answer\n42\n"), out.stderr


@pytest.mark.parametrize("where", [("--clickhouse", "chdb://.pixeltrack/chdb"), ()])
def test_readers_naming_the_serve_chdb_go_through_the_serve(
        running_serve: tuple[Path, dict[str, object]], where: tuple[str, ...]) -> None:
    """Not chDB opened beside the serve: it would take the folder from the serve's own writes."""
    project, _ = running_serve
    out = subprocess.run([sys.executable, "-m", "pixeltrack.cli", "forget", "--recipient", "r-1", "--tenant", "",
                          *where], cwd=project, env=clean_env(), capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    out = subprocess.run([sys.executable, "-m", "pixeltrack.cli", "query", "SELECT 6 * 7 AS answer", "--format", "csv",
                          *where], cwd=project, env=clean_env(), capture_output=True, text=True, timeout=120)
    assert (out.returncode, out.stdout) == (0, "answer\n42\n"), out.stderr


@pytest.fixture
def held_chdb(tmp_path: Path) -> Iterator[tuple[Path, int]]:
    """A serve data folder (tmp_path/held) whose chDB another process holds: (the folder, its pid)."""
    folder = tmp_path / "held"
    folder.mkdir()
    hold = ("import sys, time; from processors.clickhouse import connect; "
            "client = connect(f'chdb://{sys.argv[1]}/chdb', None); print('held', flush=True); time.sleep(120)")
    proc = subprocess.Popen([sys.executable, "-c", hold, str(folder)], env=clean_env(), stdout=subprocess.PIPE,
                            text=True)
    try:
        assert proc.stdout is not None
        assert proc.stdout.readline() == "held\n"
        (tmp_path / "work").mkdir()
        yield folder, proc.pid
    finally:
        proc.kill()
        proc.communicate()


@pytest.mark.parametrize("command", [("query", "SELECT 1"), ("report", "--campaign", "c")])
def test_a_reader_on_a_chdb_another_process_holds_names_it_in_one_line(
        held_chdb: tuple[Path, int], command: tuple[str, ...]) -> None:
    folder, pid = held_chdb
    message = refused(folder.parent / "work", *command, "--data", str(folder))
    assert message.strip() == (f"pixeltrack {command[0]}: chDB at {folder / 'chdb'} is held by process {pid} (chDB "
                               "is one process's at a time): retry once it ends, or use a ClickHouse server "
                               "(--clickhouse http://HOST:8123)")


@pytest.mark.parametrize("flag", ["--port", "--api-port", "--dashboard-port"])
def test_serve_on_a_port_in_use_names_it_and_leaves_no_key(tmp_path: Path, flag: str) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        ports = {"--port": "0", "--api-port": "0", "--dashboard-port": "0", flag: str(port)}
        message = refused(tmp_path, "serve", *[x for kv in ports.items() for x in kv])
    assert f"port {port} on 127.0.0.1 is not free (Address already in use)" in message
    assert f"give {flag} PORT" in message
    assert not (tmp_path / ".pixeltrack").exists()


def test_the_dashboard_on_a_port_in_use_names_it(tmp_path: Path) -> None:
    (tmp_path / "chdb").mkdir()  # a chDB folder that is not there is refused before the port is tried
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        message = refused(tmp_path, "dashboard", "--clickhouse", f"chdb://{tmp_path / 'chdb'}", "--port", str(port))
    assert message.strip() == (f"pixeltrack dashboard: port {port} on 127.0.0.1 is not free (Address already in use): "
                               "stop what holds it, or give --port PORT")


def test_serve_on_a_data_path_that_is_a_file_says_so(tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("not a folder\n")
    message = refused(tmp_path, "serve", "--data", "notes.txt", "--port", "0", "--api-port", "0",
                      "--dashboard-port", "0")
    assert "--data notes.txt is a file, not a folder" in message


def test_the_edge_on_a_port_in_use_names_it_and_leaves_no_spool(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        message = refused(tmp_path, "edge", "--host", "127.0.0.1", "--port", str(port), PIXELTRACK_SIGNING_KEYS=KEYS,
                          PIXELTRACK_SPOOL_DIR=str(tmp_path / "spool"), PIXELTRACK_KAFKA_BOOTSTRAP="127.0.0.1:1")
    assert message.strip() == (f"pixeltrack edge: port {port} on 127.0.0.1 is not free (Address already in use): "
                               "stop what holds it, or give --port PORT (or PIXELTRACK_EDGE_PORT)")
    assert not (tmp_path / "spool").exists()


def test_the_dashboard_refuses_a_data_folder_that_is_not_there(tmp_path: Path) -> None:
    assert "--data nope: no such folder" in refused(tmp_path, "dashboard", "--data", "nope", "--port", "0")
    (tmp_path / "notes").mkdir()
    assert "not a serve data folder (no chdb/ in it)" in refused(tmp_path, "dashboard", "--data", "notes",
                                                                 "--port", "0")


def test_migrate_refuses_a_data_folder_that_is_not_there_and_migrates_a_fresh_one(tmp_path: Path) -> None:
    assert "--data nope: no such folder" in refused(tmp_path, "migrate", "--data", "nope")
    (tmp_path / "fresh").mkdir()
    out = subprocess.run([sys.executable, "-m", "pixeltrack.cli", "migrate", "--data", "fresh"], cwd=tmp_path,
                         env=clean_env(), capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.startswith("applied: ")
    assert (tmp_path / "fresh" / "chdb").is_dir()


def test_the_api_on_a_port_in_use_names_it(tmp_path: Path) -> None:
    """Before Kafka is asked (no broker here either): the port is what the user must change."""
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        message = refused(tmp_path, "api", "--port", str(port), PIXELTRACK_SIGNING_KEYS=KEYS,
                          PIXELTRACK_KAFKA_BOOTSTRAP="127.0.0.1:1")
    assert message.strip() == (f"pixeltrack api: port {port} on 127.0.0.1 is not free (Address already in use): "
                               "stop what holds it, or give --port PORT (or PIXELTRACK_API_PORT)")


def test_the_api_without_kafka_is_one_line(tmp_path: Path) -> None:
    message = refused(tmp_path, "api", "--port", "0", PIXELTRACK_SIGNING_KEYS=KEYS,
                      PIXELTRACK_KAFKA_BOOTSTRAP="127.0.0.1:1")
    assert message.strip() == ("pixeltrack api: cannot reach Kafka at 127.0.0.1:1: start it (`make kafka`, see "
                               "docs/production.md) or set PIXELTRACK_KAFKA_BOOTSTRAP")


def test_triggers_without_kafka_is_one_line(tmp_path: Path) -> None:
    (tmp_path / "rules.toml").write_text('[webhooks.crm]\nurl = "https://crm.example.com/h"\n'
                                         'secret = "0123456789abcdef"\n[[rules]]\nname = "a"\ntype = "first_open"\n'
                                         'webhook = "crm"\n')
    message = refused(tmp_path, "triggers", "--rules", "rules.toml", PIXELTRACK_KAFKA_BOOTSTRAP="127.0.0.1:1")
    assert message.strip() == ("pixeltrack triggers: cannot reach Kafka at 127.0.0.1:1: start it (`make kafka`, see "
                               "docs/production.md) or set PIXELTRACK_KAFKA_BOOTSTRAP")


@pytest.mark.parametrize("command", [("query", "SELECT 1"), ("report", "--campaign", "c"),
                                     ("forget", "--recipient", "r-1", "--tenant", "")])
def test_a_chdb_dsn_that_is_not_there_is_named_and_not_created(tmp_path: Path, command: tuple[str, ...]) -> None:
    message = refused(tmp_path, *command, "--clickhouse", "chdb://no-such-chdb", PIXELTRACK_SIGNING_KEYS=KEYS)
    assert "no-such-chdb does not exist" in message


@pytest.mark.parametrize("command", [("query", "SELECT 1"), ("report", "--campaign", "c"),
                                     ("forget", "--recipient", "r-1", "--tenant", "")])
def test_a_chdb_folder_without_pixeltrack_s_tables_says_migrate(tmp_path: Path, command: tuple[str, ...]) -> None:
    subprocess.run([sys.executable, "-c", "import sys; from processors.clickhouse import connect; "
                    "connect(sys.argv[1], None).close()", f"chdb://{tmp_path / 'empty'}"], env=clean_env(),
                   check=True, timeout=120)  # a chDB folder that was opened, never migrated
    message = refused(tmp_path, *command, "--clickhouse", f"chdb://{tmp_path / 'empty'}", PIXELTRACK_SIGNING_KEYS=KEYS)
    assert "no pixeltrack database" in message
    assert "pixeltrack migrate" in message
