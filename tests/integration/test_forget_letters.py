"""`forget` and the processors decide which dead letters name a recipient by one rule: whatever the shape
of the path the edge kept, what forget deletes is what the processors drop afterwards."""

from __future__ import annotations

import itertools
import os
from pathlib import Path

import pytest

from pixeltrack.cli import main
from pixeltrack.serve_state import TRIGGER_FOLDERS, chdb_dsn
from processors.classify_file import build_classifier
from processors.clickhouse import migrate
from processors.local_runner import LocalRecord
from processors.pipeline import HitProcessor
from processors.privacy import forget
from processors.triggers.service import STATE_FILE
from processors.writer import ClickHouseWriter
from schemas.privacy import keyed_recipient_hash, recipient_key
from schemas.records import DeadLetter
from schemas.tokens import ClickRef, Keyring, PreferencesRef, TokenPayload, mint_click_ref, mint_preferences
from schemas.topics import Topics
from tests.integration.writers import process_and_write
from tests.plugins.clickhouse import ClickHouseDb
from tests.unit.processors.builders import CHROME, SENT

T = Topics()
# A key id of 8 or more characters: "/o/x.<token>" then reads like kid "x", payload "<kid>", tag "<payload>".
LONG_KID = Keyring({"key-2026-spring": b"long-kid-secret-0123456789ab"}, "key-2026-spring")


def every_char_encoded(text: str, times: int) -> str:
    """`text` with every character percent-encoded, then the result encoded again `times - 1` times."""
    out = "".join(f"%{ord(c):02X}" for c in text)
    for _ in range(times - 1):
        out = out.replace("%", "%25")
    return out


def shapes(keyring: Keyring, who: str, bystander: str) -> list[tuple[str, str]]:
    """(reason, path) of letters the edge keeps for fetches of `who`'s tokens, in the shapes that do not
    follow /<kind>/<token>: a token in the query, after another's token, after an empty segment, a
    token encoded three times, after a word and a dot; and tokens of other kinds."""

    def tok(ring: Keyring = keyring, kind: str = "open", recipient: str = who) -> str:
        url = "https://shop.example.com/a" if kind == "click" else ""
        return ring.mint(TokenPayload(kind, "", "c", "A", f"m-{recipient}", recipient,  # type: ignore[arg-type]
                                      int(SENT * 1000), 0, url))

    return [
        ("malformed", f"/o/x.gif?t={tok()}"),
        ("bad_signature", f"/o/{tok(recipient=bystander)}/{tok()}"),
        ("malformed", f"/o//{tok()}.gif"),
        ("malformed", f"/c/junk?u={tok(kind='click')}"),
        ("malformed", "/o/" + every_char_encoded(tok(), 3) + ".gif"),
        ("malformed", "/o/" + tok().replace(".", "%25252E")),
        ("unknown_key", f"/o/x.{tok(LONG_KID)}"),
        ("malformed", f"/o/{tok()}.gif&{tok(kind='click')}"),
        # a preferences link that expired, a click id a site beacon carried: payloads of other shapes
        ("expired", "/p/" + mint_preferences(keyring, PreferencesRef("", who, "c", f"m-{who}", expires_at=1))),
        ("malformed", "/s/v?cid=" + mint_click_ref(keyring, ClickRef("", "c", "A", f"m-{who}", who, "h-1", "l"))),
    ]


def letters(keyring: Keyring, who: str, bystander: str, offsets: itertools.count[int]) -> list[LocalRecord]:
    out = []
    for reason, path in shapes(keyring, who, bystander):
        n = next(offsets)
        d = DeadLetter(id=f"e-{who}-{n}", received_at=SENT + 900, stage="edge", reason=reason, kind="open",
                       method="GET", host="t.example.com", path=path, ip="81.2.69.142", ua=CHROME, edge="edge-1")
        out.append(LocalRecord(T.hits_dlq, -1, n, d.encode()))
    return out


async def test_forget_deletes_the_letters_the_processor_drops_whatever_the_path_shape(
        clickhouse: ClickHouseDb, keyring: Keyring) -> None:
    offsets = itertools.count(1)
    mine = letters(keyring, "erin", "carl", offsets)
    theirs = letters(keyring, "olaf", "carl", offsets)
    writer = ClickHouseWriter(clickhouse.dsn, clickhouse.database)
    try:
        await process_and_write(HitProcessor(keyring, build_classifier(), T, dead_letter_samples=100), writer,
                                mine + theirs, "letters:1")
        assert clickhouse.rows("SELECT count() FROM dead_letters") == [(len(mine) + len(theirs),)]
        client = clickhouse.client()
        try:
            deleted = forget(client, "erin", "", recipient_key(keyring))
        finally:
            client.close()
        left = {str(r[0]) for r in clickhouse.rows("SELECT id FROM dead_letters")}
        assert left == {f"e-olaf-{r.offset}" for r in theirs}
        assert deleted["dead_letters"] == len(mine)

        # the same letters arriving afterwards: the processor drops exactly those forget deleted
        after = HitProcessor(keyring, build_classifier(), T, dead_letter_samples=100)
        after.forget_recipients([keyed_recipient_hash(recipient_key(keyring), "", "erin")])
        again = [LocalRecord(r.topic, -1, r.offset + 1000, r.value) for r in mine + theirs]
        out = after.process(again)
        assert sorted(str(row[0]) for row in out.dead_letters.rows) == sorted(f"e-olaf-{r.offset}" for r in theirs)
    finally:
        await writer.close()


def test_forget_with_data_and_no_serve_running_purges_the_trigger_files(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    """`pixeltrack forget --data DIR` while no serve owns DIR: ClickHouse directly, then the journals of
    DIR/triggers and DIR/recipient-events, which nothing writes meanwhile."""
    for name in [n for n in os.environ if n.startswith("PIXELTRACK_")]:
        monkeypatch.delenv(name)
    data = tmp_path / "data"
    migrate(chdb_dsn(data), "pixeltrack", 3650, 3650)
    for folder in TRIGGER_FOLDERS:
        (data / folder).mkdir(parents=True)
        (data / folder / STATE_FILE).write_bytes(
            b'{"key":"k1","status":"fired","rule":"r","tenant":"","recipient":"olaf"}\n'
            b'{"key":"k2","status":"fired","rule":"r","tenant":"","recipient":"erin"}\n')
    assert main(["forget", "--data", str(data), "--recipient", "erin"]) == 0
    assert "removed 2 lines naming the recipient from serve's trigger files" in capsys.readouterr().out
    for folder in TRIGGER_FOLDERS:
        assert b"erin" not in (data / folder / STATE_FILE).read_bytes()
        assert b"olaf" in (data / folder / STATE_FILE).read_bytes()
