"""The docs' parameter tables are generated from the declarations and kept in sync."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest

from neurofilters.plugin_host import build_registry
from neurofilters.plugin_host.cli.docs import BLOCK_RE, COMMAND_BLOCK_RE, command_markdown, declared_commands, markdown_table, refresh_markdown

DOCS = Path(__file__).resolve().parents[1] / "docs"


def test_every_builtin_filter_and_command_has_a_page_with_its_current_table() -> None:
    registry = build_registry(autoload=False)
    filters, commands = registry.filters, registry.commands
    documented: set[str] = set()
    documented_commands: set[str] = set()
    for page in DOCS.rglob("*.md"):
        text = page.read_text()
        documented.update(match.group("name") for match in BLOCK_RE.finditer(text))
        documented_commands.update(match.group("name") for match in COMMAND_BLOCK_RE.finditer(text))
        assert refresh_markdown(text, filters, commands) == text, f"{page} is stale: run 'make docs'"
    assert set(filters) <= documented, f"filters without a docs table: {set(filters) - documented}"
    declared = set(declared_commands(commands))  # the command reference comes from the declarations
    assert declared == documented_commands, f"commands without a reference block: {declared ^ documented_commands}"


def test_a_command_reference_has_one_row_per_declared_parameter() -> None:
    commands = build_registry(autoload=False).commands
    spec, prog = declared_commands(commands)["explore-patches"]
    text = command_markdown(spec, prog)
    assert text.startswith("`neurofilters explore patches MODEL LAYER CHANNEL FOLDER [OPTIONS]`")
    rows = [line for line in text.splitlines() if line.startswith("| `")]
    assert len(rows) == len(spec.params)
    assert "| `-o, --output FILE` | string | **required** |" in text and "| `-k, --top N` | int | `16` | an integer between 1 and 1000 |" in text


def test_table_has_one_row_per_parameter() -> None:
    spec = build_registry(autoload=False).get_filter("deepdream")
    rows = [line for line in markdown_table(spec).splitlines() if line.startswith("| `--")]
    assert [row.split("`")[1] for row in rows] == [param.flag for param in spec.params]


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The site as ``make docs`` builds it (mkdocs --strict)."""
    import subprocess
    import sys

    root = Path(__file__).resolve().parents[1]
    folder = tmp_path_factory.mktemp("docs") / "site"
    result = subprocess.run(
        [sys.executable, str(root / "docs" / "build_site.py"), "--site-dir", str(folder)],
        capture_output=True, text=True, timeout=600,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    return folder


@pytest.mark.slow
def test_the_site_builds_strictly(site: Path) -> None:
    """mkdocs --strict: no broken link, no missing page or API reference."""
    api_page = (site / "api.html").read_text()
    assert "max_pixels" in api_page and "to_pil" in api_page  # apply's arguments, Result's methods: from the docstrings
    assert (site / "filters" / "deepdream.html").is_file()


@pytest.mark.slow
def test_every_link_of_the_site_opens_a_file_from_disk(site: Path) -> None:
    """Opened as build/site/index.html, a link to a folder shows a directory listing: every link names a file."""
    import re
    from urllib.parse import unquote, urlsplit

    checked = 0
    for page in site.rglob("*.html"):
        if page.name == "404.html":
            continue  # a web server's error page (absolute links); never opened from disk
        for target in re.findall(r'(?:href|src)="([^"#?]+)', page.read_text(encoding="utf-8")):
            if urlsplit(target).scheme or target.startswith("//"):
                continue
            path = (page.parent / unquote(target)).resolve()
            assert path.is_file(), f"{page.relative_to(site)} links to {target}, which is no file"
            checked += 1
    assert checked > 500  # the nav of every page, its assets
    assert (site / "search" / "search_index.js").read_text().startswith("var __index = {")


@pytest.mark.slow
def test_search_works_on_the_site_opened_from_disk(site: Path) -> None:
    """Chromium opens a page as a file, types into the search box and gets results; nothing is fetched from the web."""
    import shutil

    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        pytest.skip("needs Debian's chromium package (apt-get install chromium)")
    playwright = pytest.importorskip("playwright.sync_api")
    problems: list[str] = []
    with playwright.sync_playwright() as driver:
        browser = driver.chromium.launch(executable_path=chromium, args=["--no-sandbox"])
        page = browser.new_page(viewport={"width": 1280, "height": 900})
        page.on("pageerror", lambda error: problems.append(str(error)))
        page.on("requestfailed", lambda request: problems.append(f"failed: {request.url}"))
        page.on("request", lambda request: problems.append(request.url) if not request.url.startswith(("file:", "data:", "about:")) else None)
        page.goto((site / "filters" / "deepdream.html").as_uri())
        page.wait_for_load_state("load")
        page.click("input.md-search__input")
        page.keyboard.type("troubleshooting")
        page.wait_for_function("document.querySelectorAll('.md-search-result__item').length > 0", timeout=30000)
        hits = page.eval_on_selector_all(".md-search-result__item a", "links => links.map(a => a.getAttribute('href'))")
        browser.close()
    assert problems == []
    assert any("troubleshooting.html" in hit for hit in hits), hits


def _nav_pages() -> set[str]:
    import yaml

    class _Loader(yaml.SafeLoader):
        pass

    _Loader.add_multi_constructor("tag:yaml.org,2002:python/", lambda loader, suffix, node: None)
    config = yaml.load((DOCS.parent / "mkdocs.yml").read_text(), Loader=_Loader)
    pages: set[str] = set()

    def walk(items: object) -> None:
        if isinstance(items, str):
            pages.add(items)
        elif isinstance(items, list):
            for item in items:
                walk(item)
        elif isinstance(items, dict):
            for value in items.values():
                walk(value)

    walk(config["nav"])
    return pages


def test_every_filter_has_its_own_page_naming_every_parameter() -> None:
    """Iterates the registry: a filter merged later needs docs/filters/NAME.md with every flag in it."""
    filters = build_registry(autoload=False).filters
    nav = _nav_pages()
    for name, spec in filters.items():
        page = DOCS / "filters" / f"{name}.md"
        assert page.is_file(), f"filter {name!r} has no page: write docs/filters/{name}.md"
        text = page.read_text()
        missing = [param.flag for param in spec.params if f"`{param.flag}`" not in text]
        assert not missing, f"docs/filters/{name}.md does not mention {missing}"
        assert f"filters/{name}.md" in nav, f"docs/filters/{name}.md is not in mkdocs.yml's nav"


def test_every_page_is_in_the_nav() -> None:
    pages = {str(page.relative_to(DOCS)) for page in DOCS.rglob("*.md") if "examples" not in page.parts}
    assert pages - _nav_pages() == set(), "pages missing from mkdocs.yml's nav"


def test_the_gallery_shows_every_filter_with_existing_pictures() -> None:
    """Fails after a new filter is merged until 'make gallery' is rerun."""
    import re

    text = (DOCS / "gallery.md").read_text()
    shown = set(re.findall(r"<!-- gallery-filter:([a-z0-9-]+) -->", text))
    filters = set(build_registry(autoload=False).filters)
    assert filters - shown == set(), "filters missing from the gallery: run 'make gallery'"
    pictures = re.findall(r"\]\((assets/gallery-[^)]+)\)", text)
    assert len(pictures) >= 2 * len(shown)
    for picture in pictures:
        assert (DOCS / picture).is_file(), picture
    total = sum(path.stat().st_size for path in (DOCS / "assets").glob("gallery-*"))
    assert total < 8 * 2**20, f"the gallery's pictures take {total / 2**20:.1f} MB: keep them at web size"


def test_the_gallery_leads_with_filters_that_change_the_picture() -> None:
    sections = re.findall(r"^<!-- gallery-filter:([a-z0-9-]+) -->", (DOCS / "gallery.md").read_text(), re.M)
    assert sections[:2] == ["deepdream", "hallucinate"], sections  # before: add-noise, adversarial
    assert sections[-2:] == ["add-noise", "adversarial"], sections
    adversarial = (DOCS / "gallery.md").read_text().split("<!-- gallery-filter:adversarial -->")[1]
    assert "<figcaption>chelsea: tiger cat → flamingo</figcaption>" in adversarial  # the network's top-1, before and after
    assert "<figcaption>the change x20</figcaption>" in adversarial
    assert (DOCS / "assets" / "gallery-adversarial-chelsea-change.jpg").is_file()
    # hallucinate dreams visibly into the photos (before: --steps 2, a start=noise setting, and 10 weak dream steps)
    from PIL import Image

    hallucinated = np.asarray(Image.open(DOCS / "assets" / "gallery-hallucinate-chelsea.jpg"), np.float32) / 255
    original = np.asarray(Image.open(DOCS / "assets" / "gallery-original-chelsea.jpg"), np.float32) / 255
    assert np.abs(hallucinated - original).mean() > 0.06


@pytest.mark.slow
def test_the_gallery_commands_wrap(site: Path) -> None:
    page = (site / "gallery.html").read_text()
    assert page.count('class="nf-command') >= 9  # every command block is marked...
    css = (site / "stylesheets" / "extra.css").read_text()
    assert re.search(r"\.nf-command pre > code \{\s*white-space: pre-wrap;", css)  # ...and wrapped
