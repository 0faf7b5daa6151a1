"""The compiled hot path (schemas.native): chosen by the processes that run it, used only when current,
the same rows as plain Python, and nothing done by importing the packages."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
from importlib.machinery import EXTENSION_SUFFIXES
from pathlib import Path

import orjson
import pytest

import processors.pipeline
from schemas import native

ROOT = Path(__file__).resolve().parents[2]
SUFFIX = EXTENSION_SUFFIXES[0]


def run_python(code: str, cwd: Path = ROOT, **env: str) -> dict[str, object]:
    """Runs `code` in a fresh interpreter (no PIXELTRACK_NATIVE* of ours); returns what it prints as JSON."""
    base = {k: v for k, v in os.environ.items() if k not in native.ENVIRONMENT and k != "PYTHONPATH"}
    done = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], cwd=cwd, env={**base, **env},
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    out: dict[str, object] = json.loads(done.stdout)
    return out


def rows(native_switch: str) -> list[object]:
    env = {**os.environ, "PIXELTRACK_NATIVE": native_switch}
    done = subprocess.run([sys.executable, "-m", "tests.plugins.native_rows"], cwd=ROOT, env=env,
                          capture_output=True, check=True, timeout=120)
    out: list[object] = orjson.loads(done.stdout)
    return out


def fake_build(folder: Path, modules: tuple[str, ...] = native.HOT) -> None:
    """Empty files named like a build's compiled modules (never loaded: loading one would fail)."""
    for m in modules:
        (folder / Path(*m.split("."))).parent.mkdir(parents=True, exist_ok=True)
        (folder / Path(*m.split("."))).with_name(m.split(".")[-1] + SUFFIX).write_bytes(b"")
    (folder / f"0123abcd{native.SHARED_SUFFIX}{SUFFIX}").write_bytes(b"")


@pytest.mark.skipif(native.STATE != native.COMPILED, reason=f"the compiled hot path is {native.STATE}")
def test_compiled_and_plain_python_make_the_same_rows() -> None:
    compiled, plain = rows("1"), rows("0")
    assert compiled[0] == ["compiled", "compiled"]
    assert plain[0] == ["off (PIXELTRACK_NATIVE=0)", "plain Python"]
    assert len(compiled) > 3  # several batches
    assert compiled[1:] == plain[1:]


def test_make_test_runs_the_compiled_hot_path() -> None:
    if os.environ.get("PIXELTRACK_EXPECT_NATIVE") != "1":
        pytest.skip("only under `make test`, which builds it first")
    assert native.STATE == native.COMPILED
    assert native.running() == "compiled"
    assert str(processors.pipeline.__file__).startswith(str(native.build_dir()))


def test_importing_the_packages_installs_no_hook_and_hashes_nothing(tmp_path: Path) -> None:
    # A build that looks current (its manifest is today's sources): the old import-time hook took it.
    fake_build(tmp_path)
    (tmp_path / native.MANIFEST).write_text(json.dumps(native.manifest()))
    seen = run_python("""
        import hashlib, json, sys
        meta_path, path, hashed = list(sys.meta_path), list(sys.path), []
        sha256 = hashlib.sha256
        hashlib.sha256 = lambda *a, **k: hashed.append(a) or sha256(*a, **k)
        import schemas, processors, schemas.native
        print(json.dumps({"meta_path": sys.meta_path == meta_path, "path": sys.path == path, "hashed": len(hashed),
                          "state": schemas.native.STATE, "hot": [m for m in schemas.native.HOT if m in sys.modules]}))
    """, PIXELTRACK_NATIVE="1", PIXELTRACK_NATIVE_DIR=str(tmp_path))
    assert seen == {"meta_path": True, "path": True, "hashed": 0, "state": native.NOT_CHOSEN, "hot": []}


def test_only_the_hot_path_commands_choose() -> None:
    for argv in (["pixeltrack", "keygen"], ["/x/bin/pixeltrack", "link", "serve"], ["pytest", "serve"], ["pixeltrack"]):
        assert native.activate_for(argv) is None
    assert {"serve", "process", "classify", "edge"} == native.HOT_COMMANDS
    cli = """
        import json, sys
        sys.argv = %r
        import pixeltrack.cli
        from schemas import native
        print(json.dumps({"state": native.STATE, "hot": native.running()}))
    """
    seen = run_python(cli % ["/venv/bin/pixeltrack", "keygen"], PIXELTRACK_NATIVE="0")
    assert seen == {"state": native.NOT_CHOSEN, "hot": "plain Python"}  # the CLI's own imports, never chosen
    seen = run_python(cli % ["/repo/pixeltrack/cli.py", "classify", "-"], PIXELTRACK_NATIVE="0")
    assert seen == {"state": "off (PIXELTRACK_NATIVE=0)", "hot": "plain Python"}


def installed_copy(tmp_path: Path, modules: tuple[str, ...] = native.HOT) -> Path:
    """The packages' sources with (fake) compiled modules beside them: an installed build's layout."""
    root = tmp_path / "site"
    for package in native.PACKAGES:
        shutil.copytree(ROOT / package, root / package, ignore=shutil.ignore_patterns("__pycache__", "data"))
    shutil.copytree(ROOT / "processors" / "data", root / "processors" / "data", dirs_exist_ok=True)
    fake_build(root, modules)
    return root


CHOOSE_AND_IMPORT = """
    import json, sys
    from schemas import native
    state = native.activate()
    import processors.pipeline
    print(json.dumps({"state": state, "running": native.running(), "origin": processors.pipeline.__file__}))
"""


def test_an_installed_build_is_passed_over_when_switched_off_or_incomplete(tmp_path: Path) -> None:
    root = installed_copy(tmp_path)
    assert native.installed_modules(root) == list(native.HOT)
    # PIXELTRACK_NATIVE=0: the sources, not the (here unloadable) compiled modules beside them.
    seen = run_python(CHOOSE_AND_IMPORT, cwd=root, PIXELTRACK_NATIVE="0")
    assert seen == {"state": "off (PIXELTRACK_NATIVE=0)", "running": "plain Python",
                    "origin": str(root / "processors" / "pipeline.py")}
    seen = run_python("from schemas import native; import json; print(json.dumps({'state': native.activate()}))",
                      cwd=root)
    assert seen == {"state": native.INSTALLED}
    plain = installed_copy(tmp_path / "plain", modules=())  # pip without a C compiler: sources only
    seen = run_python(CHOOSE_AND_IMPORT, cwd=plain)
    assert seen["state"] == "off (installed without a C compiler: plain Python)"
    assert seen["running"] == "plain Python"
    # All or none: one missing, none used.
    (root / "schemas" / f"privacy{SUFFIX}").unlink()
    seen = run_python(CHOOSE_AND_IMPORT, cwd=root)
    assert seen["state"] == "off (the installed build lacks schemas.privacy)"
    assert seen["running"] == "plain Python"


def test_compiled_modules_beside_a_checkouts_sources_are_refused(tmp_path: Path) -> None:
    root = installed_copy(tmp_path)
    (root / "pyproject.toml").write_text("")
    seen = run_python(CHOOSE_AND_IMPORT, cwd=root, PIXELTRACK_NATIVE="1")
    assert seen["state"] == "off (compiled modules beside a checkout's sources, maybe stale: remove schemas.hit's)"
    assert seen["running"] == "plain Python"


def test_a_build_is_used_only_while_it_matches_its_sources(tmp_path: Path) -> None:
    assert native.state_of(tmp_path, None, False) == "off (not built: make native)"
    now = native.manifest()
    (tmp_path / native.MANIFEST).write_text(json.dumps(now))
    assert native.state_of(tmp_path, None, False).startswith("off (the build lacks schemas.hit, schemas.tokens")
    fake_build(tmp_path)
    assert native.state_of(tmp_path, None, False) == "compiled"
    next(tmp_path.glob(f"*{native.SHARED_SUFFIX}*")).unlink()
    assert native.state_of(tmp_path, None, False).startswith("off (the build lacks its shared library")
    for off in ("0", "false", "OFF"):
        assert native.state_of(tmp_path, off, False) == f"off (PIXELTRACK_NATIVE={off})"
    assert native.state_of(tmp_path, None, True).startswith("off (a hot module was imported")
    # Any source of the packages, compiled or not (the build took its types).
    sources = now["sources"]
    assert isinstance(sources, dict)
    assert {"processors/classify.py", "schemas/sends.py", "processors/batch.py"} <= set(sources)
    edited = {**now, "sources": {**sources, "schemas/sends.py": "0" * 64}}
    (tmp_path / native.MANIFEST).write_text(json.dumps(edited))
    assert native.state_of(tmp_path, None, False) == "off (schemas/sends.py changed since the build: make native)"
    (tmp_path / native.MANIFEST).write_text(json.dumps({**now, "interpreter": "cpython-399"}))
    assert native.state_of(tmp_path, None, False) == "off (built for another interpreter: make native)"
    (tmp_path / native.MANIFEST).write_text("{half")
    assert native.state_of(tmp_path, None, False) == "off (not built: make native)"
