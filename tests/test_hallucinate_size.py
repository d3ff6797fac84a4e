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


def _rank(model, image: np.ndarray, target: int) -> int:
    return [index for index, _, _ in model.classify(image, top=1000)].index(target) + 1


def test_the_mask_keeps_every_pixel_outside_it(chelsea: np.ndarray) -> None:
    photo = chelsea[::4, ::4][:72, :96].copy()
    mask = np.zeros(photo.shape[:2], np.float32)
    mask[:, :40] = 1.0
    mask[:, 40:48] = 0.5
    for start, parameterization in (("image", "spectral"), ("noise", "pixel")):
        values = dict(seed=0, start=start, class_="flamingo", steps=2, work_size=64, mask=mask, parameterization=parameterization)
        result = neurofilters.apply("hallucinate", photo, **values).pixels
        np.testing.assert_array_equal(result[:, 48:], photo[:, 48:])
        assert np.abs(result[:, :40] - photo[:, :40]).mean() > 0.002, start
    again = neurofilters.apply("hallucinate", photo, **values).pixels
    assert again.tobytes() == result.tobytes()  # same seed, same bytes


@pytest.mark.slow
def test_plain_pixels_are_the_mushy_baseline() -> None:
    # The textbook baseline (--parameterization pixel) against the spectral default, same views and steps.
    canvas = np.zeros((160, 160, 3), np.float32)
    values = dict(seed=0, class_="volcano", steps=16, work_size=128)
    pixel = neurofilters.apply("hallucinate", canvas, parameterization="pixel", **values).pixels
    spectral = neurofilters.apply("hallucinate", canvas, **values).pixels
    assert pixel.shape == spectral.shape == (160, 160, 3)
    # The pixel image's energy sits in the finest detail (neighbouring pixels disagree): grey mush.
    assert sharpness(pixel) > 1.5 * sharpness(spectral)


@pytest.mark.slow
def test_a_large_canvas_is_drawn_at_its_own_size_sharper_than_enlarged_and_keeps_the_class() -> None:
    from neurofilters.filters.visualization.objectives import class_objective
    from neurofilters.filters.visualization.visualize import RECIPES, visualize
    from neurofilters.filters.octaves import resize_image

    lite0, lite1 = neurofilters.load_model("lite0"), neurofilters.load_model("lite1")
    messages: list[str] = []
    canvas = np.zeros((448, 448, 3), np.float32)
    result = neurofilters.apply("hallucinate", canvas, seed=0, class_="volcano", steps=24,
                                progress=lambda fraction, message: messages.append(message))
    drawn = result.pixels
    # What the filter did before: the 224-px render enlarged to the canvas.
    small = visualize(lite0, class_objective(lite0, 980), height=224, width=224, steps=24, recipe=RECIPES["robust"],
                      rng=np.random.default_rng(0))
    enlarged = np.clip(resize_image(small, (448, 448)), 0.0, 1.0)
    assert drawn.shape == (448, 448, 3)
    # Measured: 0.086 drawn against 0.032 enlarged (2.7x; 0.062 before the canvas' larger step); Lite1 ranks volcano 1.
    assert sharpness(drawn) > 1.5 * sharpness(enlarged)
    assert _rank(lite1, drawn, 980) <= 5
    assert "at 448x448: lite0 sees" in result.summary and "lite1 (not used to draw) ranks volcano" in result.summary  # stays on screen


@pytest.mark.slow
def test_image_start_puts_the_class_into_the_photo_and_keeps_it(chelsea: np.ndarray) -> None:
    from skimage.metrics import structural_similarity

    lite1 = neurofilters.load_model("lite1")
    photo = chelsea[::2, ::2].copy()  # 150 x 226: wider than the network's input, drawn as a canvas
    result = neurofilters.apply("hallucinate", photo, seed=0, start="image", class_="flamingo", steps=24).pixels
    # Measured: Lite1's rank of flamingo 348 -> 1, SSIM 0.86.
    assert _rank(lite1, photo, 130) > 100
    assert _rank(lite1, result, 130) <= 5
    assert structural_similarity(photo, result, channel_axis=2, data_range=1.0) >= 0.4


@pytest.mark.slow
def test_one_large_object_is_laid_out_small_then_refined_at_full_size() -> None:
    lite0 = neurofilters.load_model("lite0")
    messages: list[str] = []
    image = neurofilters.apply("hallucinate", np.zeros((300, 400, 3), np.float32), seed=0, class_="volcano", steps=8,
                               scale=1.0, progress=lambda fraction, message: messages.append(message)).pixels
    assert image.shape == (300, 400, 3)
    assert any(message.startswith("stage 2/2") for message in messages)  # the layout render, then the canvas
    assert any("64 network views" in message and "objects of about 300 px" in message for message in messages)
    # Nothing silent for seconds: the trainer's build and trace, and the verdict, each say what runs.
    first_step = next(index for index, message in enumerate(messages) if message.startswith("stage 1/2"))
    assert messages.index("preparing the network") < first_step
    assert messages.index("classifying the result") > max(index for index, message in enumerate(messages) if "network views" in message)
    assert lite0.classify(image, top=1)[0][0] == 980


def test_the_half_spectrum_draws_the_full_spectrums_image() -> None:
    from keras import ops

    from neurofilters.filters.hallucinate.canvas import half_scale, half_spectrum, half_spectrum_to_image, image_to_half_spectrum
    from neurofilters.filters.parameterization import frequency_scale, initial_spectrum, spectrum_to_image

    rng = np.random.default_rng(0)
    for height, width in ((32, 48), (33, 47)):
        full = initial_spectrum(rng, height, width) * 30
        expected = ops.convert_to_numpy(spectrum_to_image(full, frequency_scale(height, width)))
        half = half_spectrum(full)
        assert half.shape == (2, 3, height, width // 2 + 1)
        drawn = ops.convert_to_numpy(half_spectrum_to_image(half, half_scale(height, width), width))
        np.testing.assert_allclose(drawn, expected, atol=1e-5)
        photo = rng.uniform(0.01, 0.99, (height, width, 3)).astype(np.float32)
        back = ops.convert_to_numpy(half_spectrum_to_image(image_to_half_spectrum(photo, half_scale(height, width)), half_scale(height, width), width))
        np.testing.assert_allclose(back[0], photo, atol=1e-5)


def test_the_views_and_their_gradient_are_the_bilinear_sums() -> None:
    import keras
    import tensorflow as tf

    from neurofilters.filters.hallucinate.canvas import SpectralCanvas

    if keras.backend.backend() != "tensorflow":
        pytest.skip("the sparse product is TensorFlow's")
    rng = np.random.default_rng(1)
    pixels = rng.uniform(0.1, 0.9, (40, 36, 3)).astype(np.float32)
    canvas = SpectralCanvas(40, 36, pixels, pixel=True, levels=2)
    indices, weights = canvas_views(rng, 3, 40, 36, CanvasViews(16, 12.0, 40.0, ROBUST_TRANSFORMS, 0.5, 2))
    upstream = rng.standard_normal((3, 16, 16, 3)).astype(np.float32)
    with tf.GradientTape() as tape:
        views = canvas([tf.constant(indices), tf.constant(weights)])
        total = tf.reduce_sum(views * upstream)
    gradient = tape.gradient(total, canvas.spectrum).numpy()
    # The same in numpy: the level-1 pyramid (2x2 means), gathers, and their adjoint (scatter-adds).
    level = pixels.reshape(20, 2, 18, 2, 3).mean(axis=(1, 3))
    flat = np.concatenate([pixels.reshape(-1, 3), level.reshape(-1, 3), np.full((1, 3), 0.5, np.float32)])
    np.testing.assert_allclose(views.numpy(), (flat[indices] * weights[..., None]).sum(axis=-2), atol=1e-6)
    flat_gradient = np.zeros_like(flat)
    np.add.at(flat_gradient, indices.reshape(-1), (weights[..., None] * upstream[..., None, :]).reshape(-1, 3))
    expected = flat_gradient[: 40 * 36].reshape(40, 36, 3)
    level_gradient = flat_gradient[40 * 36 : 40 * 36 + 20 * 18].reshape(20, 18, 3) / 4
    expected += np.repeat(np.repeat(level_gradient, 2, axis=0), 2, axis=1)
    np.testing.assert_allclose(gradient, expected, atol=1e-5)


def test_a_large_canvas_takes_a_larger_step() -> None:
    from neurofilters.filters.hallucinate.run import canvas_learning_rate

    assert canvas_learning_rate(0.05, (224, 224), 224) == 0.05
    assert canvas_learning_rate(0.05, (512, 512), 224) == pytest.approx(0.05 * 1.512, abs=1e-4)
    assert canvas_learning_rate(0.05, (1024, 1024), 224) == pytest.approx(0.1)
    assert canvas_learning_rate(0.05, (4096, 4096), 224) == pytest.approx(0.1)  # at most 2x


def test_the_canvas_step_is_traced_once_and_never_again(caplog: pytest.LogCaptureFixture) -> None:
    import logging

    from neurofilters.filters.hallucinate import canvas as module

    module._TRAINERS.clear()  # a trainer of this size cached by an earlier test would not be traced here
    canvas = np.zeros((96, 120, 3), np.float32)
    with caplog.at_level(logging.DEBUG, logger="neurofilters.hallucinate.canvas"):
        first = neurofilters.apply("hallucinate", canvas, seed=0, class_="volcano", steps=3, work_size=64).pixels
        again = neurofilters.apply("hallucinate", canvas, seed=0, class_="volcano", steps=3, work_size=64).pixels
    lines = [record.getMessage() for record in caplog.records if record.name == "neurofilters.hallucinate.canvas"]
    # One trace on the first run's first step (none for Adam's moments), none after; the second run reuses it.
    assert lines == ["canvas 96x120: 3 steps of 4 views, 1 traces in warm-up, 0 after",
                     "canvas 96x120: 3 steps of 4 views, 0 traces in warm-up, 0 after"]
    assert first.tobytes() == again.tobytes()  # the cached trainer starts afresh: same seed, same bytes


def test_tensorflows_irfft2d_draws_the_same_image_and_gradient_as_the_keras_ops_transform() -> None:
    import keras
    import tensorflow as tf
    from keras import ops

    from neurofilters.filters.hallucinate import canvas
    from neurofilters.filters.parameterization import initial_spectrum

    if keras.backend.backend() != "tensorflow":
        pytest.skip("the one irfft2d is TensorFlow's")
    rng = np.random.default_rng(2)
    for height, width in ((64, 64), (45, 38)):
        spectrum = tf.Variable(canvas.half_spectrum(initial_spectrum(rng, height, width) * 30))
        scale = tf.constant(canvas.half_scale(height, width))
        upstream = rng.standard_normal((3, height, width)).astype(np.float32)
        drawn = {}
        for name, transform in (("irfft2d", canvas._tensorflow_logits), ("keras.ops", canvas._logits)):
            with tf.GradientTape() as tape:
                logits = transform(spectrum, scale, width)
                total = tf.reduce_sum(logits * upstream)
            drawn[name] = (ops.convert_to_numpy(logits), tape.gradient(total, spectrum).numpy())
        assert drawn["irfft2d"][0].shape == (3, height, width)
        np.testing.assert_allclose(drawn["irfft2d"][0], drawn["keras.ops"][0], rtol=0, atol=2e-5)
        np.testing.assert_allclose(drawn["irfft2d"][1], drawn["keras.ops"][1], rtol=1e-4, atol=1e-4 * np.abs(drawn["keras.ops"][1]).max())
