"""``adversarial --target none``: the untargeted attack moves the photo away from the class the network sees."""

from __future__ import annotations

import numpy as np
import pytest

import neurofilters


@pytest.mark.slow
def test_untargeted_attack_leaves_the_photo_s_class_within_epsilon(coffee: np.ndarray) -> None:
    lite0 = neurofilters.load_model("lite0")
    photo = coffee[::2, ::2].copy()
    seen, _, before = lite0.classify(photo, top=1)[0]
    assert seen == 967  # espresso
    result = neurofilters.apply("adversarial", photo, target="none", epsilon=2, steps=10)
    assert np.abs(result.pixels - photo).max() <= 2 / 255 + 1e-6
    after = {index: p for index, _, p in lite0.classify(result.pixels, top=1000)}
    assert lite0.classify(result.pixels, top=1)[0][0] != 967 and after[967] < before / 10
    assert "perturbation" in result.outputs
    targeted = neurofilters.apply("adversarial", photo, target="NONE", epsilon=2, steps=10)
    np.testing.assert_array_equal(targeted.pixels, result.pixels)  # case does not matter, and it is deterministic


def test_untargeted_attack_needs_a_classifier(coffee: np.ndarray) -> None:
    with pytest.raises(neurofilters.plugin_host.ParameterError, match="classifier"):
        neurofilters.apply("adversarial", coffee[::4, ::4].copy(), target="none", model="vgg16-hed", steps=1)
