"""Declared commands (``CommandSpec(params=..., run=...)``): the host derives the parser, validation and Python API.

No model loads here: the commands are small ones registered for the test, beside the
older ``configure``/``run(args)`` form, which keeps working.
"""

from __future__ import annotations

import argparse
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

import neurofilters
import neurofilters.plugin_host as plugin_host
from neurofilters.plugin_host import CommandContext, CommandSpec, DeclarationError, FilterSpec, Param, ParameterError, UsageError
from neurofilters.plugin_host.cli.main import main


@dataclass(frozen=True)
class Tally:
    """What the test command returns."""

    words: tuple[str, ...]
    tags: tuple[str, ...]
    count: int | None
    draw: float
    written: Path | None


def _tally(values: Mapping[str, Any], context: CommandContext) -> Tally:
    written = None
    if values["output"]:
        guard = context.writer(("the first word", values["words"][0]))
        written = guard.write_text(values["output"], " ".join(values["words"]) + "\n", what="tally (-o)")
    context.announce(f"counting {len(values['words'])} words")
    return Tally(tuple(values["words"]), tuple(values["tags"]), values["count"], float(context.rng().random()), written)


def _print_tally(result: Tally, values: Mapping[str, Any]) -> int:
    print(" ".join(result.words), "|", ",".join(result.tags), "|", result.count, "|", f"{result.draw:.6f}")
    return 0 if not values["fail"] else 1


TALLY = CommandSpec(
    name="tally",
    help="count words (a test command)",
    params=(
        Param("words", "string", None, "the words", positional=True, nargs="+"),
        Param("tags", "choice", ("a",), "tags", choices=("a", "b", "c"), nargs=","),
        Param("count", "int", None, "how many", minimum=1, maximum=9),
        Param("output", "string", None, "file to write", short="-o", metavar="FILE"),
        Param("seed", "int", 0, "seed", minimum=0),
        Param("fail", "bool", False, "exit 1 after printing"),
        Param("overwrite", "bool", False, "replace files neurofilters did not write"),
    ),
    run=_tally,
    render=_print_tally,
)

ACTIONS = CommandSpec(
    name="acts",
    help="a command with actions (a test command)",
    subcommands=(
        CommandSpec(name="one", help="the first", params=(Param("name", "string", None, "a name", required=True),),
                    run=lambda values, context: f"one {values['name']}", render=lambda result, values: print(result)),
        CommandSpec(name="two", help="the second", params=(), run=lambda values, context: "two"),
    ),
)


def _configure_old(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("word")
    parser.add_argument("--times", type=int, default=1)


def _run_old(args: argparse.Namespace) -> int:
    print(" ".join([args.word] * args.times))
    return 0


OLD = CommandSpec(name="old-echo", help="echo a word (the older form)", configure=_configure_old, run=_run_old)


@pytest.fixture
def registered(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """The three test commands in the process registry, for this test only."""
    commands = plugin_host.get_registry().commands
    for spec in (TALLY, ACTIONS, OLD):
        monkeypatch.setitem(commands, spec.name, spec)
    yield


def _cli_error(argv: list[str], capsys: pytest.CaptureFixture[str]) -> str:
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("neurofilters: error: ") and len(err.splitlines()) == 1, err
    return err.removeprefix("neurofilters: error: ")


def test_the_cli_and_python_get_the_same_values_and_result(registered: None, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["tally", "x", "y", "--tags", "b,c", "--count", "3", "--seed", "7"]) == 0
    printed = capsys.readouterr().out
    assert printed.splitlines()[0] == "counting 2 words"  # announce: printed at once on the command line
    result = neurofilters.run_command("tally", "x", "y", tags=["b", "c"], count=3, seed=7)
    assert capsys.readouterr().out == ""  # Python receives the result; nothing is printed
    assert result.value.words == ("x", "y") and result.value.tags == ("b", "c") and result.value.count == 3
    assert printed.splitlines()[1] == f"x y | b,c | 3 | {result.value.draw:.6f}"  # the same seed, the same draw
    assert result.argv == ("tally", "x", "y", "--tags=b,c", "--count=3", "--seed=7")
    assert neurofilters.run_command("tally", "x").value.count is None  # a None default: no value
    assert main(["tally", "x", "--fail"]) == 1  # render's exit code


@pytest.mark.parametrize(
    ("argv", "keywords", "error", "text"),
    [
        (["tally", "x", "--count", "0"], {"count": 0}, ParameterError,
         "--count must be an integer between 1 and 9. Received: --count 0"),
        (["tally", "x", "--tags", "a,z"], {"tags": ["a", "z"]}, ParameterError,
         "--tags must be a comma-separated list of a, b, c. Received: --tags a,z"),
        (["tally", "x", "--count", "many"], {"count": "many"}, ParameterError,
         "--count must be an integer between 1 and 9. Received: --count many"),
        (["tally"], {}, UsageError, "the following arguments are required: words (see 'neurofilters tally --help')"),
        (["acts", "one"], {}, UsageError, "the following arguments are required: --name (see 'neurofilters acts one --help')"),
    ],
)
def test_a_bad_value_is_the_same_error_everywhere(
    registered: None, capsys: pytest.CaptureFixture[str], argv: list[str], keywords: dict[str, Any], error: type[Exception], text: str,
) -> None:
    assert _cli_error(argv, capsys) == text
    positional = argv[1:2] if argv[0] == "tally" else argv[1:]
    with pytest.raises(error) as raised:
        neurofilters.run_command(argv[0], *positional, **keywords)
    assert type(raised.value) is error and str(raised.value) == text


def test_help_comes_from_the_declaration(registered: None, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["tally", "--help"])
    shown = " ".join(capsys.readouterr().out.split())
    assert "usage: neurofilters tally" in shown and "-o FILE, --output FILE" in shown
    assert "--count N how many. Allowed: an integer between 1 and 9." in shown
    assert "--tags CHOICE tags. Allowed: a comma-separated list of a, b, c. Default: a." in shown


def test_the_writer_is_the_hosts_guard(registered: None, tmp_path: Path) -> None:
    first = tmp_path / "first.txt"
    first.write_text("mine")
    with pytest.raises(UsageError, match="inputs are never overwritten"):
        neurofilters.run_command("tally", str(first), output=first)
    mine = tmp_path / "mine.txt"
    mine.write_text("the user's")
    with pytest.raises(UsageError, match="pass --overwrite to replace it"):
        neurofilters.run_command("tally", "x", output=mine)
    assert neurofilters.run_command("tally", "x", "y", output=mine, overwrite=True).value.written == mine
    assert mine.read_text() == "x y\n" and first.read_text() == "mine"


def test_actions(registered: None, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["acts"]) == 2 and "one" in capsys.readouterr().out  # no action: the command's help
    assert main(["acts", "one", "--name", "n"]) == 0 and capsys.readouterr().out == "one n\n"
    assert neurofilters.run_command("acts", "one", name="n").value == "one n"
    assert neurofilters.run_command("acts", "two").argv == ("acts", "two")
    with pytest.raises(UsageError, match="'acts' needs an action: one or two"):
        neurofilters.run_command("acts")
    with pytest.raises(UsageError, match="invalid choice: 'three'"):
        neurofilters.run_command("acts", "three")


def test_the_older_form_keeps_working(registered: None, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["old-echo", "hi", "--times", "2"]) == 0 and capsys.readouterr().out == "hi hi\n"
    result = neurofilters.run_command("old-echo", "hi", times=3)
    assert (result.exit_code, result.value, result.argv) == (0, None, ("old-echo", "hi", "--times=3"))
    assert capsys.readouterr().out == "hi hi hi\n"
    with pytest.raises(UsageError, match="invalid int value"):
        neurofilters.run_command("old-echo", "hi", times="x")


def test_declarations_are_checked() -> None:
    run = _tally
    with pytest.raises(DeclarationError, match="mixes the two forms"):
        CommandSpec(name="x", help="h", configure=_configure_old, run=run, params=(Param("a", "int", 1, "a"),))
    with pytest.raises(DeclarationError, match="needs run"):
        CommandSpec(name="x", help="h", params=(Param("a", "int", 1, "a"),))
    with pytest.raises(DeclarationError, match="positional parameters first"):
        CommandSpec(name="x", help="h", run=run, params=(Param("a", "int", 1, "a"), Param("b", "string", None, "b", positional=True)))
    with pytest.raises(DeclarationError, match="declares a flag twice"):
        CommandSpec(name="x", help="h", run=run, params=(Param("a", "int", 1, "a", short="-o"), Param("b", "int", 1, "b", short="-o")))
    with pytest.raises(DeclarationError, match="the actions declare params"):
        CommandSpec(name="x", help="h", run=run, subcommands=(ACTIONS.subcommands[0],))
    with pytest.raises(DeclarationError, match="compute belongs to the older form"):
        CommandSpec(name="x", help="h", run=run, compute=run)
    with pytest.raises(DeclarationError, match="nargs must be one of"):
        Param("a", "string", None, "a", nargs="?")
    with pytest.raises(DeclarationError, match="positional, nargs and short are for commands"):
        FilterSpec("f", "F", "f.", "", "Misc", (Param("a", "string", "", "a", short="-a"),), run=lambda image, params, context: image)
    with pytest.raises(DeclarationError, match="a filter parameter needs a default"):
        FilterSpec("f", "F", "f.", "", "Misc", (Param("a", "int", None, "a"),), run=lambda image, params, context: image)


def test_the_context_derives_seeds_by_the_hosts_rule() -> None:
    from neurofilters.plugin_host.core.call import derive_seed
    from neurofilters.plugin_host.imageio.guard import guard_for_paths

    context = CommandContext(command="tally", models=plugin_host.ModelCache(), writer_factory=guard_for_paths, seed=5)
    assert context.derive_seed("split") == derive_seed(5, "split")
    assert context.rng("split").random() == CommandContext(
        command="t", models=plugin_host.ModelCache(), writer_factory=guard_for_paths, seed=5).rng("split").random()
    assert context.rng().random() != context.rng("split").random()


def test_a_parameter_may_take_a_name_the_host_uses(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    """``command`` and ``run_parser`` are the host's own namespace entries; a command's parameters never meet them."""
    spec = CommandSpec(
        name="names", help="parameters named like the host's entries",
        params=(Param("command", "string", None, "a word", positional=True), Param("run_parser", "int", 1, "a number")),
        run=lambda values, context: (values["command"], values["run_parser"]), render=lambda result, values: print(*result),
    )
    monkeypatch.setitem(plugin_host.get_registry().commands, spec.name, spec)
    assert main(["names", "list", "--run-parser", "3"]) == 0 and capsys.readouterr().out == "list 3\n"
    assert neurofilters.run_command("names", "list", run_parser=3).value == ("list", 3)
