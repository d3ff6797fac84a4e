"""Keras Applications: offline errors, local weight files, any-size copies."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

from neurofilters.filters.zoo.applications import APPLICATIONS, expected_weights_path, keras_models_dir, load_application
from neurofilters.plugin_host import ModelUnavailableError, ParameterError

_KERAS_MODULES = {
    "inception-v3": ("inception_v3", "WEIGHTS_PATH"),
    "vgg16": ("vgg16", "WEIGHTS_PATH"),
    "vgg19": ("vgg19", "WEIGHTS_PATH"),
}


@pytest.mark.parametrize("name", sorted(APPLICATIONS))
def test_the_expected_file_is_the_one_keras_downloads(name: str) -> None:
    import importlib
    import inspect

    app = APPLICATIONS[name]
    assert app.weights_url.endswith("/" + app.weights_file)
    if name in _KERAS_MODULES:
        module, constant = _KERAS_MODULES[name]
        assert getattr(importlib.import_module(f"keras.src.applications.{module}"), constant) == app.weights_url
    else:  # resnet50 and mobilenet-v2 build the file name in code
        source = inspect.getsource(importlib.import_module(f"keras.src.applications.{'resnet' if name == 'resnet50' else 'mobilenet_v2'}"))
        assert "_weights_tf_dim_ordering_tf_kernels" in source
    assert expected_weights_path(name) == keras_models_dir() / app.weights_file


def test_offline_the_error_names_the_missing_file_and_where_to_put_it(capsys: pytest.CaptureFixture[str]) -> None:
    target = expected_weights_path("mobilenet-v2")
    if target.exists():
        pytest.skip(f"{target} exists: this machine has the weights")
    with pytest.raises(ModelUnavailableError) as caught:
        load_application("mobilenet-v2")
    message = str(caught.value)
    assert "'mobilenet_v2_weights_tf_dim_ordering_tf_kernels_1.0_224.h5'" in message
    assert os.fspath(target.parent) in message
    assert APPLICATIONS["mobilenet-v2"].weights_url in message
    assert "lite0" in message  # the offline alternative
    # the file named is the one Keras itself tried to fetch:
    assert APPLICATIONS["mobilenet-v2"].weights_file in str(caught.value.__cause__)


def _save_reference(name: str, folder: Path):  # noqa: ANN202 - (keras.Model, path)
    import keras

    app = APPLICATIONS[name]
    reference = getattr(keras.applications, app.constructor)(weights=None, classifier_activation=None)
    rng = np.random.default_rng(0)  # non-trivial weights, so that a wrong copy shows
    reference.set_weights(
        [array + rng.normal(0, 0.02, array.shape).astype(array.dtype) if array.ndim > 1 else array
         for array in reference.get_weights()]
    )
    path = folder / f"{name}.weights.h5"
    reference.save_weights(path)
    return reference, path


@pytest.fixture(scope="module")
def inception(tmp_path_factory: pytest.TempPathFactory):  # noqa: ANN201 - (reference keras.Model, ZooModel)
    reference, path = _save_reference("inception-v3", tmp_path_factory.mktemp("inception"))
    return reference, load_application("inception-v3", weights=path)


@pytest.fixture(scope="module")
def mobilenet(tmp_path_factory: pytest.TempPathFactory):  # noqa: ANN201 - (reference keras.Model, ZooModel)
    reference, path = _save_reference("mobilenet-v2", tmp_path_factory.mktemp("mobilenet"))
    return reference, load_application("mobilenet-v2", weights=path)


@pytest.mark.parametrize("fixture", ["inception", "mobilenet"])
def test_a_local_weights_file_gives_the_same_network_for_any_size(fixture: str, request: pytest.FixtureRequest) -> None:
    reference, zoo = request.getfixturevalue(fixture)
    for loaded, expected in zip(zoo.keras_model.get_weights(), reference.get_weights(), strict=True):
        np.testing.assert_array_equal(loaded, expected)
    size = zoo.input_size
    images = np.random.default_rng(1).random((1, size, size, 3), dtype=np.float32)
    expected_logits = np.asarray(reference(images * 2 - 1))
    np.testing.assert_allclose(np.asarray(zoo.logits_model()(images)), expected_logits, rtol=1e-4, atol=1e-4 * np.abs(expected_logits).max())
    assert tuple(zoo.keras_model.inputs[0].shape) == (None, None, None, 3)
    other = zoo.logits_model()(images[:, : zoo.min_size + 20, : size - 30])
    assert tuple(other.shape) == (1, 1000)
    dream = zoo.feature_model([layer for layer, _ in zoo.default_dream_layers])(images)
    assert len(dream) == 2 and all(float(np.std(output)) > 0 for output in dream)


def test_inception_names_do_not_depend_on_earlier_builds(inception) -> None:  # noqa: ANN001
    _, zoo = inception  # the zoo's copy is the third InceptionV3 Keras built in this process
    names = [layer.name for layer in zoo.keras_model.layers]
    assert names[:3] == ["input_layer", "conv2d", "batch_normalization"]
    assert "conv2d_93" in names and "conv2d_94" not in names  # 94 convolutions, numbered from 0
    assert [info.name for info in zoo.layer_table() if info.dream_target] == [f"mixed{i}" for i in range(11)]
    assert zoo.default_dream_layers == (("mixed3", 1.0), ("mixed5", 1.0))
    assert zoo.resolve_layer("Mixed4") == "mixed4"
    assert (zoo.min_size, zoo.input_size, zoo.kind, len(zoo.labels or [])) == (75, 299, "classifier", 1000)


def test_resnet_and_mobilenet_aliases() -> None:
    resnet = load_application("resnet50", weights=None)
    assert resnet.resolve_layer("conv4") == "conv4_block6_out"
    assert resnet.resolve_layer("conv3") == "conv3_block4_out"
    mobilenet = load_application("mobilenet-v2", weights=None)
    assert mobilenet.resolve_layer("block6") == "block_6_expand_relu"
    assert mobilenet.is_dream_target("block6") and not mobilenet.is_dream_target("block16")


def test_bad_names_and_paths(tmp_path: Path) -> None:
    with pytest.raises(ParameterError, match="Did you mean: inception-v3"):
        load_application("inception")
    with pytest.raises(ModelUnavailableError, match="does not exist. Received: weights="):
        load_application("mobilenet-v2", weights=tmp_path / "missing.weights.h5")
    bad = tmp_path / "bad.weights.h5"
    bad.write_bytes(b"not hdf5")
    with pytest.raises(ModelUnavailableError, match="Loading the weights of 'mobilenet-v2' from"):
        load_application("mobilenet-v2", weights=bad)


@pytest.mark.slow
@pytest.mark.skipif(not os.environ.get("NEUROFILTERS_SLOW_TESTS"), reason="17 s and 4 GB: set NEUROFILTERS_SLOW_TESTS=1")
def test_vgg16_dense_head_resizes_to_224(tmp_path: Path) -> None:
    from neurofilters.filters.zoo.preprocessing import CAFFE_VGG_MEAN_BGR, caffe_bgr

    reference, path = _save_reference("vgg16", tmp_path)
    zoo = load_application("vgg16", weights=path)
    images = np.random.default_rng(1).random((1, 224, 224, 3), dtype=np.float32)
    expected = np.asarray(reference(caffe_bgr(CAFFE_VGG_MEAN_BGR)(images)))
    np.testing.assert_allclose(np.asarray(zoo.logits_model()(images)), expected, rtol=1e-4, atol=1e-4 * np.abs(expected).max())
    assert tuple(zoo.logits_model()(images[:, :100, :150]).shape) == (1, 1000)
    assert zoo.resolve_layer("conv5_3") == "block5_conv3"


def test_the_weights_folder_is_the_one_keras_itself_chose() -> None:
    from keras.src.backend import config  # Keras' private answer, read here only to check the public convention

    assert keras_models_dir() == Path(config.keras_home()).expanduser() / "models"
