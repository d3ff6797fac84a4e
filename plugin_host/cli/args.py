"""Argument parsing shared by every command: the raising parser and a filter's flags from its declaration.

argparse does the parsing; this module adds what it lacks in Python 3.11: no prefix
matching anywhere (``allow_abbrev=False``), a nearest-flag suggestion for an unknown
flag (Python 3.14's ``suggest_on_error`` does the same), bool flags that take
``--detail``, ``--detail false`` and ``--no-detail``, and parameter errors worded with
the flag as typed.
"""

from __future__ import annotations

import argparse
import difflib
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any, NoReturn

from ..core.errors import ParameterError, UsageError
from ..core.params import KINDS, Param, flag_worded, format_value, shown_value
from ..core.specs import FilterSpec
from . import docs as _docs

__all__ = [
    "PROG", "Parser", "folder_path", "filter_parser", "metavar", "option_names", "parse_filter_flags", "flag_error", "suggest_flag",
    "print_help_with_filter", "unknown_flags_message", "add_param_argument", "add_command_arguments", "command_dest", "command_given", "command_help",
]

PROG = "neurofilters"

_TRUE = {"1", "true", "yes", "on", "y", "t"}
_FALSE = {"0", "false", "no", "off", "n", "f"}


class Parser(argparse.ArgumentParser):
    """argparse with one-line usage errors that raise :class:`UsageError` instead of exiting.

    Prefix matching is off (``--step`` is not ``--steps``): a flag is spelled out,
    and a misspelt one gets the nearest flag as a suggestion.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("allow_abbrev", False)
        super().__init__(*args, **kwargs)

    def error(self, message: str) -> NoReturn:
        raise UsageError(f"{message} (see '{self.prog} --help')")

    def parse_args(self, args: Sequence[str] | None = None, namespace: Any = None) -> Any:  # type: ignore[override]
        parsed, extra = self.parse_known_args(args, namespace)
        if extra:
            raise UsageError(unknown_flags_message(extra, option_names(self), self.prog))
        return parsed


def option_names(parser: argparse.ArgumentParser) -> list[str]:
    """Every ``--long`` option ``parser`` knows (the candidates of a suggestion)."""
    return [name for action in parser._actions for name in action.option_strings if name.startswith("--")]


def suggest_flag(word: str, known: Iterable[str]) -> str | None:
    """The known flag nearest to a mistyped ``word`` (``--stepsize`` -> ``--step-size``), or None."""
    flag = word.split("=", 1)[0]
    if not flag.startswith("--"):
        return None
    known = list(dict.fromkeys(known))
    # compare without dashes too, so a missing or extra dash counts as the small slip it is
    squashed = {name.replace("-", ""): name for name in known}
    close = difflib.get_close_matches(flag.replace("-", ""), list(squashed), n=1, cutoff=0.75)
    if close:
        return squashed[close[0]]
    close = difflib.get_close_matches(flag, known, n=1, cutoff=0.6)
    return close[0] if close else None


def unknown_flags_message(extra: Sequence[str], known: Iterable[str], prog: str) -> str:
    """``unrecognized arguments: --stepsize 5; did you mean --step-size?`` for leftover words."""
    shown = " ".join(shown_value(word) for word in extra)
    known = list(known)
    pairs = [(word.split("=", 1)[0], hint) for word in extra if (hint := suggest_flag(word, known))]
    if len(pairs) == 1:
        advice = f"; did you mean {pairs[0][1]}?"
    elif pairs:
        advice = "; did you mean " + ", ".join(f"{hint} (for {typed})" for typed, hint in pairs) + "?"
    else:
        advice = ""
    return f"unrecognized arguments: {shown}{advice} (see '{prog} --help')"


def metavar(kind: str) -> str:
    """The placeholder shown for a parameter kind in ``--help`` (``N``, ``X``, ``LAYER`` ...)."""
    return KINDS[kind].metavar if kind in KINDS else "TEXT"


class _BoolFlag(argparse.Action):
    """``--detail`` (true) and ``--detail true|false|yes|no|1|0``."""

    def __init__(self, option_strings: Sequence[str], dest: str, **kwargs: Any) -> None:
        self.positive = option_strings[0]
        super().__init__(option_strings, dest, nargs="?", metavar="BOOL", **kwargs)

    def __call__(self, parser: argparse.ArgumentParser, namespace: Any, values: Any, option: str | None = None) -> None:
        if values is None:
            setattr(namespace, self.dest, True)
            return
        word = str(values).strip().lower()
        if word not in _TRUE | _FALSE:
            raise UsageError(
                f"{self.positive} must be true or false (or give {self.positive} / --no-{self.positive[2:]} alone). "
                f"Received: {self.positive} {shown_value(values)}"
            )
        setattr(namespace, self.dest, word in _TRUE)


class _NegativeFlag(argparse.Action):
    """``--no-detail``: the bool parameter set to false."""

    def __init__(self, option_strings: Sequence[str], dest: str, **kwargs: Any) -> None:
        super().__init__(option_strings, dest, nargs=0, **kwargs)

    def __call__(self, parser: argparse.ArgumentParser, namespace: Any, values: Any, option: str | None = None) -> None:
        setattr(namespace, self.dest, False)


def help_text(text: str) -> str:
    """``text`` as an argparse help string: a ``%`` of a declaration ("0.1 % in 5 iterations") stays a ``%``.

    argparse formats every help string with ``%``, so an unescaped ``% i`` raised a ``TypeError`` in ``--help``.
    """
    return text.replace("%", "%%")


def print_help_with_filter(parser: argparse.ArgumentParser, spec: FilterSpec | None, prog: str | None = None) -> None:
    """A command's ``--help``, followed by the parameters of the filter it was given (``run``, ``batch``, ``video``).

    Args:
        parser: The command's parser.
        spec: The filter named on the command line, or ``None`` (the command's help alone).
        prog: The program name the filter's usage line shows (:func:`filter_parser`'s).
    """
    parser.print_help()
    if spec is not None:
        print()
        filter_parser(spec, prog).print_help()


def filter_parser(spec: FilterSpec, prog: str | None = None) -> Parser:
    """A parser of one filter's parameters, derived from its declaration.

    Args:
        spec: The filter.
        prog: The command its errors point to (``neurofilters batch --filter NAME``
            for the batch command); default ``neurofilters run NAME``.
    """
    parser = Parser(
        prog=prog or f"{PROG} run {spec.name}",
        add_help=False,
        argument_default=argparse.SUPPRESS,
        description=spec.description,
    )
    essential = [param for param in spec.params if not param.advanced]
    advanced = [param for param in spec.params if param.advanced]
    groups = [(f"{spec.title} parameters", essential)]
    if advanced:
        groups.append((f"{spec.title} advanced parameters (rarely needed)", advanced))
    for title, params in groups:
        group = parser.add_argument_group(title)
        for param in params:
            add_param_argument(group, param)
    return parser


def add_param_argument(group: Any, param: Param) -> None:
    """Add a filter parameter's flag to a parser or group: ``--name VALUE``; a bool also takes ``--no-name``.

    Only the values typed land in the namespace (the parser's default is
    ``argparse.SUPPRESS``), so the caller knows what the user gave.
    """
    default = _docs.param_rows([param])[0][2]
    text = help_text(f"{param.help} Allowed: {param.allowed()}. Default: {default}.")
    if param.kind == "bool":
        negative = "--no-" + param.flag[2:]
        group.add_argument(param.flag, dest=param.name, action=_BoolFlag, help=f"{text} {negative} sets false.")
        group.add_argument(negative, dest=param.name, action=_NegativeFlag, help=argparse.SUPPRESS)
    else:
        group.add_argument(param.flag, dest=param.name, metavar=metavar(param.kind), help=text)


def command_help(param: Param) -> str:
    """A command parameter's ``--help`` line: its help, then what it allows and its default where they say something."""
    text = param.help.rstrip()
    text += "" if text.endswith(".") else "."
    if param.positional or param.kind == "bool":
        return help_text(text)
    if param.kind in ("int", "float", "choice") or param.nargs:
        text += f" Allowed: {param.allowed()}."
    default = "" if param.default is None else format_value(param, param.default)
    if default and not param.required:
        text += f" Default: {default}."
    return help_text(text)


def add_command_arguments(parser: argparse.ArgumentParser, params: Sequence[Param], *, verbatim: bool = False) -> None:
    """A declared command's arguments, derived from its ``params`` (the filter flags' rules, plus positionals).

    Positional parameters become positional arguments (``nargs`` ``+``/``*``:
    several words); a bool option is a switch (``--overwrite``), as commands
    always had; ``short`` adds the one-letter alias (``-o``); a required option
    is required by argparse too, so a missing one reads the same everywhere.
    Only typed values land in the namespace (default ``argparse.SUPPRESS``),
    each under :func:`command_dest` (so no parameter name meets the host's own
    namespace entries, such as ``command``).

    ``verbatim=True`` prints each help line as declared, without the allowed
    values and default appended (the host's own commands, whose ``--help`` the
    docs pin as it was before they were declared).
    """
    for param in params:
        dest = command_dest(param)
        text = help_text(param.help) if verbatim else command_help(param)
        if param.positional:
            nargs = {"+": "+", "*": "*"}.get(param.nargs, "?" if param.default is not None else None)
            parser.add_argument(dest, nargs=nargs, metavar=param.metavar or param.name, default=argparse.SUPPRESS, help=text)
            continue
        flags = [flag for flag in (param.short, param.flag) if flag]
        if param.kind == "bool":
            parser.add_argument(*flags, dest=dest, action="store_const", const=True, default=argparse.SUPPRESS, help=text)
            continue
        nargs = {"+": "+", "*": "*"}.get(param.nargs)
        parser.add_argument(*flags, dest=dest, nargs=nargs, required=param.required, default=argparse.SUPPRESS,
                            metavar=param.metavar or metavar(param.kind), help=text)


def command_dest(param: Param) -> str:
    """Where a declared command's parameter lands in the parsed namespace (``param:top``)."""
    return f"param:{param.name}"


def command_given(params: Sequence[Param], namespace: argparse.Namespace) -> dict[str, Any]:
    """The values the user typed for a declared command's ``params``, by parameter name."""
    return {param.name: getattr(namespace, command_dest(param)) for param in params if hasattr(namespace, command_dest(param))}


def parse_filter_flags(spec: FilterSpec, words: Sequence[str], *, prog: str | None = None, host_flags: Iterable[str] = ()) -> dict[str, Any]:
    """The filter parameters given on the command line, by name (only those typed).

    Args:
        spec: The filter.
        words: The command line's words after the host's own options.
        prog: The command errors point to (see :func:`filter_parser`).
        host_flags: The command's own flags, also offered as suggestions.

    Raises:
        UsageError: An unknown flag (with the nearest known one) or a flag without its value.
    """
    parser = filter_parser(spec, prog)
    parsed, extra = parser.parse_known_args(list(words))
    if extra:
        raise UsageError(unknown_flags_message(extra, [*option_names(parser), *host_flags], parser.prog))
    return vars(parsed)


def flag_error(error: ParameterError, params: Sequence[Param], command: str = "") -> ParameterError:
    """``error`` reworded for the command line: ``--frame-dir`` where it said ``"frame_dir"``.

    Args:
        error: A parameter error (a filter parameter, or a host option such as ``seed``).
        params: The filter's declarations.
        command: The command whose ``--help`` the message points to (none when empty).
    """
    worded = flag_worded(error, params)
    if not error.param or not command:
        return worded
    return ParameterError(f"{worded} (see '{command} --help')", param=error.param, value=error.value)


def folder_path(text: str) -> Path:
    """An argparse ``type`` for a folder the user names (``--gimp-dir``): an empty text is refused, not taken as ``.``.

    Raises:
        argparse.ArgumentTypeError: The text is empty or blank (argparse reports it as a usage error, exit 2).
    """
    if not text.strip():
        raise argparse.ArgumentTypeError(f"must name a folder. Received: {text!r}; leave the flag out for the default")
    return Path(text).expanduser()
