"""The zoo's plugin module: registration stays light, specs resolve to loaders."""

from __future__ import annotations

import subprocess
import sys

import pytest

import neurofilters.plugin_host as plugin_host
from neurofilters.filters.zoo import ZooModel
from neurofilters.filters.zoo.plugin import register_models

EXPECTED = ["lite0", "lite1", "vgg16-hed", "inception-v3", "inception-v3-nsfwjs", "vgg16", "vgg19", "resnet50", "mobilenet-v2"]


def test_registration_does_not_import_tensorflow() -> None:
    code = (
        "import sys, neurofilters.plugin_host as plugin_host, neurofilters.filters.zoo.plugin as p\n"
        "specs = p.register_models()\n"
        "print(len(specs), sorted(m for m in ('tensorflow', 'keras', 'jax', 'h5py', 'numpy') if m in sys.modules))\n"
        "registry = plugin_host.build_registry(autoload=False)\n"
        "registry.get_model('lite0')\n"
        "print(sorted(m for m in ('tensorflow', 'keras') if m in sys.modules))\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.split() == [str(len(EXPECTED)), "[]", "[]"]


def test_every_model_is_registered_with_an_importable_loader() -> None:
    registry = plugin_host.get_registry()
    assert [name for name in registry.model_names() if name in EXPECTED] == EXPECTED
    assert registry.get_model("efficientnet-lite0").name == "lite0"
    kinds = {spec.name: spec.kind for spec in register_models()}
    assert kinds["vgg16-hed"] == "backbone" and kinds["lite0"] == kinds["inception-v3"] == "classifier"
    for spec in register_models():
        assert isinstance(spec.load, str) and spec.load.startswith("neurofilters.filters.zoo.")
        assert callable(spec.loader())
    assert not [failure for failure in registry.failures if "neurofilters.filters.zoo" in str(failure)]


def test_a_filter_context_loads_lite0_once(coffee) -> None:  # noqa: ANN001
    context = plugin_host.FilterContext()
    model = context.load_model("efficientnet-lite0")
    assert isinstance(model, ZooModel) and model.name == "lite0"
    assert context.load_model("efficientnet-lite0") is model
    assert model.classify(coffee, top=1)[0][0] == 967


def test_an_offline_keras_application_is_a_model_unavailable_error() -> None:
    from neurofilters.filters.zoo.applications import expected_weights_path

    if expected_weights_path("mobilenet-v2").exists():
        pytest.skip("this machine has the MobileNetV2 weights")
    with pytest.raises(plugin_host.ModelUnavailableError, match="mobilenet_v2_weights_tf_dim_ordering_tf_kernels_1.0_224.h5"):
        plugin_host.FilterContext().load_model("mobilenet-v2")
