"""Running a declared command: its values validated against its ``params``, its context built, its result returned."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

from .core.commands import CommandContext, CommandProgress
from .core.context import ModelCache, ProgressCallback
from .core.errors import ParameterError, UsageError
from .core.params import Param, ParamValues, flag_worded, validate_params
from .core.registry import get_registry
from .core.specs import CommandSpec
from .imageio.guard import guard_for_paths

__all__ = ["PROG", "call_command", "missing_message", "option_label", "validate_command"]

PROG = "neurofilters"


def option_label(param: Param) -> str:
    """How argparse names a parameter in "the following arguments are required": ``-o/--output``, ``image``."""
    if param.positional:
        return param.metavar or param.name
    return "/".join(flag for flag in (param.short, param.flag) if flag)


def missing_message(params: Sequence[Param], values: Mapping[str, Any], prog: str) -> str | None:
    """argparse's words for the required parameters ``values`` lacks (``None`` when none is missing).

    The command line and Python say the same: ``the following arguments are
    required: -o/--output (see 'neurofilters atlas --help')``.
    """
    missing = [option_label(param) for param in params if param.is_required and values.get(param.name) in (None, "", ())]
    if not missing:
        return None
    return f"the following arguments are required: {', '.join(missing)} (see '{prog} --help')"


def validate_command(spec: CommandSpec, given: Mapping[str, Any], prog: str) -> ParamValues:
    """The command's values: ``given`` checked against its ``params``, defaults filled in.

    Args:
        spec: A declared command (or action).
        given: The values the user gave, by parameter name.
        prog: The command as typed (``neurofilters explore patches``), for messages.

    Returns:
        One validated value per declared parameter (``given`` records what was typed).

    Raises:
        UsageError: A required parameter left out (argparse's words).
        ParameterError: A value a parameter refuses: the flag, the value received and what is allowed.
    """
    message = missing_message(spec.params, given, prog)
    if message is not None:
        raise UsageError(message)
    try:
        return validate_params(spec.params, given)
    except ParameterError as error:
        raise flag_worded(error, spec.params) from None


def call_command(
    spec: CommandSpec,
    given: Mapping[str, Any],
    *,
    prog: str,
    announce: Callable[[str], None] | None = None,
    progress: ProgressCallback | None = None,
    models: ModelCache | None = None,
    bar_factory: Callable[[str, str], CommandProgress] | None = None,
) -> tuple[ParamValues, Any]:
    """Validate ``given`` and run a declared command: what the CLI and ``run_command`` both do.

    Args:
        spec: A declared command or action (not one with subcommands).
        given: The user's values by parameter name (strings from the command line, Python values from Python).
        prog: The command as typed, for messages.
        announce: Prints a line at once (the command line: stdout); ``None``: dropped.
        progress: Progress callback handed to the command, or ``None``.
        bar_factory: Makes the command's progress bar (the command line's live bar); ``None``: no bar is drawn.
        models: The model cache; ``None``: a new one for this call, resolving through the registry.

    Returns:
        ``(values, result)``: the validated values and what ``run`` returned.

    Raises:
        UsageError: A required parameter left out, or what the command raises.
        ParameterError: A bad value (the flag and the value received), or what the command raises.
    """
    values = validate_command(spec, given, prog)
    context = CommandContext(
        command=prog.removeprefix(f"{PROG} "),
        models=models if models is not None else ModelCache(get_registry().get_model),
        writer_factory=guard_for_paths,
        overwrite=bool(values.get("overwrite", False)),
        seed=int(values["seed"]) if isinstance(values.get("seed"), int) else 0,
        progress=progress,
        quiet=bool(values.get("quiet", False)),
        bar_factory=bar_factory,
        **({"announce": announce} if announce is not None else {}),
    )
    return values, spec.runner()(values, context)
