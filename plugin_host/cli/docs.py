"""Parameter tables derived from the declarations (for ``describe`` and the docs' filter and command reference).

The docs pages carry generated blocks between ``<!-- params:NAME:start -->``
and ``<!-- params:NAME:end -->`` markers (a filter's parameters) and between
``<!-- command:NAME:start -->`` and ``<!-- command:NAME:end -->`` (a declared
command's arguments: ``explore patches`` is ``explore-patches``);
:func:`refresh_markdown` rewrites them and a test fails when a page is out of
date with a declaration.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any, Protocol

from ..core.params import KINDS, Param, format_value
from ..core.specs import CommandSpec, FilterSpec

__all__ = [
    "param_rows", "Presets", "preset_rows", "presets_text", "markdown_table", "text_table", "refresh_markdown", "BLOCK_RE",
    "COMMAND_BLOCK_RE", "command_markdown", "declared_commands",
]

BLOCK_RE = re.compile(r"<!-- params:(?P<name>[a-z0-9-]+):start -->\n.*?<!-- params:(?P=name):end -->", re.S)
COMMAND_BLOCK_RE = re.compile(r"<!-- command:(?P<name>[a-z0-9-]+):start -->\n.*?<!-- command:(?P=name):end -->", re.S)
_HEADERS = ("flag", "type", "default", "allowed", "description")


def param_rows(params: Sequence[Param]) -> list[tuple[str, str, str, str, str]]:
    """One row per parameter: flag, kind, default (``required`` where there is none), allowed values, help."""
    rows = []
    for param in params:
        default = "required" if param.required else format_value(param, param.default)
        rows.append((param.flag, param.kind, default if default != "" else '""', param.allowed(), param.help))
    return rows


class Presets(Protocol):
    """What the presets section reads: a :class:`FilterSpec` or the API's ``FilterInfo``."""

    params: tuple[Param, ...]
    presets: Mapping[str, Mapping[str, Any]]
    preset_param: str
    model_presets: Mapping[str, str]


def preset_rows(spec: Presets) -> list[tuple[str, str]]:
    """One row per declared preset of ``spec``: its name and what it sets, written as flags a user could type.

    The ``auto`` preset of a filter with ``model_presets`` says which preset each
    listed model picks; an empty preset says it keeps the declared defaults.

    Args:
        spec: The filter (one without presets gives no rows).

    Returns:
        ``[(preset, what it sets), ...]`` in declaration order.
    """
    index = {param.name: param for param in spec.params}
    rows = []
    for name, values in spec.presets.items():
        if name == "auto" and spec.model_presets:
            picks = ", ".join(f"{model} -> {preset}" for model, preset in spec.model_presets.items())
            sets = f"the chosen model's preset ({picks}); any other model: the declared defaults"
        elif not values:
            sets = "nothing: the declared defaults"
        else:
            sets = " ".join(f"{index[key].flag} {format_value(index[key], value)}" for key, value in values.items())
        rows.append((name, sets))
    return rows


def presets_text(spec: Presets, *, width: int | None = None) -> str:
    """The presets section of ``neurofilters describe`` (empty when the filter declares none).

    Args:
        spec: The filter.
        width: Characters per line (see :func:`text_table`).
    """
    rows = preset_rows(spec)
    if not rows:
        return ""
    selector = next(param for param in spec.params if param.name == spec.preset_param)
    title = (f"Presets ({selector.flag} NAME; a preset sets only the parameters you did not set yourself, "
             f"default {format_value(selector, selector.default)}):")
    return text_table(rows, ("preset", "sets"), width=width, title=title)


def markdown_table(spec: FilterSpec) -> str:
    """The Markdown parameter table of a filter."""

    def cell(text: str) -> str:
        return text.replace("|", "\\|").replace("\n", " ")

    lines = ["| " + " | ".join(_HEADERS) + " |", "|" + "---|" * len(_HEADERS)]
    for param, row in zip(spec.params, param_rows(spec.params)):
        flag, kind, default, allowed, help_text = row
        shown = "**required**" if param.required else f"`{cell(default)}`"
        lines.append(f"| `{cell(flag)}` | {cell(kind)} | {shown} | {cell(allowed)} | {cell(help_text)} |")
    return "\n".join(lines) + "\n"


def text_table(
    rows: Sequence[Sequence[str]],
    headers: Sequence[str],
    *,
    width: int | None = None,
    title: str | None = None,
    keep: Sequence[int] = (0,),
) -> str:
    """A plain-text table (``rich``) that fits ``width`` columns, wrapping long cells.

    Args:
        rows: The cells, one sequence per row.
        headers: The column titles.
        width: Characters per line; default the terminal's width (80 when
            standard output is not a terminal), at most 120.
        title: A line above the table.
        keep: Columns never wrapped (names a user copies); the others wrap, and
            fold words longer than their column.

    Returns:
        The table as text, no colour codes, lines right-stripped.
    """
    import io
    import shutil

    from rich import box
    from rich.console import Console
    from rich.table import Table

    if width is None:
        width = min(shutil.get_terminal_size((80, 24)).columns, 120)
    table = Table(box=box.SIMPLE_HEAD, title=title, title_justify="left", pad_edge=False, show_edge=False)
    for index, header in enumerate(headers):
        table.add_column(header, no_wrap=index in keep, overflow="fold")
    for row in rows:
        table.add_row(*(str(cell) for cell in row))
    buffer = io.StringIO()
    Console(file=buffer, width=width, no_color=True, highlight=False, emoji=False, markup=False, color_system=None).print(table)
    return "\n".join(line.rstrip() for line in buffer.getvalue().splitlines()).strip("\n")


def _argument(param: Param) -> str:
    """How an argument is typed: ``IMAGE ...``, ``-o, --output FILE``, ``--overwrite``."""
    if param.positional:
        word = param.metavar or param.name.upper()
        return f"{word} ..." if param.nargs in ("+", "*") else word
    flags = ", ".join(flag for flag in (param.short, param.flag) if flag)
    if param.kind == "bool":
        return flags
    return f"{flags} {param.metavar or KINDS[param.kind].metavar}"


def command_markdown(spec: CommandSpec, prog: str = "neurofilters") -> str:
    """The Markdown reference of a declared command: its usage and one row per argument, from its ``params``.

    Args:
        spec: A declared command (or one action of it).
        prog: The words before its arguments (``neurofilters explore``).
    """

    def cell(text: str) -> str:
        return text.replace("|", "\\|").replace("\n", " ")

    positional = " ".join(_argument(param) if param.is_required or param.nargs else f"[{_argument(param)}]"
                          for param in spec.params if param.positional)  # [MODEL]: one that may be left out
    lines = [f"`{prog} {spec.name}{' ' + positional if positional else ''} [OPTIONS]`: {cell(spec.help)}", "",
             "| argument | type | default | allowed | description |", "|---|---|---|---|---|"]
    for param in spec.params:
        if param.is_required:
            default = "**required**"
        elif param.default in (None, "") or param.kind == "bool":
            default = "–" if param.kind != "bool" else "off"
        else:
            default = f"`{cell(format_value(param, param.default))}`"
        allowed = param.allowed() if param.kind != "bool" else "a switch"
        lines.append(f"| `{cell(_argument(param))}` | {param.kind} | {default} | {cell(allowed)} | {cell(param.help)} |")
    return "\n".join(lines) + "\n"


def declared_commands(commands: Mapping[str, CommandSpec]) -> dict[str, tuple[CommandSpec, str]]:
    """Every declared command and action by block name (``classify``, ``explore-patches``), with its program words.

    A command without parameters (``list``, ``plugins``) has no table: its ``--help`` says all.
    """
    found: dict[str, tuple[CommandSpec, str]] = {}
    for name, spec in commands.items():
        if not spec.declared:
            continue
        if spec.subcommands:
            for action in spec.subcommands:
                if action.params:
                    found[f"{name}-{action.name}"] = (action, f"neurofilters {name}")
        elif spec.params:
            found[name] = (spec, "neurofilters")
    return found


def refresh_markdown(text: str, filters: Mapping[str, FilterSpec], commands: Mapping[str, CommandSpec] | None = None) -> str:
    """Rewrite every generated parameter block (and, given ``commands``, every command block) in a Markdown page.

    Args:
        text: The page.
        filters: The registered filters.
        commands: The registered commands; ``None`` leaves command blocks as they are.

    Raises:
        KeyError: A block names a filter or command that is not registered (or not declared).
    """

    def replace(match: re.Match[str]) -> str:
        name = match.group("name")
        return f"<!-- params:{name}:start -->\n{markdown_table(filters[name])}<!-- params:{name}:end -->"

    text = BLOCK_RE.sub(replace, text)
    if commands is None:
        return text
    declared = declared_commands(commands)

    def replace_command(match: re.Match[str]) -> str:
        name = match.group("name")
        spec, prog = declared[name]
        return f"<!-- command:{name}:start -->\n{command_markdown(spec, prog)}<!-- command:{name}:end -->"

    return COMMAND_BLOCK_RE.sub(replace_command, text)
