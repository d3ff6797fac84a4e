"""The Python API (``import neurofilters``): the same call, validation and bytes as the command line."""

from __future__ import annotations

import doctest
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import neurofilters
import neurofilters.plugin_host.api as api

QUICK = {"steps": 1, "octaves": 1}


@pytest.fixture
def photo(tmp_path: Path) -> Path:
    rng = np.random.default_rng(3)
    base = np.linspace(0, 255, 48, dtype=np.float32)[None, :, None] * np.ones((40, 1, 3), np.float32)
    pixels = np.clip(base + rng.normal(0, 20, base.shape), 0, 255).astype(np.uint8)
    path = tmp_path / "photo.png"
    Image.fromarray(pixels).save(path)
    return path


def test_importing_the_api_imports_no_framework() -> None:
    code = "import sys, neurofilters; neurofilters.list_filters(); neurofilters.describe('deepdream'); " \
           "print(sorted(m for m in ('tensorflow', 'keras', 'jax', 'torch') if m in sys.modules))"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"


def test_list_and_describe() -> None:
    names = [info.name for info in neurofilters.list_filters()]
    assert "deepdream" in names and names == sorted(names)
    info = neurofilters.describe("deepdream")
    assert info.title == "DeepDream" and {"steps", "layers", "guide", "mask"} <= {p.name for p in info.params}
    with pytest.raises(neurofilters.RegistryError, match="Did you mean: deepdream"):
        neurofilters.describe("deepdraem")


def test_describe_shows_the_presets_and_resolve_presets_is_public() -> None:
    from neurofilters.plugin_host import resolve_presets, validate_params
    from neurofilters.plugin_host.core.call import resolve_presets as core_resolve_presets

    info = neurofilters.describe("deepdream")
    assert info.preset_param == "preset" and dict(info.model_presets) == {"vgg16-hed": "vgg16-classic"}
    assert info.presets["vgg16-classic"]["chroma"] == 0.15 and info.presets["none"] == {}
    text = " ".join(info.presets_text().split())
    assert "vgg16-hed -> vgg16-classic" in text and "--chroma 0.15" in text
    assert neurofilters.describe("texture").presets_text() == ""
    assert resolve_presets is core_resolve_presets
    spec = neurofilters.plugin_host.get_registry().get_filter("deepdream")
    assert resolve_presets(spec, validate_params(spec.params, {"model": "vgg16-hed"}))["chroma"] == 0.15


def test_bad_values_fail_before_any_model_loads(photo: Path) -> None:
    with pytest.raises(neurofilters.ParameterError, match="Received: steps=0"):
        neurofilters.apply("deepdream", photo, steps=0)
    with pytest.raises(neurofilters.ParameterError, match="Did you mean: steps"):
        neurofilters.apply("deepdream", photo, stesp=3)
    with pytest.raises(neurofilters.ParameterError, match="seed"):
        neurofilters.apply("deepdream", photo, seed=-1)
    with pytest.raises(neurofilters.ParameterError, match=r"floats in \[0, 1\] \(divide by 255"):
        neurofilters.apply("deepdream", np.full((8, 8, 3), 200.0))
    with pytest.raises(neurofilters.ParameterError, match="must be an image"):
        neurofilters.apply("deepdream", 42)


def test_hostile_values_give_short_parameter_errors(photo: Path) -> None:
    """Huge integers (repr() of one over 4,300 digits raises) and huge strings: the usual error, cut."""
    for values in ({"seed": 10**5000}, {"steps": 10**5000}, {"steps": "9" * 5000}, {"octave_scale": 10**400},
                   {"layers": [["block5", None]]}, {"layers": "x y" * 50_000}):
        with pytest.raises(neurofilters.ParameterError) as caught:
            neurofilters.apply("deepdream", photo, **values)
        assert len(str(caught.value)) < 600, str(caught.value)[:200]



def test_result_saves_the_bytes_the_cli_writes(photo: Path, tmp_path: Path) -> None:
    result = neurofilters.apply("deepdream", photo, seed=7, **QUICK)
    assert result.shape == (40, 48, 3) and result.pixels.dtype == np.float32
    api_file = result.save(tmp_path / "api.png")
    cli_file = tmp_path / "cli.png"
    done = subprocess.run(
        [sys.executable, "-m", "neurofilters", "run", "deepdream", str(photo), "-o", str(cli_file), "--seed", "7",
         "--steps", "1", "--octaves", "1"],
        capture_output=True, text=True, timeout=600,
    )
    assert done.returncode == 0, done.stderr
    assert api_file.read_bytes() == cli_file.read_bytes()


def test_array_pil_and_path_inputs_agree(photo: Path) -> None:
    with Image.open(photo) as picture:
        picture.load()
        from_pil = neurofilters.apply("deepdream", picture, seed=1, **QUICK)
        as_uint8 = np.asarray(picture)
    from_path = neurofilters.apply("deepdream", photo, seed=1, **QUICK)
    from_array = neurofilters.apply("deepdream", as_uint8, seed=1, **QUICK)
    from_floats = neurofilters.apply("deepdream", as_uint8.astype(np.float32) / 255.0, seed=1, **QUICK)
    for other in (from_pil, from_array, from_floats):
        np.testing.assert_array_equal(np.asarray(other), np.asarray(from_path))
    assert from_path.to_pil().size == (48, 40)


def test_image_parameters_take_paths_and_arrays_alike(photo: Path, tmp_path: Path) -> None:
    mask = np.zeros((40, 48), np.uint8)
    mask[:, 24:] = 255
    mask_file = tmp_path / "mask.png"
    Image.fromarray(mask).save(mask_file)
    by_path = neurofilters.apply("deepdream", photo, seed=2, mask=mask_file, mask_feather=0, **QUICK)
    by_array = neurofilters.apply("deepdream", photo, seed=2, mask=mask, mask_feather=0, **QUICK)
    np.testing.assert_array_equal(by_path.pixels, by_array.pixels)
    with Image.open(photo) as picture:
        original = np.asarray(picture, np.float32) / 255.0
    np.testing.assert_allclose(by_path.pixels[:, :24], original[:, :24], atol=1e-6)  # black = keep
    assert np.abs(by_path.pixels[:, 24:] - original[:, 24:]).max() > 0.01
    with pytest.raises(neurofilters.ParameterError, match="Received: mask="):
        neurofilters.apply("deepdream", photo, mask=tmp_path / "missing.png")


def test_extra_outputs_come_back_in_the_result(photo: Path) -> None:
    result = neurofilters.apply("deepdream", photo, seed=4, frames=2, **QUICK)
    assert sorted(result.outputs) == ["frame-00000", "frame-00001"]
    np.testing.assert_array_equal(np.clip(result.pixels, 0, 1), result.outputs["frame-00001"])
    assert not np.array_equal(result.outputs["frame-00000"], result.outputs["frame-00001"])


def test_load_model_is_cached() -> None:
    model = neurofilters.load_model("lite0")
    assert model is neurofilters.load_model("lite0")
    top = model.classify(np.full((224, 224, 3), 0.5, np.float32), top=3)
    assert len(top) == 3


def test_docstring_examples_run() -> None:
    failures, tried = doctest.testmod(api, optionflags=doctest.ELLIPSIS)
    assert tried >= 3 and failures == 0


def test_plugin_authors_import_the_declarations_from_the_package() -> None:
    """``from neurofilters import hookimpl, Param, FilterSpec, CommandSpec`` (datasette's ``from datasette import hookimpl``)."""
    import neurofilters.plugin_host as host

    for name in ("hookimpl", "Param", "FilterSpec", "CommandSpec", "ModelSpec"):
        assert getattr(neurofilters, name) is getattr(host, name), name
    spec = neurofilters.FilterSpec(
        name="top-level-api", title="T", summary="Declared through the package's own names.", description="A test filter.", category="Test",
        params=(neurofilters.Param("amount", "float", 0.5, "How much.", minimum=0.0, maximum=1.0),),
        run=lambda image, params, context: image,
    )
    assert [param.name for param in spec.params] == ["amount"]


def test_result_save_never_writes_over_an_input_or_a_users_file(photo: Path, tmp_path: Path) -> None:
    """``Result.save`` goes through the host's guard, like ``neurofilters run``."""
    from neurofilters.plugin_host import UsageError

    result = neurofilters.apply("deepdream", photo, seed=1, **QUICK)
    before = photo.read_bytes()
    with pytest.raises(UsageError, match="the input"):
        result.save(photo)
    with pytest.raises(UsageError, match="the input"):
        result.save(photo, overwrite=True)  # never an input, even when asked
    assert photo.read_bytes() == before
    theirs = tmp_path / "theirs.png"
    theirs.write_bytes(b"the user's own file")
    with pytest.raises(UsageError, match="overwrite=True"):
        result.save(theirs)
    assert theirs.read_bytes() == b"the user's own file"
    assert result.save(theirs, overwrite=True) == theirs
    ours = tmp_path / "ours.png"
    result.save(ours)
    result.save(ours)  # its own file: a rerun replaces it
