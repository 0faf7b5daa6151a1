"""The edge writes RawHit JSON without building the dataclass: the bytes must be RawHit's own."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from ingest.edge import raw_hit_json
from schemas.records import RawHit

text = st.text(max_size=40)


@settings(max_examples=200, deadline=None)
@given(hit_id=text, at=st.floats(0, 4e9), kind=st.sampled_from(["open", "click"]), method=text, host=text,
       path=text, token=text, ip=text, ua=text, edge=text, headers=st.dictionaries(text, text, max_size=4))
def test_raw_hit_json_is_raw_hit_encode(hit_id: str, at: float, kind: str, method: str, host: str, path: str,
                                        token: str, ip: str, ua: str, edge: str, headers: dict[str, str]) -> None:
    ours = raw_hit_json(hit_id, at, kind, method, host, path, token, ip, ua, edge, headers)
    theirs = RawHit(id=hit_id, received_at=at, kind=kind, method=method, host=host, path=path, token=token, ip=ip,
                    ua=ua, edge=edge, headers=headers).encode()
    assert ours == theirs
    assert RawHit.decode(ours) == RawHit.decode(theirs)


def test_undecodable_request_bytes_become_replacement_characters() -> None:
    value = raw_hit_json("i", 1.0, "open", "GET", "h\udcff", "/o/\udcfe", "t", "1.2.3.4", "UA \udcff", "e",
                         {"accept": "\udcff"})
    hit = RawHit.decode(value)
    assert (hit.host, hit.path, hit.ua, hit.headers) == ("h\ufffd", "/o/\ufffd", "UA \ufffd", {"accept": "\ufffd"})
