"""The broker `make kafka` started: its address (.kafka/bootstrap in the working folder) is the default
of kafka_bootstrap, PIXELTRACK_KAFKA_BOOTSTRAP wins over it, and the banners say where it came from."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from schemas.settings import Settings


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A working folder without PIXELTRACK_KAFKA_BOOTSTRAP, where `make kafka` wrote a free port's address."""
    monkeypatch.delenv("PIXELTRACK_KAFKA_BOOTSTRAP", raising=False)
    monkeypatch.chdir(tmp_path)
    (tmp_path / ".kafka").mkdir()
    (tmp_path / ".kafka" / "bootstrap").write_text("127.0.0.1:41733\n")
    (tmp_path / ".kafka" / "broker.pid").write_text(f"{os.getpid()}\n")  # a running process stands for the broker
    return tmp_path


def test_the_address_make_kafka_wrote_is_the_default(project: Path) -> None:
    settings = Settings()
    assert settings.kafka_bootstrap == "127.0.0.1:41733"
    assert settings.kafka_bootstrap_origin() == " (from .kafka/bootstrap, written by `make kafka`)"
    assert settings.model_copy(update={"edge_port": 0}).kafka_bootstrap_origin() != ""


def test_the_environment_wins_over_it(project: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PIXELTRACK_KAFKA_BOOTSTRAP", "10.0.0.5:9092")
    settings = Settings()
    assert settings.kafka_bootstrap == "10.0.0.5:9092"
    assert settings.kafka_bootstrap_origin() == ""
    assert Settings(kafka_bootstrap="k:9092").kafka_bootstrap_origin() == ""


@pytest.mark.parametrize("content", [None, "", "\n"])
def test_without_it_the_default_is_127_0_0_1_9092(project: Path, content: str | None) -> None:
    if content is None:
        (project / ".kafka" / "bootstrap").unlink()
    else:
        (project / ".kafka" / "bootstrap").write_text(content)
    settings = Settings()
    assert settings.kafka_bootstrap == "127.0.0.1:9092"
    assert settings.kafka_bootstrap_origin() == ""


@pytest.mark.parametrize("stopped", ["no pid file", "a pid that ended", "junk"])
def test_a_stopped_broker_s_address_is_not_the_default(project: Path, stopped: str) -> None:
    """`make kafka-stop` removes the pid file and keeps the address (a restart reuses it): an address left
    behind must not send the commands to a port nobody listens on, ahead of 127.0.0.1:9092."""
    pid_file = project / ".kafka" / "broker.pid"
    if stopped == "no pid file":
        pid_file.unlink()
    elif stopped == "junk":
        pid_file.write_text("x\n")
    else:
        ended = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True,
                               text=True, check=True)
        pid_file.write_text(ended.stdout)
    assert Settings().kafka_bootstrap == "127.0.0.1:9092"


def test_every_banner_says_it(project: Path) -> None:
    from ingest.workers import edge_banner
    from pixeltrack.compose.process import banner
    from pixeltrack.compose.services import api_banner, triggers_banner
    from processors.triggers.rules import parse_rules

    settings = Settings()
    rules = parse_rules('[webhooks.crm]\nurl = "https://crm.example.com/h"\nsecret = "0123456789abcdef"\n'
                        '[recipient_events]\nwebhook = "crm"\n')
    said = " (from .kafka/bootstrap, written by `make kafka`)"
    for line in (banner(settings), api_banner(settings), triggers_banner(settings, rules, Path("r.toml")),
                 edge_banner(settings)):
        assert f"Kafka 127.0.0.1:41733{said}" in line
