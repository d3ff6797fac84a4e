"""The command line: exit codes, messages, the light start-up path, the example plugin."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from neurofilters.plugin_host.cli.main import main

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "docs" / "examples" / "neurofilters-duotone"


def run_cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """Run ``python -m neurofilters.plugin_host ARGS`` in a fresh interpreter."""
    full_env = {**os.environ, **(env or {})}
    return subprocess.run(
        [sys.executable, "-m", "neurofilters.plugin_host", *args], capture_output=True, text=True, env=full_env, timeout=300
    )


@pytest.fixture(scope="session")
def example_site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The example plugin, really installed (pip --target) into a folder."""
    target = tmp_path_factory.mktemp("example-site")
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--target", str(target), str(EXAMPLE)],
        check=True,
        timeout=600,
    )
    assert list(target.glob("neurofilters_duotone-*.dist-info"))
    return target


@pytest.mark.parametrize(
    "args",
    [["--help"], ["list"], ["describe", "deepdream"], ["plugins"], ["models"], ["run", "deepdream", "--help"], ["run", "texture", "--help"],
     # declared commands: parser and --help come from their Params, validation runs before any model loads
     ["classify", "--help"], ["explore", "patches", "--help"], ["finetune", "--help"], ["fit-noise", "--help"],
     ["classify", "x.png", "--top", "0"], ["atlas", "lite0", "-o", "site", "--channels", "0"]],
)
def test_light_commands_never_import_tensorflow(args: list[str]) -> None:
    code = (
        "import sys\nfrom neurofilters.plugin_host.cli.main import main\n"
        "try:\n    rc = main(sys.argv[1:])\nexcept SystemExit as e:\n    rc = e.code\n"
        "heavy = sorted(m for m in ('tensorflow', 'keras', 'jax', 'torch') if m in sys.modules)\n"
        "print('HEAVY', heavy)\nsys.exit(rc)\n"
    )
    result = subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, timeout=120)
    assert result.returncode == (2 if "0" in args else 0), result.stderr
    assert "HEAVY []" in result.stdout


def test_every_filter_help_renders_with_its_percent_signs(capsys: pytest.CaptureFixture[str]) -> None:
    """argparse formats help with '%': texture's "0.1 % in 5 iterations" was a TypeError in --help."""
    from neurofilters.plugin_host import get_registry

    names = sorted(get_registry().filters)
    assert "texture" in names and "style-transfer" in names
    for name in names:
        assert main(["run", name, "--help"]) == 0, capsys.readouterr().err
        out, err = capsys.readouterr()
        assert "usage: neurofilters run" in out and "error" not in err, (name, err)
        if name in ("texture", "style-transfer"):
            assert "0.1 % in 5 iterations" in " ".join(out.split())


def test_list_and_describe(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["list"]) == 0
    out = capsys.readouterr().out
    assert "deepdream" in out and "Dream:" in out
    assert main(["describe", "deepdream"]) == 0
    out = capsys.readouterr().out
    assert "--steps" in out and "Parameters:" in out


def test_describe_lists_the_presets_and_what_auto_picks(capsys: pytest.CaptureFixture[str]) -> None:
    """Each declared preset with the flags it sets, and which model picks which preset under ``auto``."""
    from neurofilters.filters.deepdream.plugin import MODEL_PRESETS, PRESETS

    assert main(["describe", "deepdream"]) == 0
    out = capsys.readouterr().out
    section = out[out.index("Presets (--preset NAME"):out.index("Usage:")]
    flat = " ".join(section.split())
    for name in PRESETS:
        assert f"\n {name} " in section or f"\n{name} " in section, name
    assert "vgg16-hed -> vgg16-classic" in flat and MODEL_PRESETS == {"vgg16-hed": "vgg16-classic"}
    assert "--model inception-v3 --layers mixed3,mixed5 --loss mean --normalize std --step-size 0.005" in flat
    assert "--chroma 0.15" in flat  # vgg16-classic
    assert "nothing: the declared defaults" in flat  # none
    assert main(["describe", "texture"]) == 0  # a filter without presets: no section
    assert "Presets" not in capsys.readouterr().out


@pytest.mark.parametrize(
    ("args", "code", "fragment"),
    [
        (["run", "nosuchfilter", "a.png", "-o", "b.png"], 2, "Unknown filter. Received: 'nosuchfilter'"),
        (["run"], 2, "missing FILTER"),
        (["run", "deepdream", "in.png"], 2, "needs INPUT and -o OUTPUT"),
        (["frobnicate"], 2, "invalid choice: 'frobnicate'"),
        (["list", "extra"], 2, "unrecognized arguments: extra"),
        (["describe", "deepdraem"], 2, "Did you mean: deepdream?"),
        (["layers", "nosuchmodel"], 2, "Unknown model. Received: 'nosuchmodel'"),
        (["classify", "x.png", "--top", "0"], 2, "--top must be an integer >= 1. Received: --top 0"),  # declared: the flag, as filters
        (["gimp"], 2, "needs an action"),
    ],
)
def test_usage_errors_exit_2_with_one_line(
    args: list[str], code: int, fragment: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(args) == code
    err = capsys.readouterr().err
    assert fragment in err
    assert len(err.strip().splitlines()) == 1, err
    assert "Traceback" not in err


def test_bad_parameter_value_and_name_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    source = tmp_path / "in.png"
    Image.new("RGB", (8, 8), "gray").save(source)
    assert main(["run", "deepdream", str(source), "-o", str(tmp_path / "o.png"), "--steps", "-3"]) == 2
    assert "--steps must be an integer between 1 and 1000. Received: --steps -3" in capsys.readouterr().err
    assert main(["run", "deepdream", str(source), "-o", str(tmp_path / "o.png"), "--stepz", "3"]) == 2
    assert "unrecognized arguments: --stepz 3; did you mean --steps?" in capsys.readouterr().err
    assert main(["run", "deepdream", str(source), "-o", str(tmp_path / "o.png"), "--seed", "x"]) == 2
    assert "--seed must be an integer between 0 and" in capsys.readouterr().err
    assert not (tmp_path / "o.png").exists()


def test_missing_input_is_a_usage_error_exit_2_as_in_batch(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["run", "deepdream", str(tmp_path / "absent.png"), "-o", str(tmp_path / "o.png")]) == 2
    err = capsys.readouterr().err
    assert "Input not found. Received:" in err and "absent.png" in err and "Traceback" not in err
    (tmp_path / "broken.png").write_bytes(b"not a png")  # there, but unreadable: a failure
    assert main(["run", "deepdream", str(tmp_path / "broken.png"), "-o", str(tmp_path / "o.png"), "-q"]) == 1


def test_debug_shows_the_traceback(tmp_path: Path) -> None:
    (tmp_path / "broken.png").write_bytes(b"not a png")
    result = run_cli("--debug", "run", "deepdream", str(tmp_path / "broken.png"), "-o", str(tmp_path / "o.png"))
    assert result.returncode == 1
    assert "Traceback" in result.stderr


def test_example_plugin_is_listed_described_and_run(example_site: Path, tmp_path: Path) -> None:
    path = os.pathsep.join(p for p in (str(example_site), os.environ.get("PYTHONPATH", "")) if p)
    env = {"PYTHONPATH": path, "NEUROFILTERS_DISABLE_PLUGIN_AUTOLOAD": ""}
    listed = run_cli("list", env=env)
    assert listed.returncode == 0, listed.stderr
    assert "Colour:" in listed.stdout and "duotone" in listed.stdout
    plugins = run_cli("plugins", env=env)
    assert "neurofilters-duotone 1.0.0" in plugins.stdout
    described = run_cli("describe", "duotone", env=env)
    assert "--dark" in described.stdout and "--curve" in described.stdout
    # The plugin's own subcommand (register_commands), from the installed distribution.
    assert "duotone-ramp" in run_cli("--help", env=env).stdout
    assert "duotone-ramp" in plugins.stdout
    swatch = tmp_path / "swatch.png"
    made = run_cli("duotone-ramp", "-o", str(swatch), "--dark", "#000000", "--light", "#ffffff", "--width", "64", env=env)
    assert made.returncode == 0, made.stderr
    with Image.open(swatch) as picture:
        row = np.asarray(picture.convert("L"))[0]
    assert row.shape == (64,) and row[0] == 0 and row[-1] == 255 and np.all(np.diff(row.astype(int)) >= 0)
    bad = run_cli("duotone-ramp", "-o", str(tmp_path / "x.png"), "--dark", "nope", env=env)
    assert bad.returncode == 2 and "Received: --dark nope" in bad.stderr  # declared with Params: the flag, as filters

    source = tmp_path / "in.png"
    pixels = np.zeros((4, 6, 4), dtype=np.uint8)
    pixels[..., :3] = np.arange(6, dtype=np.uint8)[None, :, None] * 50
    pixels[..., 3] = np.arange(4, dtype=np.uint8)[:, None] * 60 + 10
    Image.fromarray(pixels, "RGBA").save(source)
    out = tmp_path / "out.png"
    ran = run_cli("run", "duotone", str(source), "-o", str(out), "--dark", "#000000", "--light", "#ff0000", env=env)
    assert ran.returncode == 0, ran.stderr
    result = np.asarray(Image.open(out))
    assert result.shape == (4, 6, 4)
    np.testing.assert_array_equal(result[..., 3], pixels[..., 3])  # alpha untouched
    np.testing.assert_array_equal(result[..., 1:3], 0)
    grey = pixels[..., 0].astype(np.float64)  # luminance of a grey pixel is the grey value
    assert np.abs(result[..., 0].astype(np.float64) - grey).max() <= 1

    bad = run_cli("run", "duotone", str(source), "-o", str(out), "--curve", "wavy", env=env)
    assert bad.returncode == 2
    assert 'must be one of linear, smooth. Received: --curve wavy' in bad.stderr


def test_debug_is_global_wherever_it_stands(tmp_path: Path) -> None:
    (tmp_path / "broken.png").write_bytes(b"not a png")
    result = run_cli("run", "deepdream", str(tmp_path / "broken.png"), "-o", str(tmp_path / "o.png"), "--debug")
    assert result.returncode == 1
    assert "Traceback" in result.stderr and "ImageIOError" in result.stderr
    assert "unrecognized arguments" not in result.stderr


def test_parameters_before_the_input_are_explained(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["run", "deepdream", "--steps", "3"]) == 2
    err = capsys.readouterr().err
    assert "before the filter's parameters" in err and "Received after the filter name: --steps 3" in err


def test_max_pixels_limits_and_overrides(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    source = tmp_path / "in.png"
    Image.new("RGB", (40, 30), "gray").save(source)
    out = tmp_path / "o.png"
    assert main(["run", "deepdream", str(source), "-o", str(out), "--max-pixels", "1000"]) == 1
    err = capsys.readouterr().err
    assert "--max-pixels 1200" in err and not out.exists()
    assert main(["run", "deepdream", str(source), "-o", str(out), "--max-pixels", "-5"]) == 2
    assert "--max-pixels must be an integer >= 0 (0 = no limit). Received: --max-pixels -5" in capsys.readouterr().err


def test_same_seed_gives_identical_bytes_and_another_seed_differs(tmp_path: Path) -> None:
    from skimage import data

    source = tmp_path / "cat.png"
    Image.fromarray(data.chelsea()[80:176, 140:268]).save(source)
    outputs = []
    for index, seed in enumerate(("7", "7", "8")):
        out = tmp_path / f"out{index}.png"
        assert main(["run", "deepdream", str(source), "-o", str(out), "--seed", seed, "--octaves", "2", "--steps", "3"]) == 0
        outputs.append(out.read_bytes())
    assert outputs[0] == outputs[1]
    assert outputs[0] != outputs[2]


# --------------------------------------------------------------------------- fail fast, parse as people expect
def test_everything_the_command_line_gets_wrong_fails_before_any_model_loads(tmp_path: Path) -> None:
    """Output path, seed, flags: exit 2 without importing a deep-learning framework."""
    source = tmp_path / "in.png"
    Image.new("RGB", (8, 8), "gray").save(source)
    (tmp_path / "folder.png").mkdir()
    cases = [
        (["-o", str(tmp_path / "x.gif")], "must be one of .png, .jpg"),
        (["-o", str(tmp_path / "folder.png")], "-o must name an image file, not a folder"),
        (["-o", str(tmp_path / "o.png"), "--seed", "-5"], "--seed must be an integer between 0 and"),
        (["-o", str(tmp_path / "o.png"), "--stepsize", "0.1"], "did you mean --step-size?"),
        (["-o", str(tmp_path / "o.png"), "--step", "5"], "did you mean --steps?"),
        (["-o", str(tmp_path / "o.png"), "--detail", "maybe"], "--detail must be true or false"),
        (["-o", str(tmp_path / "o.png"), "--steps", "1" * 5000], "(5000 characters)"),
        (["-o", str(tmp_path / "sub" / "o.png"), "--octaves", "99"], "--octaves must be an integer between 0 and"),
    ]
    code = (
        "import sys, json\nfrom neurofilters.plugin_host.cli.main import main\n"
        f"cases = json.loads(sys.argv[1])\nsource = {str(source)!r}\n"
        "for extra, _ in cases:\n    print('RC', main(['run', 'deepdream', source, *extra]), flush=True)\n"
        "print('HEAVY', sorted(m for m in ('tensorflow', 'keras', 'jax', 'torch') if m in sys.modules))\n"
    )
    import json

    result = subprocess.run([sys.executable, "-c", code, json.dumps(cases)], capture_output=True, text=True, timeout=120)
    assert result.stdout.count("RC 2") == len(cases), result.stdout + result.stderr
    assert "HEAVY []" in result.stdout
    errors = result.stderr.strip().splitlines()
    assert len(errors) == len(cases), result.stderr
    for (_, fragment), line in zip(cases, errors):
        assert fragment in line and len(line) < 600, line
    assert not (tmp_path / "sub").exists()  # parameters are checked before the output folder is made


def test_bool_flags_take_true_false_and_no_and_prefixes_are_off() -> None:
    from neurofilters.plugin_host import UsageError, get_registry
    from neurofilters.plugin_host.cli.args import parse_filter_flags

    spec = get_registry().get_filter("deepdream")
    assert parse_filter_flags(spec, ["--detail", "false"]) == {"detail": False}
    assert parse_filter_flags(spec, ["--detail", "TRUE", "--steps", "3"]) == {"detail": True, "steps": "3"}
    assert parse_filter_flags(spec, ["--detail"]) == {"detail": True}
    assert parse_filter_flags(spec, ["--no-detail"]) == {"detail": False}
    with pytest.raises(UsageError, match="--no-detail: ignored explicit argument 'yes'"):
        parse_filter_flags(spec, ["--no-detail=yes"])
    with pytest.raises(UsageError, match="unrecognized arguments: --octave 2; did you mean --octaves?"):
        parse_filter_flags(spec, ["--octave", "2"])  # a prefix of --octaves and --octave-scale: not accepted


def test_output_folder_is_created_as_batch_creates_outdir(tmp_path: Path) -> None:
    from neurofilters.plugin_host.cli.main import check_output_path

    target = check_output_path(str(tmp_path / "new" / "deeper" / "o.png"))
    assert target.parent.is_dir()
    source = tmp_path / "in.png"
    Image.new("RGB", (8, 8), "gray").save(source)
    from neurofilters.plugin_host import UsageError

    with pytest.raises(UsageError, match="would overwrite the input"):
        check_output_path(str(source), [str(source)])


def test_batch_flag_errors_point_to_batch_help(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    source = tmp_path / "in.png"
    Image.new("RGB", (8, 8), "gray").save(source)
    base = ["batch", str(source), "-o", str(tmp_path / "out"), "--filter", "deepdream"]
    assert main([*base, "--stepsize", "0.1"]) == 2
    err = capsys.readouterr().err
    assert "did you mean --step-size?" in err and "(see 'neurofilters batch --filter deepdream --help')" in err
    assert main([*base, "--steps", "0"]) == 2
    err = capsys.readouterr().err
    assert "--steps must be an integer between 1 and 1000. Received: --steps 0" in err and "neurofilters batch" in err
    assert main([*base, "--seed", "-5"]) == 2
    assert "--seed must be an integer between 0 and" in capsys.readouterr().err
    assert main([*base, "--jobz", "2"]) == 2
    assert "did you mean --jobs?" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_describe_and_models_fit_80_columns(capsys: pytest.CaptureFixture[str]) -> None:
    for command in (["describe", "deepdream"], ["models"], ["plugins"]):
        assert main(command) == 0
        out = capsys.readouterr().out
        assert all(len(line) <= 80 for line in out.splitlines()), (command, max(out.splitlines(), key=len))
    assert main(["describe", "deepdream"]) == 0
    out = capsys.readouterr().out
    assert "Advanced parameters" in out and "--no-flag" in out


@pytest.mark.slow
def test_an_explicit_value_beats_the_preset_in_cli_batch_and_api(tmp_path: Path) -> None:
    """``--model vgg16-hed --chroma 1``: chroma 1 is the default, but given, so vgg16-classic's chroma must not replace it."""
    import neurofilters
    from skimage import data

    source = tmp_path / "cat.png"
    Image.fromarray(data.chelsea()[100:148, 180:244]).save(source)
    fast = ["--model", "vgg16-hed", "--steps", "2", "--octaves", "1"]
    cli = {}
    for label, extra in (("preset", []), ("given", ["--chroma", "1"])):
        out = tmp_path / f"cli-{label}.png"
        assert main(["run", "deepdream", str(source), "-o", str(out), "-q", *fast, *extra]) == 0
        cli[label] = out.read_bytes()
    assert cli["preset"] != cli["given"]

    api = {}
    for label, extra in (("preset", {}), ("given", {"chroma": 1})):
        result = neurofilters.apply("deepdream", str(source), model="vgg16-hed", steps=2, octaves=1, **extra)
        api[label] = result.save(tmp_path / f"api-{label}.png").read_bytes()
    assert api == cli  # the same call from both front ends

    batch = {}
    for label, text in (("preset", ""), ("given", "chroma = 1\n")):
        params = tmp_path / f"{label}.toml"
        params.write_text('model = "vgg16-hed"\nsteps = 2\noctaves = 1\n' + text)
        outdir = tmp_path / f"batch-{label}"
        assert main(["batch", str(source), "-o", str(outdir), "--filter", "deepdream", "--params", str(params), "-q"]) == 0
        batch[label] = (outdir / "cat.png").read_bytes()
    assert batch["preset"] != batch["given"]


RAISING_PLUGIN = '''
from neurofilters.plugin_host import FilterSpec, Param, hookimpl

def run(image, params, context):
    raise ValueError("Exception encountered when calling Conv2D.call().\\n\\n" + "Input 0 is incompatible. " * 30
                     + "\\n\\nArguments received by Conv2D.call():\\n  • inputs=tf.Tensor(shape=(1, 9, 9, 3))")

@hookimpl
def register_filters():
    return [FilterSpec(name="raise-multiline", title="T", summary="S.", description="D.", category="Test",
                       params=(Param("strength", "float", 1.0, "Unused."),), run=run)]
'''


def test_an_unexpected_multiline_error_is_one_short_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """A raw exception (a Keras error runs over many lines) prints its first line, cut, and points to --debug."""
    from plugin_factory import make_distribution

    import neurofilters.plugin_host as plugin_host

    site = make_distribution(tmp_path / "site", "nf-raise", {"nfplug_raise": RAISING_PLUGIN})
    monkeypatch.syspath_prepend(str(site))
    monkeypatch.setenv("NEUROFILTERS_DISABLE_PLUGIN_AUTOLOAD", "")
    # main(["--debug", ...]) sets NEUROFILTERS_QUIET_NATIVE=0 in this process: monkeypatch takes it back afterwards
    # (leaked, it let TensorFlow's lines through in every later test's subprocess)
    monkeypatch.setenv("NEUROFILTERS_QUIET_NATIVE", "1")
    image = tmp_path / "in.png"
    Image.fromarray(np.zeros((9, 9, 3), np.uint8)).save(image)
    plugin_host.reset_registry()
    try:
        assert main(["run", "raise-multiline", str(image), "-o", str(tmp_path / "out.png"), "-q"]) == 1
        err = capsys.readouterr().err
        assert err.count("\n") == 1, err
        line = err.rstrip("\n")
        assert line.startswith("neurofilters: error: ValueError: Exception encountered when calling Conv2D.call().")
        assert "Arguments received" not in line and "Input 0" not in line
        assert line.endswith("(run with --debug for the whole message and the traceback)")
        with pytest.raises(ValueError, match="Arguments received"):  # --debug: the whole exception
            main(["--debug", "run", "raise-multiline", str(image), "-o", str(tmp_path / "out2.png"), "-q"])
    finally:
        plugin_host.reset_registry()
        sys.modules.pop("nfplug_raise", None)


def test_a_long_single_line_error_is_cut() -> None:
    from neurofilters.plugin_host.cli.main import UNEXPECTED_LIMIT, unexpected_error_line

    line = unexpected_error_line(RuntimeError("x" * 5000))
    assert "\n" not in line and len(line) < UNEXPECTED_LIMIT + 120
    assert line.endswith("(run with --debug for the whole message and the traceback)")
    assert unexpected_error_line(RuntimeError("short")) == (
        "neurofilters: error: RuntimeError: short (run with --debug for the traceback)"
    )
    assert unexpected_error_line(KeyError()) == "neurofilters: error: KeyError (run with --debug for the traceback)"
