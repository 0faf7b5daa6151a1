"""The SDK's ingest API client retries what the API says may be retried, and nothing else."""

from __future__ import annotations

import json
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler

import pytest

from pixeltrack.sender.sdk import ApiClient, ApiError
from schemas.sends import Send
from tests.plugins.http import http_server


@pytest.fixture
def api() -> Iterator[tuple[str, list[int]]]:
    """An API on 127.0.0.1 answering the statuses queued in `answers` (then 202), on its own thread."""
    answers: list[int] = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            status = answers.pop(0) if answers else 202
            out = json.dumps({"accepted": len(body["sends"])} if status == 202 else {"error": "busy"}).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(out)))
            if status != 202:
                self.send_header("Retry-After", "0")
            self.end_headers()
            self.wfile.write(out)

        def log_message(self, *args: object) -> None:
            return None

    with http_server(Handler) as url:
        yield url, answers


SENDS = [Send("", "c", "A", f"m{i}", f"r{i}", 1_790_000_000.0) for i in range(3)]


def test_a_busy_api_is_tried_again(api: tuple[str, list[int]]) -> None:
    url, answers = api
    answers += [503, 429]
    waits: list[float] = []
    assert ApiClient(url, "k", sleep=waits.append).register_sends(SENDS) == 3
    assert waits == [0.0, 0.0]  # Retry-After: 0 honoured


def test_a_refusal_is_not_retried_and_a_lasting_failure_says_what_was_registered(api: tuple[str, list[int]]) -> None:
    url, answers = api
    answers += [422]
    waits: list[float] = []
    with pytest.raises(ApiError, match="HTTP 422") as refused:
        ApiClient(url, "k", sleep=waits.append).register_sends(SENDS)
    assert waits == []
    assert "0 of 3 sends were registered" in str(refused.value)
    answers += [503] * 5
    with pytest.raises(ApiError, match="HTTP 503"):
        ApiClient(url, "k", attempts=5, sleep=waits.append).register_sends(SENDS)
    assert len(waits) == 4
    with pytest.raises(ApiError, match="no answer"):
        ApiClient("http://127.0.0.1:9", "k", attempts=2, sleep=waits.append).register_sends(SENDS)


def test_the_sdks_former_import_path_gives_the_same_names() -> None:
    import pixeltrack.sdk
    import pixeltrack.sender.sdk

    assert pixeltrack.sdk.Tracker is pixeltrack.sender.sdk.Tracker
    assert pixeltrack.sdk.ApiClient is pixeltrack.sender.sdk.ApiClient
