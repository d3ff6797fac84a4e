"""Build the documentation site with mkdocs (``make docs``): ``python docs/build_site.py [--site-dir DIR]``.

mkdocstrings reads the API reference from the source with griffe, which finds a
package by its folder name; ours is the repository root. This script lays out
``build/pkgroot/neurofilters`` (links to the package's files only) for it, then
runs ``mkdocs build --strict``, which fails on a broken link or reference.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGE_FILES = ("__init__.py", "__main__.py", "plugin_host", "filters", "gimp_plugin")


def lay_out_package(root: Path = ROOT) -> Path:
    """Create ``build/pkgroot/neurofilters`` with links to the package's files; return ``build/pkgroot``."""
    package = root / "build" / "pkgroot" / "neurofilters"
    if package.exists():
        shutil.rmtree(package)
    package.mkdir(parents=True)
    for name in PACKAGE_FILES:
        os.symlink(os.path.relpath(root / name, package), package / name)
    return package.parent


def main(argv: list[str]) -> int:
    """Lay out the package, then build the site (extra arguments go to ``mkdocs build``)."""
    lay_out_package()
    env = {**os.environ, "NO_MKDOCS_2_WARNING": "1"}
    command = [sys.executable, "-m", "mkdocs", "build", "--strict", "--config-file", str(ROOT / "mkdocs.yml"), *argv]
    return subprocess.run(command, cwd=ROOT, env=env).returncode


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
