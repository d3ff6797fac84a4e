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
PACKAGE_FILES = ("__init__.py", "__main__.py", "commands.py", "plugin_host", "filters", "gimp_plugin")


def lay_out_package(root: Path = ROOT) -> Path:
    """Create ``build/pkgroot/neurofilters`` with links to the package's files; return ``build/pkgroot``."""
    package = root / "build" / "pkgroot" / "neurofilters"
    if package.exists():
        shutil.rmtree(package)
    package.mkdir(parents=True)
    for name in PACKAGE_FILES:
        os.symlink(os.path.relpath(root / name, package), package / name)
    return package.parent


def inline_search_index(site: Path) -> Path | None:
    """Write ``search/search_index.js`` (``var __index = ...``) beside the JSON index.

    A page opened from disk cannot fetch the JSON; the theme then loads this
    script instead, and ``javascripts/file-search.js`` runs the search worker.

    Returns:
        The script written, or ``None`` when the site has no search index.
    """
    index = site / "search" / "search_index.json"
    if not index.is_file():
        return None
    script = index.with_suffix(".js")
    script.write_text("var __index = " + index.read_text(encoding="utf-8"), encoding="utf-8")
    return script


def _site_dir(argv: list[str]) -> Path:
    for flag in ("--site-dir", "-d"):
        if flag in argv[:-1]:
            return Path(argv[argv.index(flag) + 1]).resolve()
        for word in argv:
            if word.startswith(flag + "="):
                return Path(word.split("=", 1)[1]).resolve()
    return ROOT / "build" / "site"


def main(argv: list[str]) -> int:
    """Lay out the package, then build the site (extra arguments go to ``mkdocs build``)."""
    lay_out_package()
    env = {**os.environ, "NO_MKDOCS_2_WARNING": "1"}
    command = [sys.executable, "-m", "mkdocs", "build", "--strict", "--config-file", str(ROOT / "mkdocs.yml"), *argv]
    code = subprocess.run(command, cwd=ROOT, env=env).returncode
    if code == 0:
        inline_search_index(_site_dir(argv))
    return code


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
