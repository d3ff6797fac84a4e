"""Layer names known without a framework: the table matches the models, and typos fail before TensorFlow loads."""

from __future__ import annotations

import subprocess
import sys
import time

import pytest

import neurofilters
from neurofilters.filters.zoo.layer_names import check_layers, table
from neurofilters.filters.zoo.make_layer_names import EMBEDDED, table_of
from neurofilters.plugin_host import ParameterError


@pytest.mark.parametrize("name", EMBEDDED)
def test_the_table_is_the_models_own(name: str) -> None:
    """Rerun ``python -m neurofilters.filters.zoo.make_layer_names`` when this fails."""
    assert table(name) == table_of(name)


def test_known_names_pass_and_typos_suggest() -> None:
    check_layers("lite0", (("block5", 1.0), ("block10_expand_act", 2.0)))
    check_layers("vgg16-hed", "conv4_3")
    check_layers("vgg16-hed", "BLOCK4_CONV3")  # case-insensitive, as the model resolves them
    check_layers("lite0", "auto")
    with pytest.raises(ParameterError, match="Did you mean: block5_expand_act") as caught:
        check_layers("lite0", (("block5_expand_actt", 1.0),), param="layers")
    assert caught.value.param == "layers"


def test_a_mistyped_layer_fails_before_tensorflow_loads(tmp_path) -> None:
    from PIL import Image

    Image.new("RGB", (32, 32), "grey").save(tmp_path / "in.png")
    code = ("import sys; from neurofilters.plugin_host.cli.main import main; "
            "code = main(['run', 'deepdream', sys.argv[1], '-o', sys.argv[2], '--model', 'vgg16-hed', '--layers', 'conv4_3,conv9_1']); "
            "print(code, 'tensorflow' in sys.modules)")
    began = time.monotonic()
    result = subprocess.run([sys.executable, "-c", code, str(tmp_path / "in.png"), str(tmp_path / "out.png")],
                            capture_output=True, text=True, timeout=120)
    assert result.stdout.split() == ["2", "False"], result.stdout + result.stderr
    assert "--layers must name layers of model 'vgg16-hed'" in result.stderr and "conv5_1" in result.stderr
    assert time.monotonic() - began < 30  # no model, no framework: about a second even on a loaded machine
    assert not (tmp_path / "out.png").exists()


def test_the_python_api_checks_them_too() -> None:
    import numpy as np

    with pytest.raises(ParameterError, match="block10_expand_act"):
        neurofilters.apply("deepdream", np.zeros((16, 16, 3), np.float32), layers="block10_expandact")
