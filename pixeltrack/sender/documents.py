"""Which links of an email are documents (downloads) and which images are its content, for `instrument`.

A link is a download when it says so (data-pixeltrack="download") or when its address ends in a
document's extension: a price list, a whitepaper, an invoice, a slide deck, an archive. The path is
read without its query and fragment, case-insensitively; data-pixeltrack="click" keeps a link a plain
click whatever its extension.

A content image (`<img src>`) is routed through the edge by `instrument --track-images` unless it says
data-pixeltrack="off" or is a 1×1 image (somebody's pixel, the tracker's own included: a reading counts
through the email's own images, not through other trackers').
"""

from __future__ import annotations

from urllib.parse import urlsplit

# Extensions of documents that senders attach by link (lower case, without the dot).
DOCUMENT_EXTENSIONS = frozenset({
    "pdf", "doc", "docx", "odt", "rtf", "txt", "xls", "xlsx", "ods", "csv", "ppt", "pptx", "odp", "key",
    "pages", "numbers", "epub", "zip", "7z", "gz", "tgz", "rar", "ics", "vcf",
})


def is_document(url: str) -> bool:
    """Whether `url`'s path ends in a document's extension (DOCUMENT_EXTENSIONS)."""
    try:
        path = urlsplit(url).path
    except ValueError:
        return False
    name = path.rsplit("/", 1)[-1]
    stem, dot, ext = name.rpartition(".")
    return bool(dot and stem and ext.lower() in DOCUMENT_EXTENSIONS)


def is_spacer(width: str | None, height: str | None) -> bool:
    """A 1×1 (or 0-sized) image by its width and height attributes: a tracking pixel or a spacer, no
    content a reader looks at."""
    def tiny(value: str | None) -> bool:
        text = (value or "").strip().lower().removesuffix("px").strip()
        return text in ("0", "1")

    return tiny(width) and tiny(height)
