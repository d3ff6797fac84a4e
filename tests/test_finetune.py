"""``neurofilters finetune`` on a small real dataset: crops of scikit-image's brick, grass and gravel photos."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from neurofilters.plugin_host import ModelCache, ParameterError, get_registry

CLASSES = ("brick", "grass", "gravel")


def _cli(*args: str, **kwargs: object) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "neurofilters", *args], capture_output=True, text=True, timeout=900, **kwargs)


@pytest.fixture(scope="module")
def dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Three classes of 18 random crops each (64-160 px), plus one file that is not an image."""
    from skimage import data

    root = tmp_path_factory.mktemp("textures")
    rng = np.random.default_rng(0)
    for name in CLASSES:
        picture = getattr(data, name)()
        folder = root / name
        folder.mkdir()
        for index in range(18):
            side = int(rng.integers(64, 160))
            top, left = (int(rng.integers(0, extent - side)) for extent in picture.shape[:2])
            Image.fromarray(picture[top : top + side, left : left + side]).convert("RGB").save(folder / f"{index:02d}.png")
    (root / "grass" / "notes.png").write_text("not an image")
    return root


@pytest.fixture(scope="module")
def trained(dataset: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    output = tmp_path_factory.mktemp("model") / "textures.keras"
    result = _cli("finetune", str(dataset), "-o", str(output), "--image-size", "96", "--epochs", "4", "-q")
    assert result.returncode == 0, result.stderr
    return output, result.stdout + result.stderr


@pytest.mark.slow
def test_finetune_learns_the_classes_and_reports(trained: tuple[Path, str]) -> None:
    output, stdout = trained
    assert "skipped" in stdout and "notes.png" in stdout  # the bad file is reported, not fatal
    accuracy = float(stdout.split("validation accuracy ")[1].split("%")[0])
    assert accuracy >= 95.0, stdout
    baseline = float(stdout.split("baseline: nearest class mean on the frozen lite0 features ")[1].split("%")[0])
    assert 0.0 <= baseline <= 100.0
    # the files are numbered crops of one photo per class: validation crops have near-duplicates in training
    assert "have a near-duplicate in training" in stdout or "every validation image has a near-duplicate" in stdout, stdout
    for name in CLASSES:
        assert name in stdout
    assert output.with_name("textures-confusion.png").is_file()
    assert not Path(str(output) + ".training").exists()  # the checkpoint is gone once the model is written
    with zipfile.ZipFile(output) as archive:
        settings = json.loads(archive.read("neurofilters.json"))
    assert settings["labels"] == list(CLASSES) and settings["preprocessing"] == "lite" and settings["image_size"] == 96


@pytest.mark.slow
def test_the_model_loads_safely_and_classifies_with_its_class_names(trained: tuple[Path, str], dataset: Path) -> None:
    output, _ = trained
    model = ModelCache(get_registry().get_model).get(os.fspath(output))
    assert model.kind == "classifier" and model.labels == list(CLASSES) and model.input_size == 96
    result = _cli("classify", str(dataset / "gravel" / "03.png"), "--model", str(output), "--top", "1")
    assert result.returncode == 0, result.stderr
    assert result.stdout.split()[-1] == "gravel"
    dreamed = _cli("run", "deepdream", str(dataset / "brick" / "01.png"), "-o", str(output.parent / "dream.png"),
                   "--model", str(output), "--steps", "2", "--octaves", "1")
    assert dreamed.returncode == 0, dreamed.stderr  # the base's dream layers travel with the model
    # the class filters take the user's class names
    for filter_name, extra in (("hallucinate", ["--steps", "4", "--work-size", "64"]), ("saliency", ["--method", "grad-cam"])):
        done = _cli("run", filter_name, str(dataset / "brick" / "01.png"), "-o", str(output.parent / f"{filter_name}.png"),
                    "--model", str(output), "--class", "gravel", *extra)
        assert done.returncode == 0, (filter_name, done.stderr)
    wrong = _cli("run", "saliency", str(dataset / "brick" / "01.png"), "-o", str(output.parent / "x.png"),
                 "--model", str(output), "--class", "gravle")
    assert wrong.returncode == 2 and "gravel" in wrong.stderr  # a near miss is suggested from the user's names


@pytest.mark.slow
def test_frozen_layers_keep_their_weights_bit_for_bit(dataset: Path, tmp_path: Path) -> None:
    import keras

    output = tmp_path / "partly.keras"
    result = _cli("finetune", str(dataset), "-o", str(output), "--image-size", "64", "--epochs", "1", "--freeze", "120",
                  "--augment", "none", "-q")
    assert result.returncode == 0, result.stderr
    base = ModelCache(get_registry().get_model).get("lite0").keras_model
    tuned = keras.saving.load_model(output, compile=False, safe_mode=True)
    base_layers = [layer for layer in base.layers if not isinstance(layer, keras.layers.InputLayer)]
    changed = []
    tuned_names = {layer.name for layer in tuned.layers}
    for number, layer in enumerate(base_layers):
        if layer.name not in tuned_names:
            continue  # the base's own classifier head is replaced
        mine = tuned.get_layer(layer.name).get_weights()
        same = all(np.array_equal(a, b) for a, b in zip(layer.get_weights(), mine))
        if number < 120 or isinstance(layer, keras.layers.BatchNormalization):
            assert same, f"frozen layer {layer.name} changed"
        elif layer.get_weights() and not same:
            changed.append(layer.name)
    assert changed, "the unfrozen layers after the first 120 were not trained"


def test_bad_arguments_fail_before_any_model_loads(dataset: Path, tmp_path: Path) -> None:
    for args, fragment in (
        (["-o", str(tmp_path / "x.h5")], "must end in .keras"),
        (["-o", str(tmp_path / "x.keras"), "--epochs", "0"], "Received: --epochs 0"),
        (["-o", str(tmp_path / "x.keras"), "--augment", "rotate"], "Received: --augment rotate"),
        (["-o", str(tmp_path / "no" / "x.keras")], "existing, writable folder"),
        (["-o", str(tmp_path / "x.keras"), "--learning-rate", "nan"], "Received: --learning-rate nan"),
        (["-o", str(tmp_path / "x.keras"), "--val-split", "nan"], "Received: --val-split nan"),
        (["-o", str(tmp_path / "x.keras"), "--epochs", "inf"], "Received: --epochs inf"),
        (["-o", str(tmp_path / "x.keras"), "--group-by", "("], "Received: --group-by ("),
        (["-o", str(tmp_path / "x.keras"), "--base", "notamodel"], "notamodel"),
    ):
        result = _cli("finetune", str(dataset), *args)
        assert result.returncode == 2 and fragment in result.stderr, (args, result.stderr)
        assert not list(tmp_path.glob("*.training")), args  # a usage error leaves no checkpoint behind
    result = _cli("finetune", str(dataset / "brick"), "-o", str(tmp_path / "x.keras"))
    assert result.returncode == 2 and "at least two class folders" in result.stderr


@pytest.mark.slow
def test_killed_training_resumes_from_its_checkpoint(dataset: Path, tmp_path: Path) -> None:
    output = tmp_path / "resumed.keras"
    args = ["finetune", str(dataset), "-o", str(output), "--image-size", "64", "--epochs", "6", "--patience", "10"]
    process = subprocess.Popen([sys.executable, "-m", "neurofilters", *args, "-q"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    backup = Path(str(output) + ".training")
    deadline = time.monotonic() + 600
    while time.monotonic() < deadline and process.poll() is None and not (backup / "state.npz").is_file():
        time.sleep(0.2)  # wait for the first epoch's checkpoint
    assert process.poll() is None, "training ended before it could be killed"
    os.kill(process.pid, signal.SIGKILL)
    process.wait()
    assert not output.exists()
    again = _cli(*args)
    assert again.returncode == 0, again.stderr
    resumed = int(again.stdout.split("resumed at epoch ")[1].split()[0])
    assert resumed >= 2, again.stdout
    assert output.is_file() and not backup.exists()
    # the same model as a run that was never interrupted: same predictions
    straight = tmp_path / "straight.keras"
    once = _cli(*[straight.as_posix() if arg == str(output) else arg for arg in args])
    assert once.returncode == 0, once.stderr
    accuracy = [run.stdout.split("validation accuracy ")[1].split("%")[0] for run in (once, again)]
    assert accuracy[0] == accuracy[1], (once.stdout, again.stdout)
    import keras

    from neurofilters.filters.finetune.train import load_dataset
    from neurofilters.filters.zoo.preprocessing import lite0_input

    images = np.asarray(lite0_input(load_dataset(dataset, 64).images))
    logits = [np.asarray(keras.saving.load_model(path, safe_mode=True).predict(images, verbose=0)) for path in (output, straight)]
    np.testing.assert_allclose(logits[0], logits[1], rtol=0, atol=1e-5)
    assert (np.argmax(logits[0], axis=1) == np.argmax(logits[1], axis=1)).all()


def test_crops_of_one_source_stay_on_one_side_of_the_split() -> None:
    from neurofilters.filters.finetune.train import group_key, grouped_split

    assert group_key("brick-3.png") == group_key("brick_12.png") == group_key("brick (4).png") == "brick"
    assert group_key("07.png") == "07.png" and group_key("a1b.png") == "a1b"  # only a trailing number is dropped
    assert group_key("wall-north-2.png", r"^(\w+)-") == "wall" and group_key("x.png", "none") == "x.png"
    names = [f"{source}-{crop}.png" for source in ("oak", "pine", "ash", "elm", "fir") for crop in range(4)] * 2
    labels = np.repeat([0, 1], 20)
    train, val, ungrouped = grouped_split(labels, names, 0.2, seed=3)
    assert ungrouped == [] and len(val) == 8  # one source of four crops per class
    sources = lambda indices: {(labels[i], group_key(names[i])) for i in indices}  # noqa: E731
    assert not sources(train) & sources(val) and len(sources(val)) == 2
    assert sorted([*train, *val]) == list(range(40))
    _, _, ungrouped = grouped_split(np.repeat([0, 1], 4), ["a-1.png", "a-2.png", "a-3.png", "a-4.png", "b-1.png", "c-1.png", "d-1.png", "e-1.png"], 0.25, 0)
    assert ungrouped == [0]  # class 0 is one source: split file by file, and the report says so


def test_nearest_class_mean_is_a_linear_layer() -> None:
    from neurofilters.filters.finetune.train import nearest_class_mean

    rng = np.random.default_rng(0)
    features, labels = rng.normal(size=(60, 5)), rng.integers(0, 3, 60)
    kernel, bias = nearest_class_mean(features, labels, 3)
    means = np.stack([features[labels == c].mean(axis=0) for c in range(3)])
    nearest = np.argmin(((features[:, None, :] - means[None]) ** 2).sum(axis=2), axis=1)
    assert (np.argmax(features @ kernel + bias, axis=1) == nearest).all()


def test_checkpoint_of_other_settings_is_refused(dataset: Path, tmp_path: Path) -> None:
    from neurofilters.filters.finetune.train import Settings, _Checkpoint

    first = _Checkpoint(Settings(data_dir=str(dataset), output=str(tmp_path / "m.keras"), seed=1))
    assert first.prepare() is False
    with pytest.raises(ParameterError, match="other settings"):
        _Checkpoint(Settings(data_dir=str(dataset), output=str(tmp_path / "m.keras"), seed=2)).prepare()
    assert _Checkpoint(Settings(data_dir=str(dataset), output=str(tmp_path / "m.keras"), seed=1, epochs=3)).prepare() is True
