"""Compile the hot modules with mypyc into `.native/`: `python -m confmand.native.build [--if-stale]`.

Needs mypy (the `test` extra installs it), a C compiler and Python's headers (Debian: gcc and
python3-dev). Without them it says what is missing and exits 2; the pure modules keep running.
The build goes to a fresh directory that replaces `.native/` only once complete, so a process
starting meanwhile sees the old build or the new one, never half of one.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import shutil
import subprocess
import sys
import sysconfig
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

from confmand.native import (
    BUILD_DIR,
    CHECKOUT,
    MANIFEST_NAME,
    MODULES,
    check_build,
    extension_suffix,
    source_hashes,
    source_path,
)

NO_TOOLCHAIN = 2


def missing_toolchain() -> str | None:
    """What the build lacks on this machine, or None."""
    headers = Path(sysconfig.get_paths()["include"]) / "Python.h"
    if not headers.exists():
        return f"no Python headers ({headers}; Debian: apt-get install python3-dev)"
    compiler = (os.environ.get("CC") or sysconfig.get_config_var("CC") or "cc").split()[0]  # as setuptools
    if shutil.which(compiler) is None:
        return f"no C compiler '{compiler}' (Debian: apt-get install gcc)"
    if importlib.util.find_spec("mypyc") is None:
        return "no mypyc (pip install mypy)"
    return None


def build(out: Path = BUILD_DIR) -> Path:
    """Compile MODULES into `out` (replacing it) and write the manifest; returns `out`."""
    out.parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=".native-build-", dir=out.parent))
    work.chmod(0o755)  # readable by a service user, as the sources are
    hashes = source_hashes()  # before compiling: an edit during the build makes it stale, not wrong
    lib = work / "lib"
    build_args = ["build_ext", "--build-lib", str(lib), "--build-temp", str(work / "tmp")]
    script = (
        "import sys\n"
        "from setuptools import setup\n"
        "from mypyc.build import mypycify\n"
        "setup(name='confman-native', ext_modules=mypycify(sys.argv[1:], opt_level='3'),\n"
        f"      script_args={build_args!r})\n"
    )
    paths = [str(source_path(m).relative_to(CHECKOUT)) for m in MODULES]
    # mypyc names modules by their path from the working directory, and writes C there (build/).
    env = {**os.environ, "PYTHONWARNINGS": "ignore"}  # setuptools' notes on our pyproject.toml
    subprocess.run(
        [sys.executable, "-c", script, *paths], cwd=CHECKOUT, env=env, check=True, stdout=subprocess.DEVNULL
    )
    suffix = extension_suffix()
    files = {m: str(Path("lib", *m.split(".")).with_suffix("")) + suffix for m in MODULES}
    for shared in lib.glob(f"*__mypyc{suffix}"):
        files[shared.name.removesuffix(suffix)] = str(shared.relative_to(work))
    manifest = {"sources": hashes, "files": files, "suffix": suffix, "built_at": time.time()}
    (work / MANIFEST_NAME).write_text(json.dumps(manifest, indent=1, sort_keys=True))
    shutil.rmtree(work / "tmp", ignore_errors=True)
    old = out.with_name(out.name + ".old")
    shutil.rmtree(old, ignore_errors=True)
    if out.exists():
        out.rename(old)
    work.rename(out)
    shutil.rmtree(old, ignore_errors=True)
    return out


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--if-stale", action="store_true", help="only when no current build exists")
    args = parser.parse_args(argv)
    if args.if_stale and check_build()[0]:
        return 0
    missing = missing_toolchain()
    if missing is not None:
        print(f"native: not compiled, {missing}; the pure-Python modules run", file=sys.stderr)
        return NO_TOOLCHAIN
    started = time.monotonic()
    print(f"native: compiling {len(MODULES)} hot modules with mypyc into {BUILD_DIR} ...", file=sys.stderr)
    build()
    files, reason = check_build()
    if not files:
        print(f"native: the build is not usable: {reason}", file=sys.stderr)
        return 1
    print(f"native: done in {time.monotonic() - started:.0f} s", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
