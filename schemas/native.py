"""The compiled hot path: which form of the HOT modules (mypyc-compiled or plain Python) a process runs.

Importing this module, or `schemas`, changes nothing: no import hook, no hashing. The choice is made by
the processes that run the hot path (`pixeltrack serve`, `process`, `classify`, `edge`; the tests),
calling `activate()` before any HOT module is imported. There are two builds:

- Installed (mypyc's ordinary route): `pip install .` compiles the HOT modules (setup.py) into the
  installed packages, beside their sources, so Python's own import finds them: compiled by default.
  A wheel's sources and modules come from one build and are not edited in place.
- A developer checkout: `make native` (deploy/native/build.py) compiles them into build/native (or
  PIXELTRACK_NATIVE_DIR) with a manifest of every source of schemas/ and processors/ it was built from.
  `activate()` uses it only while the manifest matches those sources byte for byte and the
  interpreter: an edited source falls back to plain Python until the next build, never stale code.

PIXELTRACK_NATIVE=0 (or false, no, off) makes `activate()` choose plain Python in both. The modules
are one group (compiled code calls into the others' compiled code directly, and refuses a plain one's
class), so it is all of them or none. Plain Python gives the same results (tests/unit/test_native.py
compares the two over a simulated campaign with odd records). `STATE` says which runs, and why.
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.machinery
import importlib.util
import json
import os
import sys
from pathlib import Path

# The per-hit path of a processor (decode, verify, enrich, classify, rows) and what it builds on.
HOT = ("schemas.hit", "schemas.tokens", "schemas.records", "schemas.privacy", "processors.networks",
       "processors.enrich", "processors.classify", "processors.behaviour", "processors.pipeline")
# What a build depends on: the compiled modules, and the types it took from every other module of
# these packages (a class's fields, a function's signature): all their sources, so an edit anywhere
# in them falls back to plain Python until the next build.
PACKAGES = ("schemas", "processors")
ROOT = Path(__file__).resolve().parents[1]
MANIFEST = "manifest.json"
OFF = frozenset({"0", "false", "no", "off"})
# Read by activate(), not through schemas.settings (the choice is made before any HOT module loads).
ENVIRONMENT = ("PIXELTRACK_NATIVE", "PIXELTRACK_NATIVE_DIR")
SHARED_SUFFIX = "__mypyc"  # mypyc's library of a group of modules: "<hash>__mypyc", a top-level module
NOT_CHOSEN = "not chosen (native.activate() was not called)"
COMPILED = "compiled"
INSTALLED = "compiled (installed)"

# What activate() chose; every process that runs the hot path logs it.
STATE = NOT_CHOSEN


def build_dir() -> Path:
    """Where `make native` puts a developer checkout's build: PIXELTRACK_NATIVE_DIR, else build/native."""
    return Path(os.environ.get("PIXELTRACK_NATIVE_DIR") or ROOT / "build" / "native").resolve()


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


def _shared_library(folder: Path) -> Path | None:
    """The group's shared library in `folder` ("<hash>__mypyc" + this interpreter's suffix), if built."""
    for suffix in importlib.machinery.EXTENSION_SUFFIXES:
        for built in folder.glob(f"*{SHARED_SUFFIX}{suffix}"):
            return built
    return None


def installed_modules(root: Path = ROOT) -> list[str]:
    """The HOT modules compiled beside their sources under `root` (an installed build)."""
    return [m for m in HOT if _extension(root / Path(*m.split("."))) is not None]


def state_of(build: Path, switch: str | None, loaded: bool) -> str:
    """"compiled" when the build in `build` may be used, else "off (why)". `switch`: PIXELTRACK_NATIVE;
    `loaded`: a hot module is imported already (as plain Python: too late to swap)."""
    if (switch or "").strip().lower() in OFF:
        return f"off (PIXELTRACK_NATIVE={switch})"
    if loaded:
        return "off (a hot module was imported before native.activate())"
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
    if missing or _shared_library(build) is None:
        return f"off (the build lacks {', '.join(missing) or 'its shared library'}: make native)"
    return COMPILED


def running() -> str:
    """Which form of the HOT modules this process has imported: "compiled", "plain Python", "mixed", or
    "none imported"."""
    forms = {_is_extension(sys.modules[m]) for m in HOT if m in sys.modules}
    if not forms:
        return "none imported"
    return "mixed" if len(forms) > 1 else "compiled" if forms == {True} else "plain Python"


def _is_extension(module: object) -> bool:
    origin = str(getattr(module, "__file__", None) or "")
    return origin.endswith(tuple(importlib.machinery.EXTENSION_SUFFIXES))


def _sources_only(packages: tuple[str, ...]) -> None:
    """Makes the packages' folders import their modules from sources only, so an installed build beside
    them is passed over: the path importer cache's finder for each folder (no meta-path hook)."""
    for name in packages:
        for folder in importlib.import_module(name).__path__:
            sys.path_importer_cache[folder] = importlib.machinery.FileFinder(
                folder, (importlib.machinery.SourceFileLoader, importlib.machinery.SOURCE_SUFFIXES),
                (importlib.machinery.SourcelessFileLoader, importlib.machinery.BYTECODE_SUFFIXES))


def _use_build(build: Path) -> None:
    """Puts a checked build first: its shared library loaded by path (the modules import it by name),
    its package folders first on the packages' __path__ (their other modules and data stay where they
    are; build/native is not put on sys.path, where its folders could join the packages)."""
    library = _shared_library(build)
    assert library is not None  # state_of checked
    name = library.name.split(".")[0]
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(name, library)
        assert spec is not None
        assert spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
    for package in PACKAGES:
        path = importlib.import_module(package).__path__
        folder = str(build / package)
        if folder not in path:
            path.insert(0, folder)


def choose(switch: str | None, build: Path | None, root: Path = ROOT) -> str:
    """The decision activate() makes, and carries out, for PIXELTRACK_NATIVE=`switch`; `build`: a
    checkout's build folder (None: installed, where pip compiles or not)."""
    if any(m in sys.modules for m in HOT):  # too late to choose: say what runs
        now = running()
        return INSTALLED if now == "compiled" else f"{now} (a hot module was imported before native.activate())"
    off = (switch or "").strip().lower() in OFF
    installed = installed_modules(root)
    if installed and (root / "pyproject.toml").exists():
        # Compiled beside the sources of a checkout (an in-place build): nothing says they match.
        _sources_only(PACKAGES)
        return f"off (compiled modules beside a checkout's sources, maybe stale: remove {installed[0]}'s)"
    if installed and (off or len(installed) < len(HOT)):
        _sources_only(PACKAGES)
        return f"off (PIXELTRACK_NATIVE={switch})" if off else \
            f"off (the installed build lacks {', '.join(m for m in HOT if m not in installed)})"
    if installed:
        return INSTALLED
    if build is None:
        return f"off (PIXELTRACK_NATIVE={switch})" if off else "off (installed without a C compiler: plain Python)"
    state = state_of(build, switch, False)
    if state == COMPILED:
        _use_build(build)
    return state


def activate() -> str:
    """Chooses, once per process, the compiled hot path when it is current (see the module's docstring),
    else plain Python; returns STATE. Called before any HOT module is imported (later, it reports)."""
    global STATE
    if STATE == NOT_CHOSEN:
        checkout = os.environ.get("PIXELTRACK_NATIVE_DIR") or (ROOT / "pyproject.toml").exists()
        STATE = choose(os.environ.get("PIXELTRACK_NATIVE"), build_dir() if checkout else None)
    return STATE


# The CLI's commands that run the hot path (the others, like keygen and link, never choose: no hashing).
# The edge verifies tokens and writes records with it; its spawned workers get the CLI's argv, and choose too.
HOT_COMMANDS = frozenset({"serve", "process", "classify", "edge"})
CLI_NAMES = frozenset({"pixeltrack", "cli.py"})  # the console script; python -m pixeltrack.cli


def activate_for(argv: list[str]) -> str | None:
    """activate() when `argv` (sys.argv) runs one of HOT_COMMANDS through the CLI; else nothing."""
    if len(argv) > 1 and Path(argv[0]).name in CLI_NAMES and argv[1] in HOT_COMMANDS:
        return activate()
    return None
