"""Argument parsing shared by every command: the raising parser and a filter's flags from its declaration."""

from __future__ import annotations

import argparse
from typing import NoReturn

from ..core.errors import UsageError
from ..core.params import KINDS
from ..core.specs import FilterSpec
from . import docs as _docs

__all__ = ["PROG", "Parser", "filter_parser", "metavar"]

PROG = "neurofilters"


class Parser(argparse.ArgumentParser):
    """argparse with one-line usage errors that raise :class:`UsageError` instead of exiting."""

    def error(self, message: str) -> NoReturn:
        raise UsageError(f"{message} (see '{self.prog} --help')")


def metavar(kind: str) -> str:
    """The placeholder shown for a parameter kind in ``--help`` (``N``, ``X``, ``LAYER`` ...)."""
    return KINDS[kind].metavar if kind in KINDS else "TEXT"


def filter_parser(spec: FilterSpec, prog: str | None = None) -> argparse.ArgumentParser:
    """A parser of one filter's parameters, derived from its declaration."""
    parser = Parser(
        prog=prog or f"{PROG} run {spec.name}",
        add_help=False,
        argument_default=argparse.SUPPRESS,
        description=spec.description,
    )
    group = parser.add_argument_group(f"{spec.title} parameters")
    for param in spec.params:
        default = _docs.param_rows([param])[0][2]
        text = f"{param.help} Allowed: {param.allowed()}. Default: {default}."
        if param.kind == "bool":
            group.add_argument(param.flag, dest=param.name, action=argparse.BooleanOptionalAction, help=text)
        else:
            group.add_argument(param.flag, dest=param.name, metavar=metavar(param.kind), help=text)
    return parser
