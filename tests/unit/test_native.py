"""The compiled hot path (schemas.native): used only when current, and the same rows as plain Python."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import orjson
import pytest

import processors.pipeline
from schemas import native

ROOT = Path(__file__).resolve().parents[2]


def rows(native_switch: str) -> list[object]:
    env = {**os.environ, "PIXELTRACK_NATIVE": native_switch}
    done = subprocess.run([sys.executable, "-m", "tests.plugins.native_rows"], cwd=ROOT, env=env,
                          capture_output=True, check=True, timeout=120)
    out: list[object] = orjson.loads(done.stdout)
    return out


@pytest.mark.skipif(not native.ACTIVE, reason=f"the compiled hot path is {native.STATE}")
def test_compiled_and_plain_python_make_the_same_rows() -> None:
    compiled, plain = rows("1"), rows("0")
    assert compiled[0] == "compiled"
    assert plain[0] == "off (PIXELTRACK_NATIVE=0)"
    assert len(compiled) > 3  # several batches
    assert compiled[1:] == plain[1:]


def test_make_test_runs_the_compiled_hot_path() -> None:
    if os.environ.get("PIXELTRACK_EXPECT_NATIVE") != "1":
        pytest.skip("only under `make test`, which builds it first")
    assert native.STATE == "compiled"
    assert str(processors.pipeline.__file__).startswith(str(native.BUILD))


def test_a_build_is_used_only_while_it_matches_its_sources(tmp_path: Path) -> None:
    assert native.state_of(tmp_path, None, False) == "off (not built: make native)"
    now = native.manifest()
    (tmp_path / native.MANIFEST).write_text(json.dumps(now))
    assert native.state_of(tmp_path, None, False).startswith("off (the build lacks schemas.hit, schemas.tokens")
    if native.ACTIVE:  # the real build's modules, copied: then it is complete
        for m in native.HOT:
            built = next(native.BUILD.glob(m.replace(".", "/") + ".*"))
            (tmp_path / m.split(".")[0]).mkdir(exist_ok=True)
            shutil.copy(built, tmp_path / m.split(".")[0])
        assert native.state_of(tmp_path, None, False).startswith("off (the build lacks its shared library")
        shared = next(p for p in native.BUILD.iterdir() if p.name.split(".")[0].endswith(native.SHARED_SUFFIX))
        shutil.copy(shared, tmp_path)
        assert native.state_of(tmp_path, None, False) == "compiled"
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
