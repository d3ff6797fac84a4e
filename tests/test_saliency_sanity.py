"""Sanity checks of the saliency methods: cascading randomisation (Adebayo et al. 2018) and the pointing game.

Real model (Lite0 with its pretrained weights) and real photos (scikit-image).
The rates and correlations are printed (``pytest -s``) for the docs.
"""

from __future__ import annotations

import numpy as np
import pytest

import neurofilters
from neurofilters.filters.saliency.engine import explain, resize_rgb
from neurofilters.filters.saliency.plugin import METHODS, PARAMS
from neurofilters.filters.saliency.sanity import cascading_randomisation, spearman

pytestmark = pytest.mark.slow

DEFAULTS = {param.name: param.default for param in PARAMS}


@pytest.fixture(scope="module")
def lite0():
    return neurofilters.load_model("lite0")


def test_spearman_matches_a_direct_rank_correlation() -> None:
    rng = np.random.default_rng(0)
    a = rng.normal(size=500)
    b = a + rng.normal(size=500)
    ranks = [np.argsort(np.argsort(x)) for x in (a, b)]
    assert spearman(a, b) == pytest.approx(np.corrcoef(*ranks)[0, 1], abs=1e-12)
    tied = np.maximum(a, 0.0)  # many equal zeros, as in a rectified map
    assert -1.0 <= spearman(tied, b) <= 1.0 and spearman(tied, tied) == pytest.approx(1.0)


def test_cascading_randomisation_decorrelates_gradient_and_grad_cam(lite0, chelsea: np.ndarray) -> None:
    before = [w.copy() for w in lite0.keras_model.get_weights()]
    image = resize_rgb(chelsea, (224, 224))
    report = cascading_randomisation(
        lite0, image, 282, methods=("gradient", "grad-cam", "guided-backprop"), levels=3, seed=0
    )
    print("\n" + "\n".join(f"{m:16s} " + " ".join(f"{v:+.2f}" for v in c) for m, c in report.correlations.items()))
    assert report.levels == ["original", "logits", "+head", "+block15"]
    for method in ("gradient", "grad-cam"):
        assert report.correlations[method][0] == pytest.approx(1.0)
        assert report.correlations[method][-1] < 0.5, method  # once the top blocks are random
    # Known (Adebayo et al.): guided backprop hardly changes; ours neither.
    assert report.correlations["guided-backprop"][-1] > 0.9
    for w, w2 in zip(before, lite0.keras_model.get_weights(), strict=True):
        np.testing.assert_array_equal(w, w2)  # the check ran on a clone


def test_saliency_check_command_prints_the_table_and_writes_the_figure(tmp_path, chelsea, capsys) -> None:
    from PIL import Image

    from neurofilters.plugin_host.cli.main import main

    photo = tmp_path / "cat.png"
    Image.fromarray((chelsea[::2, ::2] * 255).astype(np.uint8)).save(photo)
    figure = tmp_path / "check.png"
    code = main(["saliency-check", "lite0", str(photo), "--class", "tiger cat", "--levels", "1",
                 "--methods", "gradient,grad-cam", "--figure", str(figure)])
    out = capsys.readouterr().out
    assert code == 0, out
    assert "class 282 (tiger cat)" in out and "logits" in out and "grad-cam" in out
    with Image.open(figure) as written:
        assert written.size[0] > 300
    assert main(["saliency-check", "lite0", str(photo), "--methods", "gradcam"]) == 2
    assert "grad-cam" in capsys.readouterr().err


def _composites(count: int, seed: int = 0):
    """Object photos pasted at random positions on scikit-image textures: (image, box, class id)."""
    from skimage import data

    lite0 = neurofilters.load_model("lite0")
    objects = [
        data.chelsea()[10:300, 90:360],   # the cat's head
        data.coffee()[20:390, 40:480],    # the cup
        data.rocket()[40:427, 230:420],   # the rocket on its pad
    ]
    textures = [data.brick(), data.grass(), data.gravel()]
    rng = np.random.default_rng(seed)
    cases = []
    for index in range(count):
        photo = objects[index % len(objects)].astype(np.float32) / 255.0
        class_id = lite0.classify(photo, top=1)[0][0]
        texture = textures[(index // len(objects)) % len(textures)].astype(np.float32) / 255.0
        background = resize_rgb(np.repeat(texture[:, :, None], 3, axis=2), (448, 448))
        # The pasted object covers 15-25 % of the composite, whatever its shape.
        scale = np.sqrt(rng.uniform(0.15, 0.25) * 448 * 448 / (photo.shape[0] * photo.shape[1]))
        size = (int(photo.shape[0] * scale), int(photo.shape[1] * scale))
        top, left = rng.integers(0, 448 - size[0]), rng.integers(0, 448 - size[1])
        composite = background.copy()
        composite[top : top + size[0], left : left + size[1]] = resize_rgb(photo, size)
        cases.append((composite, (top, left, top + size[0], left + size[1]), class_id))
    return cases


def pointing_game(model, cases, methods=METHODS, tolerance: int = 15) -> dict[str, float]:
    """Share of cases whose map peak (at the image's size) falls in the pasted box (± tolerance, Zhang et al.)."""
    from neurofilters.filters.saliency.engine import saliency_map

    hits = {method: 0 for method in methods}
    for composite, (top, left, bottom, right), class_id in cases:
        for method in methods:
            params = DEFAULTS | {"method": method, "class_": class_id, "samples": 8, "steps": 8}
            explanation = explain(model, composite, params, rng=np.random.default_rng(0))
            grey = saliency_map(explanation, composite.shape[:2], method, 0.0)
            row, col = np.unravel_index(np.argmax(grey), grey.shape)
            hits[method] += int(top - tolerance <= row < bottom + tolerance and left - tolerance <= col < right + tolerance)
    return {method: hits[method] / len(cases) for method in methods}


def test_pointing_game(lite0) -> None:
    cases = _composites(12)
    rates = pointing_game(lite0, cases)
    print("\npointing game (12 composites): " + ", ".join(f"{m} {r:.0%}" for m, r in rates.items()))
    assert rates["grad-cam"] >= 0.9
    assert rates["guided-grad-cam"] >= 0.9
