"""Compiles a checkout's hot path with mypyc into build/native (see schemas/native.py).

    .venv/bin/python deploy/native/build.py      # or: make native

The modules in schemas.native.HOT are compiled from their own sources, unchanged (no second
implementation to keep in step): mypyc turns their type annotations into C. A manifest beside the
build records each source's SHA-256 and the interpreter it was built for; schemas.native.activate()
uses the build only while both still match. Needs a C compiler and the interpreter's headers; without
them this fails and pixeltrack runs as plain Python. (An installed pixeltrack is compiled by
`pip install`, setup.py, into its packages instead.)
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from schemas.native import HOT, MANIFEST, build_dir, manifest  # noqa: E402


def main() -> int:
    from mypyc.build import mypycify
    from setuptools import Distribution

    build = build_dir()
    paths = [str(Path(*m.split(".")).with_suffix(".py")) for m in HOT]
    # Read before compiling: a source saved during the build then does not match, and is not used.
    sources = manifest()
    work = Path(tempfile.mkdtemp(prefix="pixeltrack-native-"))
    staged = work / "lib"
    cwd = os.getcwd()
    try:
        os.chdir(ROOT)  # mypyc names modules by their paths relative to here
        try:
            extensions = mypycify(paths, opt_level="3", target_dir=str(work / "c"))
            dist = Distribution({"name": "pixeltrack-native", "ext_modules": extensions})
            dist.script_name = "build.py"
            dist.script_args = ["--quiet", "build_ext", "--build-lib", str(staged), "--build-temp", str(work / "tmp")]
            dist.parse_command_line()
            dist.run_commands()
        finally:
            os.chdir(cwd)
        (staged / MANIFEST).write_text(json.dumps(sources, indent=1, sort_keys=True) + "\n")
        # Replaced whole: a build that failed half-way leaves the previous one (or none), never a mix.
        shutil.rmtree(build, ignore_errors=True)
        build.parent.mkdir(parents=True, exist_ok=True)
        shutil.move(str(staged), str(build))
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print(f"compiled {len(HOT)} modules into {build}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
