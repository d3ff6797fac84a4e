"""The Python API for notebooks and scripts: ``neurofilters.apply``, ``list_filters``, ``describe``, ``load_model``.

It goes through the same host/filter call as the command line, the batch runner
and the GIMP worker (:func:`~.front.run`), with the same
validation and image loading, so ``apply(...).save(path)`` writes the bytes
``neurofilters run`` writes for the same input, parameters and seed.
"""

from __future__ import annotations

import argparse
import keyword
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .core.context import ModelCache, ProgressCallback
from .core.errors import ParameterError, RegistryError, UsageError
from .core.params import MAX_SEED, Param, format_value, shown_value, validate_params
from .core.quiet import command_stderr_quiet, native_stderr_silenced, quiet_frameworks
from .core.registry import get_registry
from .core.specs import CommandSpec, FilterSpec
from .front import run
from .imageio.files import LoadedImage
from .imageio.guard import WriteGuard, param_inputs
from .imageio.values import load_image_params, to_loaded_image

__all__ = [
    "CommandResult", "FilterInfo", "FilterList", "Result", "apply", "command_argv", "command_parser", "describe", "list_filters",
    "load_model", "run_command",
]

_MODELS: ModelCache | None = None


def _models() -> ModelCache:
    global _MODELS
    if _MODELS is None:
        _MODELS = ModelCache()
    return _MODELS


@dataclass
class Result:
    """What :func:`apply` returns: the filtered pixels, extra outputs, and how to save them.

    Attributes:
        pixels: float32 ``H x W x C`` in [0, 1] (alpha kept when the size was kept).
        outputs: Extra outputs the filter emitted (frames, maps, noise), by name.
        source: The input as loaded (its bit depth, ICC profile and EXIF are
            carried over by :meth:`save`, as the command line does).
        summary: What the filter reported about its result, one line each
            (``"lite0 sees: flamingo 0.93, ..."``, a loss, a PSNR); the lines
            ``neurofilters run`` prints. Empty when the filter says nothing.
        inputs: ``(role, path)`` of every file the call read (the input and
            image parameters given as paths): :meth:`save` never writes over them.
    """

    pixels: Any
    outputs: dict[str, Any] = field(default_factory=dict)
    source: LoadedImage | None = None
    summary: str = ""
    inputs: tuple[tuple[str, str], ...] = ()

    def __array__(self, dtype: Any = None, copy: bool | None = None) -> Any:
        import numpy as np

        return np.asarray(self.pixels, dtype=dtype)

    @property
    def shape(self) -> tuple[int, ...]:
        """The pixels' shape, ``(H, W, C)``."""
        return tuple(self.pixels.shape)

    def save(self, path: str | os.PathLike[str], *, overwrite: bool = False) -> Path:
        """Write the result atomically, like ``neurofilters run`` (format from the suffix), through the host's guard.

        Args:
            path: The file to write.
            overwrite: Replace an existing file that neurofilters did not write (an input never is).

        Returns:
            The path written.

        Raises:
            UsageError: ``path`` is an input of the call, or exists and was not written by neurofilters.
        """
        guard = WriteGuard(self.inputs, overwrite=overwrite, overwrite_flag="overwrite=True")
        return guard.save_image(path, self.pixels, like=self.source)

    def to_pil(self) -> Any:
        """The result as an 8-bit ``PIL.Image.Image`` (RGB, RGBA, L or LA)."""
        import numpy as np
        from PIL import Image

        array = np.rint(np.clip(self.pixels, 0.0, 1.0) * 255.0).astype(np.uint8)
        mode = {1: "L", 2: "LA", 3: "RGB", 4: "RGBA"}[array.shape[2]]
        return Image.fromarray(array[:, :, 0] if mode == "L" else array, mode)


@dataclass(frozen=True)
class FilterInfo:
    """A filter as :func:`list_filters` and :func:`describe` show it.

    Attributes:
        name: The name to pass to :func:`apply`.
        title: Human title.
        category: Menu group.
        summary: One line.
        description: Longer text.
        params: The parameter declarations (name, kind, default, help, bounds).
        presets: The filter's named settings, ``{preset: {param: value}}`` (empty
            when it declares none); the host fills a preset's values into the
            parameters the caller did not give.
        preset_param: The parameter that selects the preset (``"preset"``).
        model_presets: Which preset ``auto`` picks for each model, ``{model: preset}``.
    """

    name: str
    title: str
    category: str
    summary: str
    description: str = field(repr=False)
    params: tuple[Param, ...] = field(repr=False)
    presets: Mapping[str, Mapping[str, Any]] = field(default_factory=dict, repr=False)
    preset_param: str = field(default="preset", repr=False)
    model_presets: Mapping[str, str] = field(default_factory=dict, repr=False)

    def defaults(self) -> dict[str, str]:
        """Each parameter's default, written as a user would type it."""
        return {param.name: format_value(param, param.default) for param in self.params}

    def presets_text(self) -> str:
        """The presets as ``neurofilters describe`` lists them (empty when the filter declares none).

        Example:
            >>> import neurofilters
            >>> "vgg16-hed -> vgg16-classic" in neurofilters.describe("deepdream").presets_text()
            True
        """
        from .cli.docs import presets_text

        return presets_text(self, width=120)


class FilterList(list):  # type: ignore[type-arg]
    """What :func:`list_filters` returns: a list of :class:`FilterInfo` shown one filter per line."""

    def __repr__(self) -> str:
        return "[" + ",\n ".join(repr(info) for info in self) + "]"


def _info(spec: FilterSpec) -> FilterInfo:
    return FilterInfo(
        spec.name, spec.title, spec.category, spec.summary, spec.description, spec.params,
        presets=spec.presets, preset_param=spec.preset_param, model_presets=spec.model_presets,
    )


def list_filters() -> FilterList:
    """Every registered filter (built-ins and installed plugins), sorted by name.

    Example:
        >>> import neurofilters
        >>> "deepdream" in [f.name for f in neurofilters.list_filters()]
        True
    """
    registry = get_registry()
    return FilterList(_info(registry.filters[name]) for name in sorted(registry.filters))


def describe(name: str) -> FilterInfo:
    """The declaration of filter ``name``: title, description and parameters.

    Raises:
        RegistryError: Unknown filter (with suggestions).

    Example:
        >>> import neurofilters
        >>> neurofilters.describe("deepdream").defaults()["octaves"]
        '0'
    """
    return _info(get_registry().get_filter(name))


def load_model(name: str = "lite0") -> Any:
    """Load a model of the zoo (or a ``.keras`` file), cached for this process.

    Args:
        name: A model name (``lite0``, ``vgg16-hed`` ...; see ``neurofilters models``)
            or the path of a ``.keras`` file.

    Returns:
        The zoo's model handle (``classify``, ``layer_table``, ``feature_model`` ...).

    Raises:
        RegistryError: Unknown model.
        ModelUnavailableError: The weights cannot be loaded.
    """
    quiet_frameworks()
    return _models().get(os.fspath(name))


def apply(
    filter: str,
    image: Any,
    *,
    seed: int = 0,
    progress: ProgressCallback | None = None,
    params: Mapping[str, Any] | None = None,
    max_pixels: int | None = None,
    **values: Any,
) -> Result:
    """Apply a filter to an image, as ``neurofilters run`` does.

    Args:
        filter: The filter's name (see :func:`list_filters`).
        image: A file path, a NumPy array (``H x W`` or ``H x W x C``, C = 1..4;
            floats in [0, 1], uint8 or uint16) or a ``PIL.Image.Image``.
        seed: Seed of the filter's randomness: the same seed gives the same bytes.
        progress: ``callback(fraction, message)``, called as the filter works.
        params: Parameter values as a mapping (for names that are not Python
            identifiers, or values kept in a dict); keyword arguments win.
        max_pixels: Largest input accepted from a file (``None``: Pillow's limit).
        **values: Parameter values by name (``steps=5``, ``layers="block5"``); the
            flag ``--class`` is ``class_`` (a Python keyword).
            Image parameters (``guide``, ``mask`` ...) take the same kinds of
            value as ``image``.

    Returns:
        A :class:`Result`: its ``pixels``, extra ``outputs``, ``summary`` and ``save()``.

    Raises:
        RegistryError: Unknown filter.
        ParameterError: An unknown parameter or an invalid value (checked
            before any model loads).
        ImageIOError: An image file cannot be read.

    Example:
        >>> import numpy as np, neurofilters
        >>> out = neurofilters.apply("deepdream", np.full((32, 32, 3), 0.5), seed=7, steps=1, octaves=1)
        >>> out.shape
        (32, 32, 3)
    """
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0 or seed > MAX_SEED:
        raise ParameterError(
            f'"seed" must be an integer between 0 and {MAX_SEED}. Received: seed={shown_value(seed)}',
            param="seed",
            value=seed,
        )
    spec = get_registry().get_filter(filter)
    given = {**dict(params or {}), **values}
    quiet_frameworks()  # before TensorFlow is imported: no C++ log lines in a notebook or a script's terminal
    validated = validate_params(spec.params, given)  # the keyword arguments (and params keys) count as given
    source = to_loaded_image(image, max_pixels=max_pixels)
    loaded = load_image_params(spec.params, validated, max_pixels=max_pixels)  # before the framework's import
    with native_stderr_silenced():  # importing the filter imports the framework, which logs straight to descriptor 2
        spec.runner()
    outputs: dict[str, Any] = {}
    summary: list[str] = []
    pixels = run(spec, source, loaded, seed=seed, progress=progress, models=_models(), emit=outputs.__setitem__,
                 report=summary.append)
    named = ([("the input", os.fspath(image))] if isinstance(image, (str, os.PathLike)) else []) + param_inputs(spec.params, validated)
    return Result(pixels, outputs, source, "\n".join(summary), tuple(named))


# --- Commands from Python: the CLI's own parser, without sys.exit -------------------------------------------------


@dataclass(frozen=True)
class CommandResult:
    """What :func:`run_command` returns.

    Attributes:
        command: The command's name (``classify``).
        argv: The command line the call stands for, without ``neurofilters``
            (``("classify", "cat.png", "--top=3")``): the same words give the
            same result on the command line.
        exit_code: ``0`` for a command that returned its result; for an
            older-form command without ``compute``, the exit code of its ``run``.
        value: The command's result object (rows, a report, the paths
            written): what a declared command's ``run`` returned, or an
            older-form command's ``compute`` result; ``None`` for an
            older-form command that only prints.
    """

    command: str
    argv: tuple[str, ...]
    exit_code: int = 0
    value: Any = None

    @property
    def command_line(self) -> str:
        """The equivalent shell command (``neurofilters classify cat.png --top=3``)."""
        import shlex

        return shlex.join(("neurofilters", *self.argv))


def command_parser(command: CommandSpec | str) -> argparse.ArgumentParser:
    """The argparse parser of a registered command: the one ``neurofilters COMMAND`` uses.

    Args:
        command: A :class:`CommandSpec` or the name of a registered command.

    Raises:
        RegistryError: Unknown command (with suggestions).
    """
    from .cli.main import command_parser as build

    spec = _command(command) if isinstance(command, str) else command
    return build(spec)


def _command(name: str) -> CommandSpec:
    """The registered command ``name``, with the host's command names reserved as the command line reserves them.

    The host's declared commands (``list``, ``describe``, ``models``, ``plugins``,
    ``gimp``) are registered commands like any other.

    Raises:
        RegistryError: Unknown command, or ``run``, ``batch`` or ``video``, whose flags come
            from the filter they are given: the message names the Python function to call instead.
    """
    import difflib

    from .cli.host_commands import HOST_COMMANDS, reserve

    registry = get_registry()
    reserve(registry)  # as build_parser does: a plugin's "list" is dropped here too
    if name in HOST_COMMANDS and name not in registry.commands:
        raise RegistryError(
            f"{name!r} is a command of neurofilters itself, not one run_command runs. Received: {name!r}. "
            "In Python call neurofilters.apply instead; "
            f"on the command line run 'neurofilters {name}'."
        )
    if name not in registry.commands:
        close = difflib.get_close_matches(str(name), list(registry.commands), n=3, cutoff=0.6)
        hint = f" Did you mean: {', '.join(close)}?" if close else ""
        raise RegistryError(
            f"Unknown command. Received: {shown_value(name)!r}.{hint} Commands: {', '.join(sorted(registry.commands))}."
        )
    return registry.commands[name]


def _keyword_names(action: argparse.Action) -> list[str]:
    """The keyword arguments that set ``action``: its ``dest`` and each long flag spelt as an identifier."""
    names = [action.dest]
    for flag in action.option_strings:
        if flag.startswith("--") and not flag.startswith("--no-"):
            name = flag[2:].replace("-", "_")
            names.append(f"{name}_" if keyword.iskeyword(name) else name)
    return list(dict.fromkeys(name for name in names if name and name != argparse.SUPPRESS))


def _options(parser: argparse.ArgumentParser) -> tuple[dict[str, argparse.Action], dict[str, argparse.Action]]:
    """``(positionals, options)`` of ``parser`` by keyword name (help and version actions left out)."""
    positionals: dict[str, argparse.Action] = {}
    options: dict[str, argparse.Action] = {}
    for action in parser._actions:
        if isinstance(action, (argparse._HelpAction, argparse._VersionAction, argparse._SubParsersAction)):
            continue
        if not action.option_strings:
            positionals[action.dest] = action
            continue
        for name in _keyword_names(action):
            options.setdefault(name, action)
    return positionals, options


def _words(value: Any) -> list[str]:
    """A value as command-line words: a list or tuple gives one word per item."""
    items = list(value) if isinstance(value, (list, tuple)) else [value]
    return [os.fspath(item) if isinstance(item, os.PathLike) else str(item) for item in items]


def _flag_words(command: str, name: str, action: argparse.Action, value: Any) -> list[str]:
    """The words that give option ``name`` the value ``value``, as the parser expects them."""
    flag = next((f for f in action.option_strings if f.startswith("--")), action.option_strings[0])
    if action.nargs == 0:  # store_true / store_false / store_const
        switch = isinstance(action.const, bool)
        if switch == isinstance(value, bool):
            if value == action.const:
                return [flag]
            if switch or value == action.default:  # store_true given False, store_false given True: the default
                return []
        wanted = "True or False" if switch else f"{action.const!r} (or leave it out)"
        raise ParameterError(
            f"'{command}' option {name} is a switch ({flag}): pass {wanted}. Received: {name}={shown_value(value)}",
            param=name, value=value,
        )
    if isinstance(value, bool):
        value = "true" if value else "false"
    if action.nargs in ("+", "*") or isinstance(action.nargs, int):
        return [flag, *_words(value)]
    if isinstance(action, argparse._AppendAction):
        return [f"{flag}={word}" for word in _words(value)]
    if isinstance(value, (list, tuple)):
        value = ",".join(_words(value))  # the commands' list options are comma-separated (--methods a,b)
    return [f"{flag}={_words(value)[0]}"]


def _unknown_option(prog: str, name: str, value: Any, names: list[str], choices: list[str]) -> ParameterError:
    """The error for a keyword that is none of the command's options: the closest of ``names`` and all of ``choices``."""
    import difflib

    close = difflib.get_close_matches(name, names, n=1, cutoff=0.6)
    hint = f" Did you mean: {close[0]}?" if close else ""
    return ParameterError(
        f"'{prog}' has no option {name!r}. Received: {name}={shown_value(value)}.{hint} Its options: {', '.join(choices)}.",
        param=name, value=value,
    )


def _action(spec: CommandSpec, positional: list[Any]) -> tuple[CommandSpec, str, list[Any]]:
    """The declared command or action the words name, its program name, and the remaining positional words.

    Raises:
        UsageError: A command with actions called without one, or with an unknown one (argparse's words).
    """
    prog = f"neurofilters {spec.name}"
    if not spec.subcommands:
        return spec, prog, positional
    names = [action.name for action in spec.subcommands]
    if not positional:
        raise UsageError(f"'{spec.name}' needs an action: {' or '.join(names)}. Received: nothing (see '{prog} --help')")
    word = positional[0]
    action = spec.subcommand(word) if isinstance(word, str) else None
    if action is None:
        choices = ", ".join(repr(name) for name in names)
        raise UsageError(f"argument ACTION: invalid choice: {shown_value(word)!r} (choose from {choices}) (see '{prog} --help')")
    return action, f"{prog} {action.name}", positional[1:]


def _declared_given(action: CommandSpec, prog: str, positional: list[Any], options: dict[str, Any]) -> dict[str, Any]:
    """A declared command's values by name, from Python's positional arguments (in order) and keywords.

    ``None`` keeps a parameter's default. A list fills a several-word
    positional (``classify``'s images) when it is the only way left.

    Raises:
        UsageError: More positional arguments than the command takes (argparse's words).
        ParameterError: A keyword that is none of the command's parameters (with the ones it has).
    """
    by_name = {param.name: param for param in action.params}
    given: dict[str, Any] = {}
    slots = [param for param in action.params if param.positional]
    words = list(positional)
    for index, param in enumerate(slots):
        if not words:
            break
        if param.nargs in ("+", "*"):
            later = len(slots) - index - 1
            take = max(len(words) - later, 0)
            given[param.name], words = tuple(words[:take]), words[take:]
        else:
            given[param.name] = words.pop(0)
    if words:
        raise UsageError(f"unrecognized arguments: {' '.join(_words(words))} (see '{prog} --help')")
    for name, value in options.items():
        key = name if name in by_name else f"{name}_" if f"{name}_" in by_name else name
        if key not in by_name:
            raise _unknown_option(prog, name, value, list(by_name), sorted(by_name))
        if value is None:
            continue
        if key in given:
            raise ParameterError(f"'{prog}': {key} was given twice (by position and by name). Received: {key}={shown_value(value)}",
                                 param=key, value=value)
        given[key] = value
    return given


def _declared_argv(spec: CommandSpec, action: CommandSpec, given: dict[str, Any]) -> list[str]:
    """The command line (without ``neurofilters``) that stands for a declared command's values."""
    words = [spec.name] + ([action.name] if action is not spec else [])
    flags: list[str] = []
    by_name = {param.name: param for param in action.params}
    for name, value in given.items():  # positional ones first (as given), then the options in the order given
        param = by_name[name]
        if param.positional:
            words.extend(_words(value))
        elif param.kind == "bool" and isinstance(value, bool):
            flags.extend([param.flag] if value else [])
        elif param.nargs in ("+", "*"):
            flags.extend([param.flag, *_words(value)])
        else:
            flags.append(f"{param.flag}={','.join(_words(value))}")
    return words + flags


def command_argv(command: CommandSpec | str, *positional: Any, **options: Any) -> list[str]:
    """The command line (without ``neurofilters``) that :func:`run_command` parses for these arguments.

    Raises:
        RegistryError: Unknown command.
        ParameterError: A keyword that is none of the command's options (with the options it has).
    """
    spec = _command(command) if isinstance(command, str) else command
    if spec.declared:
        action, prog, words = _action(spec, list(positional))
        return _declared_argv(spec, action, _declared_given(action, prog, words, options))
    parser = command_parser(spec)
    argv: list[str] = []
    for item in positional:
        argv.extend(_words(item))
    prog = parser.prog
    sub = next((a for a in parser._actions if isinstance(a, argparse._SubParsersAction)), None)
    if sub is not None and argv and argv[0] in sub.choices:  # explore patches ...: the action's own options
        parser = sub.choices[argv[0]]
        prog = parser.prog
    positionals, known = _options(parser)
    flags: list[str] = []
    for name, value in options.items():
        if value is None:
            continue  # the command's default
        if name in positionals:
            argv.extend(_words(value))
            continue
        action = known.get(name)
        if action is None:
            choices = sorted({*positionals, *(_keyword_names(a)[-1] for a in known.values())})
            raise _unknown_option(prog, name, value, [*known, *positionals], choices)
        flags.extend(_flag_words(prog, name, action, value))
    return [spec.name, *argv, *flags]


def run_command(command: str, *positional: Any, progress: ProgressCallback | None = None, **options: Any) -> CommandResult:
    """Run a registered command (built-in or a plugin's) from Python, as ``neurofilters COMMAND`` runs it.

    A declared command (``CommandSpec(params=...)``, every built-in one) is
    validated against its declaration, as the command line validates it:
    positional arguments fill its positional parameters in order (a command
    with actions takes the action first: ``"explore", "similar", ...``),
    keywords its options by name (``class_`` for ``--class``, a Python
    keyword), ``None`` keeps a default, a list fills a list parameter. A bad
    value raises the :class:`ParameterError` the command line turns into exit
    code 2, with the same text; a missing required one the same
    :class:`UsageError`. Files are written through the host's guarded writer.
    The command's ``run`` result comes back as ``value``; nothing is printed
    (the command line's ``render`` prints it). The host's own declared commands
    run the same way: ``run_command("list")`` gives the filter rows,
    ``run_command("describe", "deepdream")`` the ``FilterSpec``,
    ``run_command("models")`` the model rows, ``run_command("plugins")`` the
    plugins, ``run_command("gimp", "install", gimp_dir=...)`` the installed path
    (``plugin_host/cli/host_commands.py``); ``run``, ``batch`` and ``video``
    take a filter's flags and are refused (call :func:`apply`).

    An older-form command (``configure(parser)`` and ``run(args)``) is run
    through its own parser: keywords become flags (``top=3`` is ``--top=3``,
    ``True`` sets a switch), and Python gets its ``compute`` result, or the
    exit code of ``run`` (what it prints goes to stdout).

    Args:
        command: The command's name (``classify``, ``fit-noise``, a plugin's command).
        *positional: The positional arguments, in order (``"cat.png"``; for
            ``explore``, the action first: ``"patches"``). Positional
            parameters may also be given by name (``image=["cat.png"]``).
        progress: ``callback(fraction, message)``, called as a declared command's long part goes on
            (what the command line shows as its bar; nothing is drawn from Python).
        **options: The options by name (dashes written as underscores).

    Returns:
        A :class:`CommandResult`: ``value`` is the command's result object
        (``None`` for an older-form command without ``compute``), ``argv`` the
        equivalent command line.

    Raises:
        RegistryError: Unknown command.
        ParameterError: An unknown keyword (with the command's parameters) or a value the command refuses.
        UsageError: A required parameter left out, an unknown action, or (older form) a value argparse refuses.

    Example:
        >>> import neurofilters
        >>> neurofilters.run_command("classify", "cat.png", top=0)
        Traceback (most recent call last):
        ...
        neurofilters.plugin_host.core.errors.ParameterError: --top must be an integer >= 1. Received: --top 0
    """
    spec = _command(command)
    if spec.declared:  # validated through the declaration, as the command line validates it
        from .invoke import call_command

        action, prog, words = _action(spec, list(positional))
        given = _declared_given(action, prog, words, options)
        argv = _declared_argv(spec, action, given)
        with command_stderr_quiet():
            _, value = call_command(action, given, prog=prog, progress=progress)
        return CommandResult(spec.name, tuple(argv), 0, value)
    argv = command_argv(spec, *positional, **options)
    parser = command_parser(spec)
    args = parser.parse_args(argv[1:])  # the host's Parser: a usage error raises UsageError, never exits
    # As on the command line: no TensorFlow, absl or XLA line on descriptor 2; Python's stderr (progress, warnings) kept.
    with command_stderr_quiet():
        compute = spec.computer()
        if compute is not None:
            return CommandResult(spec.name, tuple(argv), 0, compute(args))
        return CommandResult(spec.name, tuple(argv), int(spec.runner()(args) or 0), None)
