"""HitProcessor with /d/ and /i/ hits: a download is an event of kind `download`; an image fetch is an open
(kind `open`) whose link_url is the image and link_flags carry FLAG_IMAGE; a token of another kind than
its hit says is a dead letter."""

from __future__ import annotations

from processors.classify_file import build_classifier
from processors.pipeline import EVENT_COLUMNS, HitProcessor
from schemas.records import RawHit
from schemas.tokens import FLAG_IMAGE, TokenPayload
from schemas.topics import Topics
from tests.unit.processors.builders import CHROME, HTML_ACCEPT, IMG_ACCEPT, SENT, processor_letters
from tests.unit.processors.test_pipeline import KEYRING, Rec

DOC = "https://files.example.com/price-list.pdf"
IMAGES = ("https://img.example.com/hero.jpg", "https://img.example.com/logo.png")


def record(kind: str, url: str, hit_id: str, at: float, offset: int, token_kind: str = "") -> Rec:
    payload = TokenPayload(token_kind or kind, "", "camp-7", "B", "msg-3", "rcpt-5",  # type: ignore[arg-type]
                           int(SENT * 1000), 0, url, "prices" if kind == "download" else "", 0)
    raw = RawHit(hit_id, SENT + at, kind, "GET", "t.example.com", f"/{kind[0]}/x", KEYRING.mint(payload),
                 "81.2.69.142", CHROME, "edge-9", dict(IMG_ACCEPT if kind == "image" else HTML_ACCEPT))
    return Rec(Topics().hits_raw, 0, offset, raw.encode())


def rows(out_rows: list[tuple[object, ...]]) -> list[dict[str, object]]:
    return [dict(zip(EVENT_COLUMNS, r, strict=True)) for r in out_rows]


def test_a_download_is_a_download_event_row() -> None:
    out = HitProcessor(KEYRING, build_classifier(), Topics()).process([record("download", DOC, "d-1", 86400.0, 5)])
    (row,) = rows(out.events.rows)
    assert (row["kind"], row["link_url"], row["link_id"], row["link_flags"], row["verdict"], row["source"]) == (
        "download", DOC, "prices", 0, "human", "direct")


def test_image_fetches_are_opens_of_the_image_one_per_reading() -> None:
    out = HitProcessor(KEYRING, build_classifier(), Topics()).process(
        [record("image", IMAGES[0], "i-1", 900.0, 1), record("image", IMAGES[1], "i-2", 900.2, 2)])
    got = [(r["hit_id"], r["kind"], r["link_url"], r["link_flags"], r["verdict"], r["sign"])
           for r in rows(out.events.rows)]
    assert got == [("i-1", "open", IMAGES[0], FLAG_IMAGE, "human", 1),
                   ("i-2", "open", IMAGES[1], FLAG_IMAGE, "duplicate", 1)]


def test_a_hit_whose_token_is_of_another_kind_is_a_dead_letter() -> None:
    """What the edge would never forward (a click token recorded as a download) is refused again."""
    out = HitProcessor(KEYRING, build_classifier(), Topics()).process(
        [record("download", DOC, "x-1", 60.0, 7, token_kind="click"),
         record("image", IMAGES[0], "x-2", 60.0, 8, token_kind="download")])
    assert out.events.rows == []
    assert [(r["reason"], r["kind"]) for r in processor_letters(out)] == [("wrong_kind", "download"),
                                                                          ("wrong_kind", "image")]
