"""The compiled hot path: the modules in HOT, compiled with mypyc (`make native`, deploy/native/build.py)
into build/native beside the packages (or PIXELTRACK_NATIVE_DIR).

The build is used only while it matches: every source byte-for-byte what was compiled, the same
interpreter, and PIXELTRACK_NATIVE not "0". Otherwise the same modules run as plain Python, with the
same results (tests/unit/test_native.py compares the two on the labelled sample). The modules are one
group (compiled code calls into the others' compiled code directly), so it is all of them or none.
`STATE` says which, and why.
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
ROOT = Path(__file__).resolve().parents[1]
# PIXELTRACK_NATIVE_DIR: elsewhere, for an installed package (deploy/Dockerfile builds into the image).
BUILD = Path(os.environ.get("PIXELTRACK_NATIVE_DIR") or ROOT / "build" / "native")
MANIFEST = "manifest.json"


def manifest() -> dict[str, object]:
    """What a build is valid for: the interpreter, and each hot module's source digest."""
    return {"interpreter": sys.implementation.cache_tag, "platform": sys.platform,
            "modules": {m: hashlib.sha256((ROOT / Path(*m.split("."))).with_suffix(".py").read_bytes()).hexdigest()
                        for m in HOT}}


def state_of(build: Path, switch: str | None, loaded: bool) -> str:
    """"compiled" when the build in `build` may be used, else "off (why)". `switch`: PIXELTRACK_NATIVE;
    `loaded`: a hot module is imported already (as plain Python: too late to swap)."""
    if switch == "0":
        return "off (PIXELTRACK_NATIVE=0)"
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
        modules = built.get("modules") if isinstance(built, dict) else None
        stale = sorted(m for m in HOT if not isinstance(modules, dict) or modules.get(m) != now["modules"][m])  # type: ignore[index]
        why = f"{', '.join(stale)} changed since the build" if stale else "built for another interpreter"
        return f"off ({why}: make native)"
    return "compiled"


class _CompiledFinder(importlib.abc.MetaPathFinder):
    """Finds the HOT modules' compiled forms in BUILD, and the group's shared library (a top-level
    module named "<hash>__mypyc"); every other module, and each package's data files, where they
    always are. (Not BUILD on sys.path: its package folders would join the packages as namespace
    portions.)"""

    def find_spec(self, name: str, path: object = None, target: object = None) -> importlib.machinery.ModuleSpec | None:
        if name not in HOT and not (name.endswith("__mypyc") and "." not in name):
            return None
        base = BUILD / Path(*name.split("."))
        for suffix in importlib.machinery.EXTENSION_SUFFIXES:
            built = base.with_name(base.name + suffix)
            if built.exists():
                return importlib.util.spec_from_file_location(name, built)
        return None


STATE = state_of(BUILD, os.environ.get("PIXELTRACK_NATIVE"), any(m in sys.modules for m in HOT))
ACTIVE = STATE == "compiled"
if ACTIVE and not any(isinstance(f, _CompiledFinder) for f in sys.meta_path):
    sys.meta_path.insert(0, _CompiledFinder())
