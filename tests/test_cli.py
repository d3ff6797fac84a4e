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
    [["--help"], ["list"], ["describe", "deepdream"], ["plugins"], ["models"], ["run", "deepdream", "--help"]],
)
def test_light_commands_never_import_tensorflow(args: list[str]) -> None:
    code = (
        "import sys\nfrom neurofilters.plugin_host.cli.main import main\n"
        "try:\n    rc = main(sys.argv[1:])\nexcept SystemExit as e:\n    rc = e.code\n"
        "heavy = sorted(m for m in ('tensorflow', 'keras', 'jax', 'torch') if m in sys.modules)\n"
        "print('HEAVY', heavy)\nsys.exit(rc)\n"
    )
    result = subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert "HEAVY []" in result.stdout


def test_list_and_describe(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["list"]) == 0
    out = capsys.readouterr().out
    assert "deepdream" in out and "Dream:" in out
    assert main(["describe", "deepdream"]) == 0
    out = capsys.readouterr().out
    assert "--steps" in out and "Parameters:" in out


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
        (["classify", "x.png", "--top", "0"], 2, '"top" must be an integer >= 1. Received: top=0'),
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
    assert bad.returncode == 2 and "Received: dark=nope" in bad.stderr

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
