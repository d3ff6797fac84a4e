"""The one front-end call (``front.run``) and the ParamValues it carries: the same bytes as the CLI, given names kept."""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from neurofilters.filters.deepdream.plugin import PARAMS
from neurofilters.plugin_host import ModelCache, ParameterError, ParamValues, apply_filter, get_registry, validate_params
from neurofilters.plugin_host.cli.main import main
from neurofilters.plugin_host.front import run
from neurofilters.plugin_host.imageio.files import save_image
from neurofilters.plugin_host.imageio.values import load_image_file, load_image_params

QUICK = {"steps": 1, "octaves": 1}
#: vgg16-classic's settings (chroma 0.15 among them) on Lite0: the preset fills what the user left out.
PRESET = {"preset": "vgg16-classic", "model": "lite0", **QUICK}


@pytest.fixture(scope="module")
def models() -> ModelCache:
    return ModelCache()


@pytest.fixture(scope="module")
def photo(tmp_path_factory: pytest.TempPathFactory, chelsea: np.ndarray) -> Path:
    """A 48 x 40 crop of the cat photo, as a PNG."""
    path = tmp_path_factory.mktemp("front") / "cat.png"
    Image.fromarray((chelsea[100:140, 180:228] * 255).round().astype(np.uint8)).save(path)
    return path


@pytest.fixture(scope="module")
def mask(photo: Path) -> Path:
    """Dream on the right half only."""
    pixels = np.zeros((40, 48), np.uint8)
    pixels[:, 24:] = 255
    path = photo.with_name("mask.png")
    Image.fromarray(pixels).save(path)
    return path


def _cli_bytes(photo: Path, out: Path, flags: list[str]) -> bytes:
    assert main(["run", "deepdream", str(photo), "-o", str(out), "-q", "--seed", "3", *flags]) == 0
    return out.read_bytes()


def _run_bytes(photo: Path, out: Path, values: dict, models: ModelCache) -> bytes:
    image = load_image_file(photo)
    pixels = run("deepdream", image, values, seed=3, models=models)
    return save_image(out, pixels, like=image).read_bytes()


def test_run_writes_the_bytes_the_cli_writes_with_an_image_parameter(photo, mask, models, tmp_path) -> None:
    cli = _cli_bytes(photo, tmp_path / "cli.png", ["--mask", str(mask), "--mask-feather", "0", "--steps", "1", "--octaves", "1"])
    ours = _run_bytes(photo, tmp_path / "run.png", {"mask": str(mask), "mask_feather": 0, **QUICK}, models)
    assert ours == cli
    # The mask was loaded and used: the black half is the photo itself, the white half dreamed.
    with Image.open(photo) as original, Image.open(tmp_path / "run.png") as result:
        before, after = np.asarray(original, np.int16), np.asarray(result, np.int16)
    assert np.abs(after[:, :24] - before[:, :24]).max() <= 1 and np.abs(after[:, 24:] - before[:, 24:]).max() > 3


def test_a_given_value_beats_the_preset_in_run_as_in_the_cli(photo, models, tmp_path) -> None:
    """``--chroma 1`` is the default, but given: vgg16-classic's chroma 0.15 must not replace it."""
    flags = ["--preset", "vgg16-classic", "--model", "lite0", "--steps", "1", "--octaves", "1"]
    cli_given = _cli_bytes(photo, tmp_path / "cli-given.png", [*flags, "--chroma", "1"])
    cli_preset = _cli_bytes(photo, tmp_path / "cli-preset.png", flags)
    assert cli_given != cli_preset
    assert _run_bytes(photo, tmp_path / "run-given.png", {**PRESET, "chroma": 1}, models) == cli_given
    assert _run_bytes(photo, tmp_path / "run-preset.png", PRESET, models) == cli_preset
    # What decides is ParamValues.given, carried through loading, not the keys: chroma 1 present but not
    # given (as GIMP sends every value with the names the user touched), and the preset's chroma applies.
    image = load_image_file(photo)
    untouched = validate_params(PARAMS, {**PRESET, "chroma": 1}).with_given(PRESET)
    pixels = run("deepdream", image, untouched, seed=3, models=models)
    assert save_image(tmp_path / "untouched.png", pixels, like=image).read_bytes() == cli_preset


def test_param_values_survive_load_image_params_with_their_given_names(mask) -> None:
    checked = validate_params(PARAMS, {"mask": str(mask), "steps": 2})
    assert isinstance(checked, ParamValues) and checked.given == {"mask", "steps"} and not checked.loaded
    loaded = load_image_params(PARAMS, checked)
    assert isinstance(loaded, ParamValues) and loaded.loaded and loaded.given == {"mask", "steps"}
    assert loaded["mask"].shape == (40, 48, 1) and loaded["mask"].dtype == np.float32
    assert checked["mask"] == str(mask)  # the validated values are left as they were
    assert load_image_params(PARAMS, loaded) is loaded  # loaded once (the batch runner loads once per process)
    again = pickle.loads(pickle.dumps(loaded))  # to a batch worker process and back
    assert again.given == loaded.given and again.loaded and np.array_equal(again["mask"], loaded["mask"])
    plain = load_image_params(PARAMS, dict(checked))  # a plain mapping says nothing of what the user gave
    assert isinstance(plain, ParamValues) and plain.given is None and plain.loaded


def test_apply_filters_old_keywords_still_work(photo, models) -> None:
    """Third-party code that threads validated=/given= by hand gets what run gives."""
    spec = get_registry().get_filter("deepdream")
    image = load_image_file(photo).pixels
    values = {**PRESET, "chroma": 1}
    by_hand = dict(load_image_params(spec.params, validate_params(spec.params, values)))  # a plain dict: no given
    old = apply_filter(spec, image, by_hand, seed=3, models=models, validated=True, given=values)
    np.testing.assert_array_equal(old, run(spec, image, values, seed=3, models=models))


def test_run_names_the_bad_value_and_the_unreadable_image_parameter(photo, tmp_path) -> None:
    with pytest.raises(ParameterError, match="Received: steps=0"):
        run("deepdream", photo, {"steps": 0})
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"not a picture")
    with pytest.raises(ParameterError, match=r'"mask" must be a readable image\. Received: mask=.*broken\.png') as caught:
        run("deepdream", photo, {"mask": str(broken)})
    assert caught.value.param == "mask"


def test_docstring_example_runs() -> None:
    import doctest

    from neurofilters.plugin_host import front

    failures, tried = doctest.testmod(front, optionflags=doctest.ELLIPSIS)
    assert tried >= 2 and failures == 0
