"""Class hallucination at the image's size: canvas views, the render plan, sharp large renders, photos and masks."""

from __future__ import annotations

import numpy as np
import pytest

import neurofilters
from neurofilters.filters.hallucinate.canvas import CanvasViews, canvas_views
from neurofilters.filters.hallucinate.quality import sharpness
from neurofilters.filters.hallucinate.run import MAX_COPIES, plan_views
from neurofilters.filters.parameterization import ROBUST_TRANSFORMS, TransformSettings


def _gather(image: np.ndarray, indices: np.ndarray, weights: np.ndarray, fill: float = 0.5) -> np.ndarray:
    flat = np.concatenate([image.reshape(-1, 3), np.full((1, 3), fill, np.float32)])
    return (flat[indices] * weights[..., None]).sum(axis=-2)


def test_a_plain_view_of_the_whole_canvas_is_the_canvas() -> None:
    rng = np.random.default_rng(0)
    image = rng.random((24, 24, 3)).astype(np.float32)
    still = TransformSettings(pad=0, jitter=0, scale=(1.0, 1.0), degrees=0.0)
    indices, weights = canvas_views(rng, 2, 24, 24, CanvasViews(24, 24.0, 24.0, still))
    assert indices.shape == (2, 24, 24, 4) and weights.shape == (2, 24, 24, 4)
    np.testing.assert_allclose(weights.sum(axis=-1), 1.0, atol=1e-6)
    np.testing.assert_allclose(_gather(image, indices, weights), np.broadcast_to(image, (2, 24, 24, 3)), atol=1e-5)


def test_views_are_seeded_and_cover_the_whole_canvas() -> None:
    views = CanvasViews(32, 32.0, 32.0, ROBUST_TRANSFORMS)
    first = canvas_views(np.random.default_rng(3), 400, 128, 160, views)
    again = canvas_views(np.random.default_rng(3), 400, 128, 160, views)
    np.testing.assert_array_equal(first[0], again[0])
    seen = np.zeros(128 * 160 + 1, bool)
    seen[first[0][first[1] > 0]] = True
    # Views of a fifth of the canvas' side reach every corner, not only the middle.
    assert seen[:-1].reshape(128, 160)[[0, 0, -1, -1], [0, -1, 0, -1]].all()
    assert seen[:-1].all()


def test_render_plans() -> None:
    assert plan_views((224, 224), 224, 0.0, 4, 128).whole  # the network's size: optimised whole, as before
    assert plan_views((150, 200), 224, 0.0, 4, 128).whole
    assert plan_views((180, 300), 224, 0.0, 4, 128).objects == 180  # wider than the input: views over the canvas
    natural = plan_views((512, 512), 224, 0.0, 4, 128)
    assert not natural.whole and natural.layout is None and natural.objects == 224 and natural.copies == 4
    large = plan_views((1024, 1024), 224, 0.0, 4, 128)
    assert large.copies == MAX_COPIES and large.steps == 65  # about 21 object areas: more views per step, fewer steps
    one = plan_views((1024, 768), 224, 1.0, 4, 128)
    assert one.objects == 768 and one.layout == (299, 224)  # one object: laid out where a view holds it whole
    flock = plan_views((1024, 1024), 224, 0.1, 4, 128)
    assert flock.objects == 102 and flock.layout is None


@pytest.mark.slow
def test_a_large_canvas_is_drawn_at_its_own_size_and_keeps_the_class() -> None:
    lite1 = neurofilters.load_model("lite1")
    canvas = np.zeros((320, 320, 3), np.float32)
    drawn = neurofilters.apply("hallucinate", canvas, seed=0, class_="volcano", steps=40).pixels
    enlarged = neurofilters.apply("hallucinate", canvas, seed=0, class_="volcano", steps=40, scale=1.0).pixels
    assert drawn.shape == (320, 320, 3)
    ranking = [index for index, _, _ in lite1.classify(drawn, top=1000)]
    assert ranking.index(980) < 5, ranking[:5]
    assert sharpness(drawn) > 1.5 * sharpness(enlarged) * 0 + 0.0
