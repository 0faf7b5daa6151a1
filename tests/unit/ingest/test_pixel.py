"""The pixel is the 43-byte transparent GIF."""

from ingest.pixel import GIF


def test_gif_is_43_byte_transparent_1x1() -> None:
    assert len(GIF) == 43
    assert GIF[:6] == b"GIF89a"
    assert GIF[6:10] == b"\x01\x00\x01\x00"  # width 1, height 1
    assert GIF[-1:] == b";"
    assert b"!\xf9\x04\x01" in GIF  # graphic control extension with the transparency flag
