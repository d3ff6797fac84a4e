"""``inception-v3-nsfwjs``: fetched with the npm client, converted, cached, loaded in safe mode, dreamed with.

The package is downloaded once per session with ``npm pack`` (the fetch
command's first method); the tests skip, saying why, where npm or its
registry cannot be reached. Converting takes about 30 s on two cores.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

import neurofilters.plugin_host as plugin_host
from neurofilters.filters.zoo import nsfwjs
from neurofilters.plugin_host.cli.main import main

MIXED_SHAPES_AT_299 = {
    "mixed0": (35, 35, 256), "mixed1": (35, 35, 288), "mixed2": (35, 35, 288),
    "mixed3": (17, 17, 768), "mixed4": (17, 17, 768), "mixed5": (17, 17, 768),
    "mixed6": (17, 17, 768), "mixed7": (17, 17, 768), "mixed8": (8, 8, 1280),
    "mixed9": (8, 8, 2048), "mixed10": (8, 8, 2048),
}


@pytest.fixture(scope="session")
def tarball(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """nsfwjs-4.3.0.tgz from the npm registry, through the npm client."""
    if shutil.which("npm") is None:
        pytest.skip("npm is not installed: the nsfwjs tests need the npm client")
    try:
        return nsfwjs._npm_pack(tmp_path_factory.mktemp("npm"))
    except (OSError, subprocess.SubprocessError) as error:
        pytest.skip(f"the npm registry is unreachable ({error})")


@contextlib.contextmanager
def _cache_at(folder: Path) -> Iterator[None]:
    """The weight cache at ``folder`` (session fixtures run before the per-test environment)."""
    previous = os.environ.get("NEUROFILTERS_CACHE_DIR")
    os.environ["NEUROFILTERS_CACHE_DIR"] = os.fspath(folder)
    try:
        yield
    finally:
        if previous is None:
            os.environ.pop("NEUROFILTERS_CACHE_DIR")
        else:
            os.environ["NEUROFILTERS_CACHE_DIR"] = previous


@pytest.fixture(scope="session")
def fetched(tarball: Path, cache_dir: Path) -> Path:
    """The CLI's ``models fetch --from`` run once into the session cache."""
    with _cache_at(cache_dir):
        assert main(["models", "fetch", "inception-v3-nsfwjs", "--from", os.fspath(tarball)]) == 0
        return nsfwjs.converted_model_path()


@pytest.fixture(scope="session")
def model(fetched: Path):  # noqa: ANN201 - a ZooModel
    with _cache_at(fetched.parent):
        return nsfwjs.load_inception_v3_nsfwjs()


def test_the_pinned_tarball_is_what_npm_serves(tarball: Path) -> None:
    assert nsfwjs.file_sha256(tarball) == nsfwjs.NSFWJS_SHA256


def test_the_converted_file_is_cached_with_its_hashes(fetched: Path) -> None:
    import json

    sidecar = json.loads(fetched.with_name(fetched.name + ".json").read_text())
    assert sidecar["tarball_sha256"] == nsfwjs.NSFWJS_SHA256
    assert sidecar["sha256"] == nsfwjs.file_sha256(fetched) and sidecar["size"] == fetched.stat().st_size


def test_it_says_what_it_is(model, capsys: pytest.CaptureFixture[str]) -> None:  # noqa: ANN001
    assert model.kind == "backbone" and model.labels is None
    assert nsfwjs.WEIGHTS_STORY in model.description
    assert main(["models"]) == 0
    listing = capsys.readouterr().out
    assert "inception-v3-nsfwjs" in listing and "no ImageNet classes" in " ".join(listing.split())


def test_every_mixed_layer_is_a_dream_layer_with_inception_shapes(model) -> None:  # noqa: ANN001
    table = {info.name: info for info in model.layer_table(299)}
    for name, shape in MIXED_SHAPES_AT_299.items():
        assert model.is_dream_target(name)
        assert table[name].output_shape == (1, *shape)
    assert model.keras_model.count_params() == 21_802_784  # InceptionV3 without its top
    assert model.default_dream_layers == (("mixed3", 1.0), ("mixed5", 1.0))


def test_weights_sit_where_they_belong(model, chelsea, coffee) -> None:  # noqa: ANN001
    """Each batch normalisation's moving mean matches the mean of the convolution it follows on real photos.

    A convolution given another one's kernel, a mis-ordered or badly dequantised
    weight, or random weights break the match (random weights: correlation ~0).
    """
    import keras

    network = model.keras_model
    convolutions = [layer for layer in network.layers if isinstance(layer, keras.layers.Conv2D)]
    follower = {}
    for layer in network.layers:
        if isinstance(layer, keras.layers.BatchNormalization):
            follower[_input_layer_name(network, layer)] = layer
    probe = keras.Model(network.inputs[0], [layer.output for layer in convolutions[:56]])
    photos = np.asarray(model.preprocess(np.stack([_square(chelsea), _square(coffee)])))
    correlations = [
        np.corrcoef(np.asarray(output).mean(axis=(0, 1, 2)), follower[layer.name].moving_mean.numpy())[0, 1]
        for layer, output in zip(convolutions[:56], probe(photos))
    ]
    assert np.median(correlations) > 0.9, np.round(correlations, 2)


def _input_layer_name(network, layer) -> str:  # noqa: ANN001
    """The name of the layer whose output feeds ``layer``."""
    tensor = layer.input
    for candidate in network.layers:
        if candidate.output is tensor:
            return candidate.name
    raise AssertionError(f"no producer for {layer.name}")


def _square(photo: np.ndarray) -> np.ndarray:
    from neurofilters.filters.zoo.model import centre_crop_resize

    return centre_crop_resize(photo, 299)


def test_a_mixed3_dream_differs_from_a_random_network_s(model, chelsea) -> None:  # noqa: ANN001
    from neurofilters.filters.deepdream.engine import DreamSettings, dream

    settings = DreamSettings(model="inception-v3-nsfwjs", layers=(("mixed3", 1.0),), octaves=1, steps=6)
    image = _square(chelsea)[::2, ::2].copy()
    random_model = nsfwjs.inception_v3_nsfwjs_zoo_model(nsfwjs.build_network(None))
    trained = dream(image, model, settings, rng=np.random.default_rng(0)) - image
    untrained = dream(image, random_model, settings, rng=np.random.default_rng(0)) - image
    assert np.abs(trained).mean() > 0.01 and np.abs(untrained).mean() > 0.001
    correlation = np.corrcoef(trained.ravel(), untrained.ravel())[0, 1]
    assert correlation < 0.5, correlation


def test_a_tarball_with_another_checksum_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("NEUROFILTERS_CACHE_DIR", os.fspath(tmp_path / "cache"))
    other = tmp_path / "nsfwjs-4.3.0.tgz"
    other.write_bytes(b"not the package")
    assert main(["models", "fetch", "inception-v3-nsfwjs", "--from", os.fspath(other)]) == 2
    assert "sha256" in capsys.readouterr().err
    assert not (tmp_path / "cache").exists() or not list((tmp_path / "cache").iterdir())


def test_before_fetching_the_model_says_how(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NEUROFILTERS_CACHE_DIR", os.fspath(tmp_path))
    with pytest.raises(plugin_host.ModelUnavailableError, match="neurofilters models fetch inception-v3-nsfwjs"):
        nsfwjs.load_inception_v3_nsfwjs()


def test_a_model_without_anything_to_fetch_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["models", "fetch", "lite0"]) == 2
    assert "inception-v3-nsfwjs" in capsys.readouterr().err


def test_the_javascript_literal_parser() -> None:
    value, end = nsfwjs.parse_js_literal('{a:[1,-.5,2e-3,"x\\"y"],b:!0,"c":!1,d:null} tail')
    assert value == {"a": [1, -0.5, 0.002, 'x"y'], "b": True, "c": False, "d": None}
    assert end == len('{a:[1,-.5,2e-3,"x\\"y"],b:!0,"c":!1,d:null}')
    with pytest.raises(ValueError, match="offset"):
        nsfwjs.parse_js_literal("{a:function(){}}")


def test_its_layer_table_totals_count_params_at_299(
    model, fetched: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]  # noqa: ANN001
) -> None:
    import json

    monkeypatch.setenv("NEUROFILTERS_CACHE_DIR", os.fspath(fetched.parent))
    assert main(["layers", "inception-v3-nsfwjs", "--format", "json"]) == 0
    document = json.loads(capsys.readouterr().out)
    assert document["input_size"] == 299 and document["total"] == model.keras_model.count_params()
    assert document["layers"][0]["activations"] == [299, 299, 3]
