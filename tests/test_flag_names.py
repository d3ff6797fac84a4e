"""Messages name the flag the user typed (``--style2``, ``--class``, ``--style-layers``), also for errors a filter raises while it runs."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from neurofilters.plugin_host.cli.main import main


def _png(path: Path, height: int, width: int, seed: int = 0) -> Path:
    Image.fromarray((np.random.default_rng(seed).random((height, width, 3)) * 255).astype(np.uint8)).save(path)
    return path


@pytest.fixture()
def files(tmp_path: Path) -> dict[str, Path]:
    return {"photo": _png(tmp_path / "photo.png", 48, 48), "style": _png(tmp_path / "style.png", 64, 64, 1),
            "dot": _png(tmp_path / "dot.png", 1, 1, 2)}


def _error(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str]:
    code = main(list(args))
    err = capsys.readouterr().err
    assert err.count("\n") == 1, err  # one line
    return code, err


@pytest.mark.parametrize("flag", ["--style", "--style2"])
def test_a_too_small_style_image_is_named_by_its_flag(files: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str], flag: str) -> None:
    words = ["--style", str(files["dot"])] if flag == "--style" else ["--style", str(files["style"]), "--style2", str(files["dot"])]
    code, err = _error(capsys, "run", "style-transfer", str(files["photo"]), "-o", str(tmp_path / "o.png"), *words, "--steps", "1", "-q")
    assert code == 2
    assert f"error: {flag} must be at least 16 x 16 pixels. Received: 1 x 1; give a larger image." in err
    assert '"style' not in err
    assert not (tmp_path / "o.png").exists()


def test_batch_names_the_flag_of_a_too_small_second_style(files: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    folder = tmp_path / "in"
    folder.mkdir()
    _png(folder / "a.png", 40, 40)
    code = main(["batch", str(folder), "-o", str(tmp_path / "out"), "--filter", "style-transfer", "--style", str(files["style"]),
                 "--style2", str(files["dot"]), "--steps", "1", "-q"])
    err = capsys.readouterr().err
    assert code == 1
    assert "--style2 must be at least 16 x 16 pixels. Received: 1 x 1" in err and '"style' not in err


def test_an_out_of_range_class_id_names_class_not_class_(files: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, err = _error(capsys, "run", "hallucinate", str(files["photo"]), "-o", str(tmp_path / "o.png"), "--class", "5000", "-q")
    assert code == 2
    assert "error: --class must be a class id between 0 and 999. Received: --class 5000" in err and "class_" not in err


def test_bad_style_layers_name_their_flag(files: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, err = _error(capsys, "run", "style-transfer", str(files["photo"]), "-o", str(tmp_path / "o.png"), "--style", str(files["style"]),
                       "--style-layers", "bad", "-q")
    assert code == 2
    assert "--style-layers must name layers of model" in err and "Received: --style-layers 'bad'" in err and '"layer"' not in err


@pytest.fixture()
def backbone(tmp_path: Path) -> Path:
    """A user's .keras without dream layers (nothing names them: no neurofilters.json inside)."""
    import keras

    inputs = keras.Input((None, None, 3))
    x = keras.layers.Conv2D(4, 3, activation="relu", name="first")(inputs)
    outputs = keras.layers.Conv2D(4, 3, activation="relu", name="second")(x)
    keras.Model(inputs, outputs).save(tmp_path / "mine.keras")
    return tmp_path / "mine.keras"


def test_a_user_model_without_dream_layers_says_so(files: dict[str, Path], backbone: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "o.png"
    code, err = _error(capsys, "run", "deepdream", str(files["photo"]), "-o", str(out), "--model", str(backbone), "-q")
    assert code == 2, err
    assert "--layers is auto, but model 'mine' recommends no dream layers" in err
    assert "--layers first:1,second:1" in err and "layers=()" not in err and "ValueError" not in err
    code, err = _error(capsys, "run", "deepdream", str(files["photo"]), "-o", str(out), "--model", str(backbone), "--layers", "nope", "-q")
    assert code == 2 and "Received: --layers 'nope'" in err and "layer=" not in err
    assert main(["run", "deepdream", str(files["photo"]), "-o", str(out), "--model", str(backbone), "--layers", "second:1",
                 "--steps", "1", "--octaves", "1", "-q"]) == 0, capsys.readouterr().err
    assert out.is_file()


@pytest.mark.slow
def test_finetune_on_a_user_backbone_without_dream_layers(backbone: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """The base's features are its own output when it names no dream layer (was ``max() arg is an empty sequence``)."""
    data = tmp_path / "data"
    for label, seed in (("a", 0), ("b", 10)):
        (data / label).mkdir(parents=True)
        for index in range(3):
            _png(data / label / f"{label}{index}.png", 40, 40, seed + index)
    output = tmp_path / "tuned.keras"
    code = main(["finetune", str(data), "-o", str(output), "--base", str(backbone), "--epochs", "1", "--image-size", "32", "-q"])
    err = capsys.readouterr().err
    assert code == 0, err
    assert output.is_file() and not output.with_name("tuned.keras.training").exists()
