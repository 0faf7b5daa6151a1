"""Builds pixeltrack (metadata: pyproject.toml) with the processors' hot path compiled by mypyc.

`pip install .` (and deploy/Dockerfile) compiles the modules in schemas.native.HOT into the installed
packages, beside their sources: mypyc's ordinary route, used by Python's own import. Plain Python is
the fallback: without mypyc or a C compiler, or if any module fails to build, none is installed (the
modules are one group: all of them or none) and the same sources run. An editable install (`make`'s
venv) and `build_ext --inplace` compile nothing: compiled modules beside a checkout's sources would go
stale at the next edit; a checkout's build is `make native` (build/native, checked against its sources).
PIXELTRACK_NATIVE=0 when installing skips compiling.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

from setuptools import Distribution, Extension, setup
from setuptools.command.build import build
from setuptools.command.build_ext import build_ext

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from schemas.native import HOT, OFF  # noqa: E402  (only constants: importing it changes nothing)

del sys.path[0]


def hot_path_extensions() -> list[Extension]:
    """mypyc's extensions for the HOT modules (their C generated here), each optional."""
    from mypyc.build import mypycify

    cwd = os.getcwd()
    os.chdir(HERE)  # mypyc names modules by their paths relative to here
    try:
        extensions = mypycify([str(Path(*m.split(".")).with_suffix(".py")) for m in HOT], opt_level="3",
                              target_dir=str(Path("build") / "mypyc"))
    finally:
        os.chdir(cwd)
    for extension in extensions:  # a failed compile is a warning, not a failed install (all-or-none below)
        extension.optional = True
    return list(extensions)


class BuildWithHotPath(build):
    """build (what a wheel is made from) with the hot path compiled. An editable install runs build's
    steps without this and compiles nothing, as does `build_ext --inplace`."""

    def run(self) -> None:
        if not self.distribution.ext_modules:  # here, not at setup(): the metadata steps would do it for nothing
            self.distribution.ext_modules = self._hot_path()
            self.reinitialize_command("build_ext")  # egg_info may have finalized it already, without them
        super().run()

    def _hot_path(self) -> list[Extension]:
        if os.environ.get("PIXELTRACK_NATIVE", "").strip().lower() in OFF:
            self.announce("pixeltrack: PIXELTRACK_NATIVE=off: the hot path installs as plain Python", 2)
            return []
        try:
            return hot_path_extensions()
        except (Exception, SystemExit) as exc:  # no mypyc, or it refused a module (it exits): plain sources
            self.warn(f"pixeltrack: the hot path is not compiled ({type(exc).__name__}: {exc}): plain Python")
            return []


class BuildHotPath(build_ext):
    """build_ext that installs the hot path's modules all together or not at all."""

    def run(self) -> None:
        # An in-tree build reuses build/lib: a previous build's modules there would be installed with these
        # sources (stale, or a mix with plain Python). Removed first; this build puts back what it makes.
        lib = Path(self.build_lib)
        for stale in [*lib.glob("*__mypyc.*"), *(p for m in HOT for p in lib.glob(m.replace(".", "/") + ".*"))]:
            if stale.suffix != ".py":
                stale.unlink()
        super().run()

    def build_extensions(self) -> None:
        super().build_extensions()
        built = [Path(self.get_ext_fullpath(extension.name)) for extension in self.extensions]
        if not all(path.exists() for path in built):  # an optional one failed: a compiled module alone fails
            for path in built:
                path.unlink(missing_ok=True)
            self.warn("pixeltrack: a hot path module failed to compile: none installed, plain Python")


class HotPathDistribution(Distribution):
    def has_ext_modules(self) -> bool:
        return True  # decided by BuildWithHotPath.run, later than a wheel's tag (per platform) is


setup(distclass=HotPathDistribution, cmdclass={"build": BuildWithHotPath, "build_ext": BuildHotPath})
