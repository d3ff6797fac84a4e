"""docs/course.md ("The course, reproduced"): every figure has its section and picture, and every command shown parses."""

from __future__ import annotations

import json
import re
import shlex
import sys
from pathlib import Path

DOCS = Path(__file__).resolve().parents[1] / "docs"
PAGE = DOCS / "course.md"
sys.path.insert(0, str(DOCS))

import make_course  # noqa: E402  (docs/make_course.py)

from neurofilters.plugin_host import build_registry  # noqa: E402
from neurofilters.plugin_host.cli.args import parse_filter_flags  # noqa: E402
from neurofilters.plugin_host.cli.main import build_parser  # noqa: E402


def _commands(text: str) -> list[str]:
    blocks = re.findall(r"```\{\.bash \.nf-command\}\n(.*?)```", text, re.S)
    return [line for block in blocks for line in block.splitlines() if line.startswith("neurofilters ")]


def test_every_figure_has_its_section_and_existing_pictures() -> None:
    text = PAGE.read_text()
    for key, title, *_ in make_course.FIGURE_LIST:
        assert f"## {title} {{#{key}}}" in text, key
    pictures = re.findall(r"\]\((course/[^)]+)\)", text)
    assert len(pictures) >= 10
    for picture in pictures:
        assert (DOCS / picture).is_file(), picture
    total = sum(path.stat().st_size for path in (DOCS / "course").iterdir())
    assert total < 4 * 2**20, f"the course's pictures take {total / 2**20:.1f} MB: keep them at web size"


def test_the_page_shows_the_commands_the_script_ran() -> None:
    records = json.loads((DOCS / "course" / "records.json").read_text())["figures"]
    ran = [command for record in records for command in record["commands"]]
    assert _commands(PAGE.read_text()) == ran


def test_every_command_shown_parses_with_the_cli() -> None:
    """A renamed flag or command fails here before the page is remade."""
    registry = build_registry(autoload=False)
    parser = build_parser(registry)
    commands = _commands(PAGE.read_text())
    assert len(commands) >= 30
    for command in commands:
        words = shlex.split(command)[1:]
        args, extra = parser.parse_known_args(words)
        if args.command == "run":
            parse_filter_flags(registry.filters[words[1]], extra)
        else:
            assert extra == [], command
