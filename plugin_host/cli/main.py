"""The ``neurofilters`` command.

Exit codes: 0 success, 1 failure (the filter or I/O failed), 2 usage error
(bad command line, unknown filter/model/parameter, invalid value),
130 interrupted (Ctrl+C or SIGTERM). Tracebacks are printed only with ``--debug``.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ..core.errors import FilterCancelled, NeurofiltersError, ParameterError, RegistryError, UsageError
from ..core.params import shorten
from ..core.quiet import QUIET_ENV, command_stderr_quiet
from ..core.registry import Registry, distribution_version, get_registry
from ..core.specs import CommandSpec
from .args import PROG, Parser, add_command_arguments, command_given, help_text, print_help_with_filter
from .host_commands import HOST_COMMANDS, host_spec, is_host_command, reserve

__all__ = ["HOST_COMMANDS", "main", "build_parser", "command_parser", "unexpected_error_line", "UsageError"]

# HOST_COMMANDS: the host's own subcommands (``host_commands``). The CLI owns these names and hands them to the
# registry (``host_commands.reserve``: Registry.reserve_commands), which keeps the host's declarations registered
# through the ``host`` entry point and drops a plugin command that takes one of the names.


def _version() -> str:
    """This installation's version, for --version."""
    return distribution_version("neurofilters")


def build_parser(registry: Registry | None = None) -> argparse.ArgumentParser:
    """The top-level parser with every subcommand (the host's and those plugins register)."""
    parser = Parser(
        prog=PROG,
        description="Neural image filters: DeepDream, class hallucination, saliency, texture transfer "
        "and a network explorer, on the command line, on folders and inside GIMP 3.",
        epilog="Run 'neurofilters describe FILTER' for a filter's parameters. "
        "Exit codes: 0 ok, 1 failure, 2 usage error, 130 interrupted.",
    )
    parser.add_argument("--debug", action="store_true", help="print tracebacks of errors")
    parser.add_argument("--version", action="version", version=f"%(prog)s {_version()}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=Parser)
    if registry is not None:
        reserve(registry)

    def host(name: str) -> None:
        """The host's declared command ``name`` (the registered declaration; the module's if the registry lacks it)."""
        spec = registry.commands.get(name) if registry is not None else None
        spec = spec if spec is not None and is_host_command(spec) else host_spec(name)
        assert spec is not None
        command_parser(spec, sub.add_parser(spec.name, help=help_text(spec.help), description=spec.description or None))

    host("list")
    host("describe")

    run = sub.add_parser(
        "run",
        add_help=False,
        help="apply a filter to one image",
        usage="neurofilters run FILTER INPUT -o OUTPUT [--seed N] [--PARAM VALUE ...]",
        description="Apply FILTER to INPUT and write OUTPUT. Filter parameters are given as "
        "--name value; 'neurofilters run FILTER --help' lists them.",
    )
    run.add_argument("filter", nargs="?", help="filter name")
    run.add_argument("input", nargs="?", help="input image")
    run.add_argument("-o", "--output", help="output image (format from the suffix: png, jpg, webp, tif, bmp); "
                     "a missing folder is created, as 'batch' does with OUTDIR")
    run.add_argument("--seed", default="0", help="seed of the filter's randomness, an integer >= 0 (default 0)")
    run.add_argument("-q", "--quiet", action="store_true", help="no status line or progress bar")
    run.add_argument("--overwrite", action="store_true", help="replace existing files that neurofilters did not write (never an input)")
    run.add_argument(
        "--max-pixels",
        default=None,
        metavar="N",
        help="largest input accepted, in pixels; 0 = no limit (default: Pillow's decompression-bomb limit)",
    )
    run.add_argument("-h", "--help", action="store_true", help="show this help (with the filter's parameters)")

    parser.set_defaults(run_parser=run)

    host("models")
    host("plugins")

    from .batch_command import add_batch_parser

    add_batch_parser(sub)
    from .video_command import add_video_parser

    add_video_parser(sub)

    for command in (registry.commands.values() if registry is not None else ()):
        if command.name not in HOST_COMMANDS:
            command_parser(command, sub.add_parser(command.name, help=help_text(command.help), description=command.description or command.help))

    host("gimp")
    for each in _parsers(sub):  # suggestions for a mistyped flag
        each.set_defaults(command_parser=each)
    return parser


def _parsers(sub: argparse._SubParsersAction, descend: tuple[str, ...] = ("gimp",)) -> list[argparse.ArgumentParser]:
    """The commands' parsers under ``sub``, and the actions' of the commands in ``descend`` (``gimp install``).

    (A plugin command's actions keep their command's parser for the suggestions, as they always had.)
    """
    found = []
    for name, each in sub.choices.items():
        found.append(each)
        for action in each._actions if name in descend else ():
            if isinstance(action, argparse._SubParsersAction):
                found.extend(action.choices.values())
    return found


def command_parser(command: CommandSpec, parser: argparse.ArgumentParser | None = None) -> argparse.ArgumentParser:
    """The parser of a registered command: ``neurofilters COMMAND``'s, also what ``neurofilters.run_command`` parses with.

    Args:
        command: The command's declaration.
        parser: The sub-parser ``build_parser`` made for it; ``None``: a stand-alone
            parser with the same program name, description and arguments.
    """
    # The host's own commands keep the --help they had before they were declared (docs/cli.md pins it):
    # help lines as written, no description where they had none.
    verbatim = is_host_command(command)

    def description(spec: CommandSpec) -> str | None:
        return (spec.description or None) if verbatim else (spec.description or spec.help)

    if parser is None:
        parser = Parser(prog=f"{PROG} {command.name}", description=description(command))
    if not command.declared:  # the older form: the plugin adds its own arguments
        command.configurer()(parser)
    elif command.subcommands:
        actions = parser.add_subparsers(dest=f"{command.name}_action", metavar="ACTION", parser_class=Parser)
        for action in command.subcommands:
            sub = actions.add_parser(action.name, help=help_text(action.help), description=description(action))
            add_command_arguments(sub, action.params, verbatim=verbatim)
            sub.set_defaults(plugin_command=action, command_prog=sub.prog)
    else:
        add_command_arguments(parser, command.params, verbatim=verbatim)
    parser.set_defaults(plugin_command=command, command_prog=parser.prog, command_help=parser)
    return parser


def _run_declared(command: CommandSpec, args: argparse.Namespace) -> int:
    """A declared command from the command line: the typed values validated, run, the result rendered."""
    if command.subcommands:  # no action given: the command's help (the host's gimp: its one-line error, as before)
        if is_host_command(command):
            raise UsageError(f"'{command.name}' needs an action: {' or '.join(action.name for action in command.subcommands)}")
        args.command_help.print_help()
        return 2
    from ..invoke import call_command
    from .progress import ProgressBar

    given = command_given(command.params, args)

    def announce(line: str) -> None:
        print(line, flush=True)

    def bar(label: str, status: str) -> ProgressBar:
        return ProgressBar(label, status=status)

    values, result = call_command(command, given, prog=args.command_prog, announce=announce, bar_factory=bar)
    render = command.renderer()
    return int(render(result, values) or 0) if render is not None else 0


def check_output_path(text: str, inputs: Sequence[str] = ()) -> Path:
    """Check ``-o OUTPUT`` before any model loads: its format, its folder (created if missing), writability.

    The rule is the batch command's for OUTDIR: a missing folder is created.

    Returns:
        The output path.

    Raises:
        UsageError: Unknown format suffix, an existing folder named as the file,
            a folder that cannot be created or written, or an input named as the output.
    """
    from ..imageio.files import SAVE_FORMATS

    output = Path(text).expanduser()
    if output.suffix.lower() not in SAVE_FORMATS:
        raise UsageError(
            f"-o takes its format from the file suffix, which must be one of {', '.join(SAVE_FORMATS)}. "
            f"Received: -o {shorten(text)}"
        )
    if output.is_dir():
        raise UsageError(f"-o must name an image file, not a folder. Received: -o {shorten(text)}")
    folder = output.parent
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise UsageError(
            f"Cannot create the output folder {shorten(str(folder))}: {error.strerror or error}. Received: -o {shorten(text)}"
        ) from None
    if not os.access(folder, os.W_OK | os.X_OK):
        raise UsageError(f"The output folder {shorten(str(folder))} is not writable. Received: -o {shorten(text)}")
    for source in inputs:
        try:
            same = output.exists() and os.path.samefile(source, output)
        except OSError:
            same = False
        if same:
            raise UsageError(f"The output would overwrite the input; choose another -o. Received: -o {shorten(text)}")
    return output


def _cmd_run(args: argparse.Namespace, extra: list[str], registry: Registry) -> int:
    from ..core.call import check_class_names
    from ..core.params import parse_seed, validate_params
    from .args import flag_error, option_names, parse_filter_flags

    run_parser: argparse.ArgumentParser = args.run_parser
    if args.filter is None:
        if args.help:
            run_parser.print_help()
            return 0
        raise UsageError("missing FILTER (see 'neurofilters list')")
    spec = registry.get_filter(args.filter)
    command = f"{PROG} run {spec.name}"
    if args.help:
        print_help_with_filter(run_parser, spec)
        return 0
    if args.input is None or args.output is None:
        stray = f" Received after the filter name: {shorten(' '.join(extra))}." if extra else ""
        raise UsageError(
            "'run' needs INPUT and -o OUTPUT before the filter's parameters, e.g. "
            f"neurofilters run {spec.name} photo.jpg -o out.png --steps 5.{stray}"
        )
    # Everything the command line can get wrong is checked here, before any model loads.
    given = parse_filter_flags(spec, extra, host_flags=option_names(run_parser))
    try:
        seed = parse_seed(args.seed)
        values = validate_params(spec.params, given)
        check_class_names(spec, values)  # from the model's label list: no framework, milliseconds
        max_pixels = _max_pixels(args.max_pixels)
    except ParameterError as error:
        raise flag_error(error, spec.params, command) from None
    if not os.path.exists(args.input):
        raise ParameterError(
            f"Input not found. Received: {shorten(args.input)}; give an existing image file.", param="input", value=args.input
        )
    from ..imageio.guard import check_name_lengths, guard_for_paths, param_inputs

    check_name_lengths(args.output)  # (a name over 255 bytes makes every file test below an OSError)
    output = check_output_path(args.output, [args.input])

    guard = guard_for_paths(("the input", args.input), *param_inputs(spec.params, values), overwrite=args.overwrite)
    guard.check(output)

    from ..front import run
    from ..imageio.values import load_image_file
    from .progress import ProgressBar

    bar = None if args.quiet else ProgressBar(spec.name, status=f"reading {Path(args.input).name}…")
    try:
        image = load_image_file(args.input, max_pixels=max_pixels)  # .xcf too (flattened)

        def write_extra(name: str, pixels: Any) -> None:
            # Extra outputs (frames, maps) go beside the output: OUT-NAME.SUFFIX, never over the input.
            path = output.with_name(f"{output.stem}-{name}{output.suffix}")
            guard.save_image(path, pixels, what="extra output")

        if bar is not None:
            bar.status(f"starting {spec.name} (loading the network library)…")
        def report(line: str) -> None:
            # The run's summary (what the network sees, a loss) stays on screen, above the bar.
            if bar is not None:
                bar.report(line)
            else:
                print(line, file=sys.stderr, flush=True)

        try:
            result = run(spec, image, values, seed=seed, progress=bar, emit=write_extra, report=report, max_pixels=max_pixels)
        except ParameterError as error:  # an unreadable image parameter, a value only the filter can judge: its flag
            raise flag_error(error, spec.params, command) if _names_a_param(error, spec.params) else error from None
    finally:
        if bar is not None:
            bar.close()
    written = guard.save_image(output, result, like=image)
    print(f"wrote {written}")
    return 0


def _names_a_param(error: ParameterError, params: Sequence[Any]) -> bool:
    """Whether ``error`` is about one of the filter's own parameters (not, say, a model file's setting)."""
    return bool(error.param) and str(error.param).replace("-", "_") in {param.name for param in params}


def _max_pixels(text: str | None) -> int | None:
    if text is None:
        return None
    try:
        value = int(text)
        if value < 0:
            raise ValueError
    except ValueError:
        raise ParameterError(
            f'"max_pixels" must be an integer >= 0 (0 = no limit). Received: max_pixels={shorten(text)}',
            param="max_pixels",
            value=text,
        ) from None
    return value


def _dispatch(argv: Sequence[str] | None) -> int:
    registry = get_registry()
    parser = build_parser(registry)
    args, extra = parser.parse_known_args(argv)
    extra = [word for word in extra if word != "--debug"]  # --debug is global wherever it stands
    if args.command is None:
        parser.print_help()
        return 2
    if args.command not in ("run", "batch", "video") and extra:
        from .args import option_names, unknown_flags_message

        raise UsageError(unknown_flags_message(extra, option_names(args.command_parser), args.command_parser.prog))
    command = getattr(args, "plugin_command", None)
    if command is not None:
        return _run_declared(command, args) if command.declared else int(command.runner()(args) or 0)
    if args.command == "run":
        return _cmd_run(args, extra, registry)
    if args.command == "batch":
        from .batch_command import run_batch_command

        return run_batch_command(args, extra, registry)
    if args.command == "video":
        from .video_command import run_video_command

        return run_video_command(args, extra, registry)
    raise UsageError(f"invalid choice: {args.command!r} (see '{PROG} --help')")  # unreachable: argparse knows every command


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line and return its exit code."""
    debug = "--debug" in (sys.argv[1:] if argv is None else argv)
    from ..core.lifecycle import start_process

    start_process()  # SIGTERM handled like Ctrl+C (exit 130); library temporaries in a folder removed at exit
    if debug:
        os.environ[QUIET_ENV] = "0"  # keep the frameworks' own log lines
    try:
        # No TensorFlow, absl, Keras or XLA line on the terminal (descriptor 2 silenced; our stderr kept).
        with command_stderr_quiet():
            return _dispatch(argv)
    except (UsageError, ParameterError, RegistryError) as error:
        if debug:
            raise
        print(f"{PROG}: error: {error}", file=sys.stderr)
        return 2
    except FilterCancelled:
        print(f"{PROG}: cancelled", file=sys.stderr)
        return 130
    except KeyboardInterrupt:
        print(f"{PROG}: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # the reader went away (| head): nothing more to say
        try:
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # no second error at exit's flush
        except (OSError, ValueError):
            pass
        return 0
    except NeurofiltersError as error:
        if debug:
            raise
        print(f"{PROG}: error: {error}", file=sys.stderr)
        return 1
    except Exception as error:  # an unexpected failure: one line, traceback with --debug
        if debug:
            raise
        print(unexpected_error_line(error), file=sys.stderr)
        return 1


#: The longest message of an unexpected error the command line prints (the rest: ``--debug``).
UNEXPECTED_LIMIT = 200


def unexpected_error_line(error: BaseException, limit: int = UNEXPECTED_LIMIT) -> str:
    """The one line the command line prints for an unexpected exception (without ``--debug``).

    A framework's message can run over many lines (a Keras error quotes the
    layer's call and its arguments): only its first non-empty line is shown,
    cut to ``limit`` characters, and the line says how to see the rest.

    Args:
        error: The exception.
        limit: Most characters of the message shown.

    Returns:
        ``neurofilters: error: TYPE: FIRST LINE (run with --debug ...)``, without a newline.
    """
    try:
        text = str(error)
    except Exception:  # a broken __str__ must not hide the error's type
        text = ""
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    first = lines[0] if lines else ""
    cut = len(lines) > 1 or len(first) > limit
    if len(first) > limit:
        first = first[: limit - 1].rstrip() + "…"
    head = f"{type(error).__name__}: {first}" if first else type(error).__name__
    hint = "run with --debug for the whole message and the traceback" if cut else "run with --debug for the traceback"
    return f"{PROG}: error: {head} ({hint})"


if __name__ == "__main__":
    sys.exit(main())
