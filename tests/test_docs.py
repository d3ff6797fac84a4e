"""The docs' parameter tables are generated from the declarations and kept in sync."""

from __future__ import annotations

from pathlib import Path

import pytest

from neurofilters.plugin_host import build_registry
from neurofilters.plugin_host.cli.docs import BLOCK_RE, markdown_table, refresh_markdown

DOCS = Path(__file__).resolve().parents[1] / "docs"


def test_every_builtin_filter_has_a_page_with_its_current_table() -> None:
    filters = build_registry(autoload=False).filters
    documented: set[str] = set()
    for page in DOCS.rglob("*.md"):
        text = page.read_text()
        documented.update(match.group("name") for match in BLOCK_RE.finditer(text))
        assert refresh_markdown(text, filters) == text, f"{page} is stale: run 'make docs'"
    assert set(filters) <= documented, f"filters without a docs table: {set(filters) - documented}"


def test_table_has_one_row_per_parameter() -> None:
    spec = build_registry(autoload=False).get_filter("deepdream")
    rows = [line for line in markdown_table(spec).splitlines() if line.startswith("| `--")]
    assert [row.split("`")[1] for row in rows] == [param.flag for param in spec.params]


@pytest.mark.slow
def test_the_site_builds_strictly(tmp_path: Path) -> None:
    """mkdocs --strict: no broken link, no missing page or API reference."""
    import subprocess
    import sys

    root = Path(__file__).resolve().parents[1]
    result = subprocess.run(
        [sys.executable, str(root / "docs" / "build_site.py"), "--site-dir", str(tmp_path / "site")],
        capture_output=True, text=True, timeout=600,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    api_page = (tmp_path / "site" / "api" / "index.html").read_text()
    assert "max_pixels" in api_page and "to_pil" in api_page  # apply's arguments, Result's methods: from the docstrings
    assert (tmp_path / "site" / "filters" / "deepdream" / "index.html").is_file()
