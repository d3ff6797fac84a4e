"""Regenerate the parameter tables and the command reference in the docs from the declarations.

Every ``<!-- params:NAME:start --> ... <!-- params:NAME:end -->`` block in
``docs/**/*.md`` is rewritten from filter NAME's declaration, every
``<!-- command:NAME:start --> ... <!-- command:NAME:end -->`` block from the
declared command NAME (an action: ``explore-patches``); the command
output blocks (``<!-- cli:start ARGS -->``) and benchmark blocks
(``<!-- bench:start -->``) are rewritten by ``docs/generated.py``. ``--check``
only reports pages that are out of date (exit 1), as the test suite does;
``--no-cli`` skips the command blocks (they load models: ~30 s).
"""

from __future__ import annotations

import sys
from pathlib import Path

from neurofilters.plugin_host import build_registry
from neurofilters.plugin_host.cli.docs import refresh_markdown

import generated  # docs/generated.py, beside this script

DOCS = Path(__file__).resolve().parent


def main(argv: list[str]) -> int:
    """Rewrite (or with ``--check`` verify) every generated block."""
    registry = build_registry(autoload=False)
    filters, commands = registry.filters, registry.commands
    stale = []
    for page in sorted(DOCS.rglob("*.md")):
        text = page.read_text()
        fresh = refresh_markdown(text, filters, commands)
        if fresh != text:
            stale.append(page)
            if "--check" not in argv:
                page.write_text(fresh)
    fresh_pages = generated.refresh_all(write="--check" not in argv, commands="--no-cli" not in argv)
    stale += [page for page in fresh_pages if page not in stale]
    for page in stale:
        print(("out of date: " if "--check" in argv else "updated: ") + str(page.relative_to(DOCS.parent)))
    return 1 if stale and "--check" in argv else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
