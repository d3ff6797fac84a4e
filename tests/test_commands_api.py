"""Every command from Python: ``neurofilters.run_command`` and the typed functions (``classify``, ``layers`` ...).

The command's own parser reads the keywords, so a bad value raises the very
error the command line reports with exit code 2 (the texts are compared), and
the functions return the data the command line prints (the outputs are compared).
Real models, real files.
"""

from __future__ import annotations

import doctest
import inspect
import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

import neurofilters
import neurofilters.commands as commands
from neurofilters.plugin_host.cli.host_commands import is_host_command
import neurofilters.plugin_host as plugin_host
from neurofilters.plugin_host import ParameterError, RegistryError, UsageError
from neurofilters.plugin_host.api import command_argv
from neurofilters.plugin_host.cli.main import main

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "docs" / "examples" / "neurofilters-duotone"


@pytest.fixture(scope="module")
def photos(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """scikit-image's cat and coffee cup (small), and a folder of four photos for fit-noise."""
    from skimage import data

    root = tmp_path_factory.mktemp("photos")
    Image.fromarray(data.chelsea()).save(root / "cat.png")
    Image.fromarray(data.coffee()).save(root / "coffee.png")
    folder = root / "folder"
    folder.mkdir()
    for index, picture in enumerate((data.chelsea(), data.coffee(), data.chelsea()[::-1], data.coffee()[:, ::-1])):
        Image.fromarray(picture[::3, ::3]).save(folder / f"p{index}.png")
    return root


def _cli_error(argv: list[str], capsys: pytest.CaptureFixture[str]) -> str:
    """The message ``neurofilters ARGV`` prints (exit code 2 checked), without ``neurofilters: error:``."""
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("neurofilters: error: ") and len(err.splitlines()) == 1, err
    return err.removeprefix("neurofilters: error: ")


def test_importing_the_functions_imports_no_framework() -> None:
    code = ("import sys\nfrom neurofilters import run_command, classify, layers, finetune, fit_noise, saliency_check\n"
            "print(sorted(m for m in ('tensorflow', 'keras', 'jax', 'torch') if m in sys.modules))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"


def test_every_registered_command_has_a_python_function_with_its_params() -> None:
    """Checked against the declarations: the function's positional arguments are the command's positional
    parameters in order, its keywords the options (layers' --all and --format only choose the printing), and
    every default is the declared one (``None`` stands for the declared default)."""
    registry = plugin_host.get_registry()
    # the host's own commands (list, describe, models, plugins, gimp) are reached through run_command,
    # list_filters and describe (tests/test_host_commands.py)
    host = {name for name, spec in registry.commands.items() if is_host_command(spec)}
    assert host == {"list", "describe", "models", "plugins", "gimp"}
    assert set(registry.commands) - host == set(commands.COMMAND_FUNCTIONS)
    for name, functions in commands.COMMAND_FUNCTIONS.items():
        spec = registry.commands[name]
        for function in functions:
            assert getattr(neurofilters, function.__name__) is function and function.__name__ in neurofilters.__all__
            assert function.__doc__ and "Example:" in function.__doc__, function.__name__
            signature = inspect.signature(function)
            assert signature.return_annotation != inspect.Signature.empty, function.__name__
            assert spec.declared, name  # every built-in command is declared with Params
            action = spec.subcommand(function.__name__.removeprefix(name.replace("-", "_") + "_")) if spec.subcommands else spec
            assert action is not None, function.__name__
            ordered = [p.name for p in signature.parameters.values() if p.kind is inspect.Parameter.POSITIONAL_OR_KEYWORD]
            positional = [param.name for param in action.params if param.positional]
            assert ordered == positional or (ordered, positional) == (["images"], ["image"]), (function.__name__, ordered)
            keywords = {p.name: p for p in signature.parameters.values() if p.kind is inspect.Parameter.KEYWORD_ONLY}
            options = {param.name: param for param in action.params if not param.positional}
            assert set(keywords) == set(options) - {"all", "format"}, (function.__name__, set(keywords) ^ set(options))
            for keyword, parameter in keywords.items():
                param = options[keyword]
                if parameter.default is inspect.Parameter.empty:
                    assert param.is_required, (function.__name__, keyword)
                elif parameter.default is not None:
                    assert param.convert(parameter.default, check_files=False) == param.default, (function.__name__, keyword)


BAD_VALUES: list[tuple[str, list[str], Callable[[Path], Any], type[Exception]]] = [
    ("classify top", ["classify", "{cat}", "--top", "0"], lambda p: neurofilters.classify(p / "cat.png", top=0), ParameterError),
    ("classify model", ["classify", "{cat}", "--model", "vgg16-hed"],
     lambda p: neurofilters.classify(p / "cat.png", model="vgg16-hed"), ParameterError),
    ("layers graph", ["layers", "lite0", "--graph", "{tmp}/g.txt"], lambda p: neurofilters.layers("lite0", graph=p / "g.txt"), ParameterError),
    ("layers model", ["layers", "nosuchmodel"], lambda p: neurofilters.layers("nosuchmodel"), RegistryError),
    ("fit-noise epsilon", ["fit-noise", "{folder}", "--class", "flamingo", "-o", "{tmp}/n.npz", "--epsilon", "40"],
     lambda p: neurofilters.fit_noise(p / "folder", class_="flamingo", output=p / "n.npz", epsilon=40), ParameterError),
    ("fit-noise held-out", ["fit-noise", "{folder}", "--class", "flamingo", "-o", "{tmp}/n.npz", "--held-out", "1.5"],
     lambda p: neurofilters.fit_noise(p / "folder", class_="flamingo", output=p / "n.npz", held_out=1.5), ParameterError),
    ("fit-noise not a number", ["fit-noise", "{folder}", "--class", "flamingo", "-o", "{tmp}/n.npz", "--epsilon", "x"],
     # declared: the Param's message naming the flag (formerly argparse's "invalid float value"), a ParameterError
     lambda p: neurofilters.fit_noise(p / "folder", class_="flamingo", output=p / "n.npz", epsilon="x"), ParameterError),  # type: ignore[arg-type]
    ("finetune suffix", ["finetune", "{folder}", "-o", "{tmp}/net.h5"],
     lambda p: neurofilters.finetune(p / "folder", output=p / "net.h5"), ParameterError),
    ("finetune epochs", ["finetune", "{folder}", "-o", "{tmp}/net.keras", "--epochs", "0"],
     lambda p: neurofilters.finetune(p / "folder", output=p / "net.keras", epochs=0), ParameterError),
    ("finetune augment", ["finetune", "{folder}", "-o", "{tmp}/net.keras", "--augment", "flip,rotate"],
     lambda p: neurofilters.finetune(p / "folder", output=p / "net.keras", augment=["flip", "rotate"]), ParameterError),
    ("saliency-check methods", ["saliency-check", "lite0", "{cat}", "--methods", "sharpen"],
     lambda p: neurofilters.saliency_check("lite0", p / "cat.png", methods="sharpen"), ParameterError),
    ("saliency-check levels", ["saliency-check", "lite0", "{cat}", "--levels", "x"],
     lambda p: neurofilters.saliency_check("lite0", p / "cat.png", levels="x"), ParameterError),  # type: ignore[arg-type]
    ("atlas missing output", ["atlas", "lite0"], lambda p: neurofilters.run_command("atlas", "lite0"), UsageError),
]


@pytest.mark.parametrize(("case", "argv", "call", "error"), BAD_VALUES, ids=[case[0] for case in BAD_VALUES])
def test_a_bad_value_raises_what_the_cli_reports(
    case: str, argv: list[str], call: Callable[[Path], Any], error: type[Exception], photos: Path, tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """The exception's text is the CLI's stderr line (exit 2), word for word; nothing is written."""
    work = tmp_path / "work"
    work.mkdir()
    (work / "folder").symlink_to(photos / "folder")
    (work / "cat.png").symlink_to(photos / "cat.png")
    words = [word.format(cat=work / "cat.png", folder=work / "folder", tmp=work) for word in argv]
    expected = _cli_error(words, capsys)
    with pytest.raises(error) as raised:
        call(work)
    assert type(raised.value) is error
    assert str(raised.value) == expected
    assert sorted(path.name for path in work.iterdir()) == ["cat.png", "folder"]


def test_an_unknown_keyword_is_named_with_the_commands_options() -> None:
    with pytest.raises(ParameterError) as raised:
        neurofilters.run_command("classify", "cat.png", tpo=3)
    text = str(raised.value)
    assert "'neurofilters classify' has no option 'tpo'" in text and "Received: tpo=3" in text
    assert "Did you mean: top?" in text and "Its options: image, model, top." in text
    assert raised.value.param == "tpo"
    with pytest.raises(ParameterError, match="has no option 'levles'.*Did you mean: levels"):
        neurofilters.run_command("saliency-check", "lite0", "cat.png", levles=1)
    with pytest.raises(RegistryError, match="Unknown command. Received: 'clasify'. Did you mean: classify"):
        neurofilters.run_command("clasify", "cat.png")
    with pytest.raises(ParameterError, match="--quiet must be true or false. Received: --quiet maybe"):
        neurofilters.run_command("finetune", "data", output="x.keras", quiet="maybe")
    # a switch is a bool Param: True/False (and 1/0, "yes"/"no", as for filters); anything else is refused
    with pytest.raises(ParameterError, match="--overwrite must be true or false. Received: --overwrite 2"):
        neurofilters.fit_noise("photos", class_="flamingo", output="n.npz", overwrite=2)  # type: ignore[arg-type]


def test_keywords_become_the_flags_the_parser_expects() -> None:
    assert command_argv("classify", "a.png", "b.png", top=3) == ["classify", "a.png", "b.png", "--top=3"]
    assert command_argv("classify", image=["a.png", "b.png"]) == ["classify", "a.png", "b.png"]
    assert command_argv("layers", "lite0", all=True, format="csv", graph=None) == ["layers", "lite0", "--all", "--format=csv"]
    assert command_argv("layers", "lite0", all=False) == ["layers", "lite0"]
    # --class is class_ (a Python keyword) whatever its dest; a list fills a comma-separated option
    assert command_argv("fit-noise", "photos", class_="flamingo", output="n.npz")[2:] == ["--class=flamingo", "--output=n.npz"]
    assert command_argv("saliency-check", "lite0", Path("a.png"), methods=["gradient", "grad-cam"], class_=130) == [
        "saliency-check", "lite0", "a.png", "--methods=gradient,grad-cam", "--class=130"]
    # the action's own options, a value that starts with a dash stays a value
    assert command_argv("explore", "similar", "q.png", "folder", layer="-x", no_cache=True) == [
        "explore", "similar", "q.png", "folder", "--layer=-x", "--no-cache"]


def test_classify_returns_the_rows_the_cli_prints(photos: Path, capsys: pytest.CaptureFixture[str]) -> None:
    cat, coffee = photos / "cat.png", photos / "coffee.png"
    rows = neurofilters.classify([cat, coffee], top=3)
    assert [row.image for row in rows] == [str(cat), str(coffee)]
    assert rows[0].scores[0].class_id in (281, 282, 285) and "cat" in rows[0].label  # a tabby, tiger or Egyptian cat
    assert rows[1].label == "espresso" and rows[1].probability > 0.5
    for row in rows:
        assert [score.rank for score in row.scores] == [1, 2, 3]
        probabilities = [score.probability for score in row.scores]
        assert probabilities == sorted(probabilities, reverse=True) and all(0 < p <= 1 for p in probabilities)
    assert main(["classify", str(cat), str(coffee), "--top", "3"]) == 0
    printed = capsys.readouterr().out
    rendered = "\n".join(
        ("\n" if number else "") + f"{row.image}:\n" + "\n".join(
            f"{s.rank:>2}. {s.probability:7.2%}  {s.class_id:>4}  {s.label}" for s in row.scores)
        for number, row in enumerate(rows)
    ) + "\n"
    assert printed == rendered
    [single] = neurofilters.classify(str(cat), top=1)  # one path, not a list
    assert single.scores == rows[0].scores[:1]


def test_layers_returns_the_table_the_cli_prints(capsys: pytest.CaptureFixture[str]) -> None:
    table = neurofilters.layers("lite0")
    network = neurofilters.load_model("lite0").keras_model
    assert table.total == network.count_params() == table.trainable + table.non_trainable
    assert table.input_size == 224 and table.rows[0].type == "Input" and table.rows[0].activations == (224, 224, 3)
    stem = table["stem_conv"]
    assert (stem.type, stem.activations, stem.count) == ("Conv2D", (112, 112, 32), 864)
    assert [(item.name, item.shape) for item in stem.learnables] == [("Weights", (3, 3, 3, 32))]
    assert sum(row.count for row in table.rows) == table.total
    assert main(["layers", "lite0", "--format", "json"]) == 0
    assert json.loads(capsys.readouterr().out) == table.to_dict()
    via_run = neurofilters.run_command("layers", "lite0", format="csv")  # the printing options change nothing here
    assert via_run.exit_code == 0 and via_run.value.tables == (table,)
    assert via_run.command_line == "neurofilters layers lite0 --format=csv"
    with pytest.raises(KeyError, match="no layer 'nope'"):
        table["nope"]


def test_fit_noise_returns_what_the_cli_prints_and_writes_the_same_noise(photos: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    options = {"epochs": 1, "batch_size": 2, "held_out": 0.25, "seed": 0}
    (tmp_path / "py").mkdir()
    fit = neurofilters.fit_noise(photos / "folder", class_="flamingo", output=tmp_path / "py" / "noise.npz", **options)
    assert fit.target == 130 and fit.label == "flamingo"
    assert fit.output.is_file() and fit.image == fit.output.with_suffix(".png") and fit.image.is_file()
    assert 0 < fit.max_abs <= fit.epsilon == 10.0 and (fit.train_photos, fit.held_out_photos) == (3, 1)
    assert 0.0 <= fit.fooling_train <= 1.0 and 0.0 <= fit.fooling_held_out <= 1.0
    (tmp_path / "cli").mkdir()
    cli_output = tmp_path / "cli" / "noise.npz"
    assert main(["fit-noise", str(photos / "folder"), "--class", "flamingo", "-o", str(cli_output), "--epochs", "1",
                 "--batch-size", "2", "--held-out", "0.25"]) == 0
    printed = capsys.readouterr().out
    assert printed.splitlines()[:2] == [
        f"noise for class 130 (flamingo), |r|max = {fit.max_abs:.4f}/255 (bound 10.0/255)",
        f"fooling rate: training {fit.fooling_train:.1%} (3 photos), held-out {fit.fooling_held_out:.1%} (1 photos)",
    ]
    with np.load(fit.output) as ours, np.load(cli_output) as theirs:
        assert ours["noise"].tobytes() == theirs["noise"].tobytes()
    # the guarded writer: a file neurofilters did not write is never replaced
    theirs_file = tmp_path / "mine.npz"
    theirs_file.write_bytes(b"the user's file")
    with pytest.raises(UsageError, match="overwrite"):
        neurofilters.fit_noise(photos / "folder", class_="flamingo", output=theirs_file, **options)
    assert theirs_file.read_bytes() == b"the user's file"


@pytest.fixture(scope="module")
def textures(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Two classes of 8 crops (64 px) of scikit-image's brick and grass photos."""
    from skimage import data

    root = tmp_path_factory.mktemp("textures")
    rng = np.random.default_rng(0)
    for name in ("brick", "grass"):
        picture = getattr(data, name)()
        (root / name).mkdir()
        for index in range(8):
            top, left = (int(rng.integers(0, extent - 64)) for extent in picture.shape[:2])
            Image.fromarray(picture[top : top + 64, left : left + 64]).convert("RGB").save(root / name / f"{index:02d}.png")
    return root


def test_finetune_returns_the_report_and_the_model_it_wrote(textures: Path, tmp_path: Path) -> None:
    result = neurofilters.finetune(textures, output=tmp_path / "net.keras", image_size=64, epochs=1, quiet=True, seed=3)
    assert result.model == tmp_path / "net.keras" and result.model.is_file()
    assert result.confusion_image == tmp_path / "net-confusion.png" and result.confusion_image.is_file()
    assert result.class_names == ["brick", "grass"] and 0.0 <= result.accuracy <= 1.0
    assert result.report.confusion.sum() == sum(result.report.confusion.sum(axis=1)) > 0
    assert result.settings.seed == 3 and result.settings.image_size == 64
    # the model it wrote is a classifier of the new classes, usable at once
    [row] = neurofilters.classify(textures / "brick" / "00.png", model=str(result.model), top=2)
    assert {score.label for score in row.scores} == {"brick", "grass"}


@pytest.fixture(scope="module")
def example_site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The example plugin (docs/examples/neurofilters-duotone), really installed (pip --target) into a folder."""
    target = tmp_path_factory.mktemp("example-site")
    subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--target", str(target), str(EXAMPLE)],
                   check=True, timeout=600)
    return target


def test_a_plugins_command_shows_in_help_validates_and_runs_from_python(
    example_site: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """The example plugin's ``duotone-ramp`` (register_commands), discovered through its entry point."""
    monkeypatch.syspath_prepend(str(example_site))
    monkeypatch.setenv("NEUROFILTERS_DISABLE_PLUGIN_AUTOLOAD", "")
    plugin_host.reset_registry()
    try:
        assert "duotone-ramp" in plugin_host.get_registry().commands
        with pytest.raises(SystemExit):
            main(["--help"])
        assert "duotone-ramp" in capsys.readouterr().out
        swatch = tmp_path / "swatch.png"
        # declared with Params: run(values, context) returns the file written; the CLI prints it
        result = neurofilters.run_command("duotone-ramp", output=swatch, dark="#000000", light="#ffffff", width=64)
        assert (result.exit_code, result.value) == (0, swatch)
        assert result.argv == ("duotone-ramp", f"--output={swatch}", "--dark=#000000", "--light=#ffffff", "--width=64")
        assert capsys.readouterr().out == ""  # Python receives the result; only the command line prints
        assert main(["duotone-ramp", "-o", str(swatch), "--dark", "#000000", "--light", "#ffffff", "--width", "64"]) == 0
        assert capsys.readouterr().out == f"wrote {swatch}\n"
        with Image.open(swatch) as picture:
            row = np.asarray(picture.convert("L"))[0]
        assert row.shape == (64,) and row[0] == 0 and row[-1] == 255 and np.all(np.diff(row.astype(int)) >= 0)
        with pytest.raises(SystemExit):
            main(["duotone-ramp", "--help"])
        shown = " ".join(capsys.readouterr().out.split())
        assert "-o FILE, --output FILE" in shown and "--width N" in shown and "Allowed: an integer between 2 and 8192" in shown
        # validation from the declaration, the same error in both: a colour, an integer (formerly argparse's
        # "invalid int value", now the Param's message naming the flag), the required option
        for argv, call, error in (
            (["duotone-ramp", "-o", str(tmp_path / "x.png"), "--dark", "nope"],
             lambda: neurofilters.run_command("duotone-ramp", output=tmp_path / "x.png", dark="nope"), ParameterError),
            (["duotone-ramp", "-o", str(tmp_path / "x.png"), "--width", "wide"],
             lambda: neurofilters.run_command("duotone-ramp", output=tmp_path / "x.png", width="wide"), ParameterError),
            (["duotone-ramp"], lambda: neurofilters.run_command("duotone-ramp"), UsageError),
        ):
            expected = _cli_error(argv, capsys)
            with pytest.raises(error) as raised:
                call()
            assert type(raised.value) is error and str(raised.value) == expected
        assert "--dark must be a colour" in _cli_error(["duotone-ramp", "-o", "x.png", "--dark", "nope"], capsys)
        assert "Received: --width wide" in _cli_error(["duotone-ramp", "-o", "x.png", "--width", "wide"], capsys)
        with pytest.raises(ParameterError, match="Its options: dark, light, output, width"):
            neurofilters.run_command("duotone-ramp", output=tmp_path / "x.png", colour="red")
        assert not (tmp_path / "x.png").exists()
    finally:
        monkeypatch.undo()
        plugin_host.reset_registry()


@pytest.fixture
def example_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The files the docstring examples name: ``photo.jpg`` (a cat), ``photos/`` (3 photos), ``textures/brick|grass``."""
    from skimage import data

    Image.fromarray(data.chelsea()).resize((150, 100), Image.BICUBIC).save(tmp_path / "photo.jpg", quality=90)
    (tmp_path / "photos").mkdir()
    for index, picture in enumerate((data.chelsea(), data.coffee(), data.astronaut())):
        Image.fromarray(picture[::4, ::4]).save(tmp_path / "photos" / f"p{index}.png")
    rng = np.random.default_rng(0)
    for name in ("brick", "grass"):
        picture = getattr(data, name)()
        (tmp_path / "textures" / name).mkdir(parents=True)
        for index in range(6):
            top, left = (int(rng.integers(0, extent - 64)) for extent in picture.shape[:2])
            Image.fromarray(picture[top : top + 64, left : left + 64]).convert("RGB").save(tmp_path / "textures" / name / f"{index:02d}.png")
    monkeypatch.chdir(tmp_path)
    return tmp_path


def test_docstring_examples_run(example_folder: Path) -> None:
    """Every example in the functions' docstrings, on real files (the atlas's is marked to skip: it takes minutes)."""
    before = set(os.listdir(example_folder))
    failures, tried = doctest.testmod(commands, optionflags=doctest.ELLIPSIS)
    assert tried >= 25 and failures == 0
    made = set(os.listdir(example_folder)) - before
    assert made == {"noise.npz", "noise.png", "net.keras", "net-confusion.png", "sheet.png"}, made  # the failing calls wrote nothing
    import neurofilters.plugin_host.api as api

    finder = doctest.DocTestFinder()
    runner = doctest.DocTestRunner(optionflags=doctest.ELLIPSIS)
    for test in finder.find(api.run_command, "run_command", globs={}):
        runner.run(test)
    assert runner.summarize(verbose=False).failed == 0 and runner.summarize(verbose=False).attempted >= 2


def test_the_explorer_functions_return_what_the_cli_prints(example_folder: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """``explore_similar`` and ``explore_patches`` return their rows (formerly only an exit code); the CLI prints the same rows."""
    ranked = neurofilters.explore_similar("photo.jpg", "photos", layer="block5", top=2, no_cache=True)
    assert [match.rank for match in ranked.matches] == [1, 2] and ranked.sheet is None
    assert capsys.readouterr().out == ""  # Python receives the result; nothing is printed
    assert main(["explore", "similar", "photo.jpg", "photos", "--layer", "block5", "--top", "2", "--no-cache"]) == 0
    assert capsys.readouterr().out == "".join(f"{m.rank:>3}. {m.similarity:.4f}  {m.path}\n" for m in ranked.matches)
    fractions: list[float] = []
    via_run = neurofilters.run_command("explore", "similar", "photo.jpg", "photos", layer="block5", top=2, no_cache=True,
                                       progress=lambda fraction, message: fractions.append(fraction))
    assert via_run.argv == ("explore", "similar", "photo.jpg", "photos", "--layer=block5", "--top=2", "--no-cache")
    assert fractions and fractions == sorted(fractions) and fractions[-1] == pytest.approx(1.0)  # the bar's fractions, undrawn
    assert via_run.value.matches == ranked.matches
    sheet = neurofilters.explore_patches("lite0", "block5", 3, "photos", output="sheet.png", top=2, size=96)
    assert sheet.sheet == Path("sheet.png") and (example_folder / "sheet.png").is_file() and len(sheet.patches) == 2
    assert [patch.score for patch in sheet.patches] == sorted((patch.score for patch in sheet.patches), reverse=True)
    with pytest.raises(UsageError, match="the following arguments are required: --layer"):
        neurofilters.run_command("explore", "similar", "photo.jpg", "photos")
    with pytest.raises(UsageError, match="'explore' needs an action: patches or similar"):
        neurofilters.run_command("explore")


def test_a_commands_bar_is_the_hosts_and_python_gets_the_fractions() -> None:
    """``context.progress_bar``: the command line's factory makes it (none with --quiet); from Python nothing is drawn
    and the fractions reach the caller's ``progress`` callback."""
    import io

    from neurofilters.plugin_host import CommandContext, ModelCache, ProgressBar

    seen: list[tuple[float, str]] = []
    stream = io.StringIO()

    def factory(label: str, status: str) -> ProgressBar:
        return ProgressBar(label, status=status, stream=stream, delay=0.0, log_interval=0.0)

    def context(**fields: Any) -> CommandContext:
        return CommandContext(command="fit-noise", models=ModelCache(), writer_factory=lambda *a, **k: None, **fields)

    python = context(progress=lambda fraction, message: seen.append((fraction, message))).progress_bar("fit-noise", status="loading")
    python.status("reading 3 photos")
    python(0.5, "epoch 1/2")
    python.close()
    assert seen == [(0.5, "epoch 1/2")]
    cli = context(bar_factory=factory).progress_bar("fit-noise", status="loading")
    assert isinstance(cli, ProgressBar)
    cli(0.5, "epoch 1/2")
    cli.close()
    assert "fit-noise" in stream.getvalue() and "epoch 1/2" in stream.getvalue()
    with pytest.raises(plugin_host.DeclarationError, match="'progress' is reserved"):
        plugin_host.CommandSpec("my-command", "help", params=(plugin_host.Param("progress", "bool", False, "a switch"),), run=print)
    quiet = context(bar_factory=factory, quiet=True).progress_bar("fit-noise")
    assert not isinstance(quiet, ProgressBar)
    quiet(1.0, "done")
    assert seen == [(0.5, "epoch 1/2")]


def test_layers_graph_draws_or_says_what_is_missing(tmp_path: Path) -> None:
    """``graph=``: the drawing, or (no pydot or Graphviz) the command line's one line as an error, nothing written."""
    import importlib.util
    import shutil

    target = tmp_path / "lite0.svg"
    if importlib.util.find_spec("pydot") is not None and shutil.which("dot") is not None:
        assert neurofilters.layers("lite0", graph=target).model == "lite0" and target.is_file()
        return
    with pytest.raises(neurofilters.NeurofiltersError, match="--graph needs .*pip install pydot") as raised:
        neurofilters.layers("lite0", graph=target)
    assert not str(raised.value).startswith("neurofilters:") and not target.exists()


def test_a_command_declares_compute_as_a_callable_or_a_string() -> None:
    from neurofilters.plugin_host import CommandSpec, DeclarationError

    spec = CommandSpec(name="x-y", help="h", configure=lambda parser: None, run=lambda args: 0, compute="json:dumps")
    assert spec.computer() is json.dumps
    assert CommandSpec(name="x-y", help="h", configure=lambda parser: None, run=lambda args: 0).computer() is None
    with pytest.raises(DeclarationError, match="compute must be None, callable or 'module:function'. Received: compute=42"):
        CommandSpec(name="x-y", help="h", configure=lambda parser: None, run=lambda args: 0, compute=42)
