"""The compiled hot path: the modules in HOT, compiled with mypyc (`make native`, deploy/native/build.py)
into build/native beside the packages (or PIXELTRACK_NATIVE_DIR).

The build is used only while it matches: every source of schemas/ and processors/ byte-for-byte what
it was compiled from, the same interpreter, every module built, and PIXELTRACK_NATIVE not 0 (or false,
no, off). Otherwise the same modules run as plain Python, with the same results (tests/unit/
test_native.py compares the two over a simulated campaign with odd records). The modules are one group
(compiled code calls into the others' compiled code directly), so it is all of them or none. `STATE`
says which, and why.
"""

from __future__ import annotations

import hashlib
import importlib.abc
import importlib.machinery
import importlib.util
import json
import os
import sys
from pathlib import Path

# The per-hit path of a processor (decode, verify, enrich, classify, rows) and what it builds on.
HOT = ("schemas.hit", "schemas.tokens", "schemas.records", "schemas.privacy", "processors.networks",
       "processors.enrich", "processors.classify", "processors.pipeline")
# What a build depends on: the compiled modules, and the types it took from every other module of
# these packages (a class's fields, a function's signature): all their sources, so an edit anywhere
# in them falls back to plain Python until the next build.
PACKAGES = ("schemas", "processors")
ROOT = Path(__file__).resolve().parents[1]
# PIXELTRACK_NATIVE_DIR: elsewhere, for an installed package (deploy/Dockerfile builds into the image).
BUILD = Path(os.environ.get("PIXELTRACK_NATIVE_DIR") or ROOT / "build" / "native").resolve()
MANIFEST = "manifest.json"
OFF = frozenset({"0", "false", "no", "off"})
# Read here, at import, not through schemas.settings (the choice is made before any module loads).
ENVIRONMENT = ("PIXELTRACK_NATIVE", "PIXELTRACK_NATIVE_DIR")
SHARED_SUFFIX = "__mypyc"  # mypyc's library of a group of modules: "<hash>__mypyc", a top-level module


def manifest() -> dict[str, object]:
    """What a build is valid for: the interpreter, and the digest of every source it depends on."""
    sources = sorted(p for package in PACKAGES for p in (ROOT / package).glob("*.py"))
    return {"interpreter": sys.implementation.cache_tag, "platform": sys.platform,
            "sources": {p.relative_to(ROOT).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest() for p in sources}}


def _extension(base: Path) -> Path | None:
    """The compiled module at `base` (a path without suffix) for this interpreter, if built."""
    for suffix in importlib.machinery.EXTENSION_SUFFIXES:
        built = base.with_name(base.name + suffix)
        if built.exists():
            return built
    return None


def state_of(build: Path, switch: str | None, loaded: bool) -> str:
    """"compiled" when the build in `build` may be used, else "off (why)". `switch`: PIXELTRACK_NATIVE;
    `loaded`: a hot module is imported already (as plain Python: too late to swap)."""
    if (switch or "").strip().lower() in OFF:
        return f"off (PIXELTRACK_NATIVE={switch})"
    if loaded:
        return "off (a hot module was imported before schemas)"  # cannot happen through the packages
    try:
        built = json.loads((build / MANIFEST).read_text())
    except (OSError, ValueError):
        return "off (not built: make native)"
    try:
        now = manifest()
    except OSError as exc:
        return f"off ({exc})"
    if built != now:
        was = built.get("sources") if isinstance(built, dict) else None
        was = was if isinstance(was, dict) else {}
        is_ = now["sources"]
        assert isinstance(is_, dict)
        stale = sorted(k for k in was.keys() | is_.keys() if was.get(k) != is_.get(k))
        why = f"{', '.join(stale[:3])}{' …' if len(stale) > 3 else ''} changed since the build" if stale else \
            "built for another interpreter"
        return f"off ({why}: make native)"
    # All or nothing: a compiled module handed a plain one's class refuses it.
    missing = [m for m in HOT if _extension(build / Path(*m.split("."))) is None]
    if missing or not any(p.name.split(".")[0].endswith(SHARED_SUFFIX) for p in build.iterdir()):
        return f"off (the build lacks {', '.join(missing) or 'its shared library'}: make native)"
    return "compiled"


class _CompiledFinder(importlib.abc.MetaPathFinder):
    """Finds the HOT modules' compiled forms in BUILD, and the group's shared library (a top-level
    module named "<hash>__mypyc"); every other module, and each package's data files, where they
    always are. (Not BUILD on sys.path: its package folders would join the packages as namespace
    portions.)"""

    def find_spec(self, name: str, path: object = None, target: object = None) -> importlib.machinery.ModuleSpec | None:
        if name not in HOT and not (name.endswith(SHARED_SUFFIX) and "." not in name):
            return None
        built = _extension(BUILD / Path(*name.split(".")))
        return importlib.util.spec_from_file_location(name, built) if built is not None else None


STATE = state_of(BUILD, os.environ.get("PIXELTRACK_NATIVE"), any(m in sys.modules for m in HOT))
ACTIVE = STATE == "compiled"
if ACTIVE and not any(isinstance(f, _CompiledFinder) for f in sys.meta_path):
    sys.meta_path.insert(0, _CompiledFinder())
