"""The Gram loss's closed-form gradient against autodiff, and the tiled engine against the whole image."""

from __future__ import annotations

import numpy as np
import pytest

from neurofilters.filters.texture.gram import gram, gram_loss, gram_loss_gradient, relative_weight


def test_closed_form_gram_gradient_equals_autodiff() -> None:
    import tensorflow as tf

    rng = np.random.default_rng(3)
    features = rng.standard_normal((7, 5, 6))  # 35 positions, 6 channels
    target = gram(rng.standard_normal((40, 6)))
    weight = 2.5
    variable = tf.Variable(features)
    with tf.GradientTape() as tape:
        flat = tf.reshape(variable, (-1, 6))
        g = tf.matmul(flat, flat, transpose_a=True) / 35.0
        loss = weight / 4.0 * tf.reduce_sum((g - target) ** 2) / 36.0
    autodiff = tape.gradient(loss, variable).numpy()
    closed = gram_loss_gradient(features, target, weight)
    np.testing.assert_allclose(closed, autodiff, rtol=1e-10, atol=1e-12)
    assert gram_loss(gram(features), target, weight) == pytest.approx(float(loss.numpy()), rel=1e-12)
    # a wrong normalisation (M instead of M N^2) would be caught
    assert not np.allclose(closed * 36, autodiff)


def test_relative_weight_makes_an_all_zero_gram_cost_the_weight() -> None:
    target = gram(np.random.default_rng(0).standard_normal((50, 4)))
    assert gram_loss(np.zeros_like(target), target, relative_weight(target, 3.0)) == pytest.approx(3.0)


@pytest.mark.slow
def test_tiled_loss_and_gradient_match_the_whole_image(monkeypatch: pytest.MonkeyPatch) -> None:
    """Gram sums over 4 overlapping tiles give (nearly) the whole image's loss and gradient."""
    import skimage.data

    from neurofilters.filters.texture import synthesis
    from neurofilters.filters.texture.engine import Objective
    from neurofilters.plugin_host import FilterContext

    context = FilterContext(seed=0)
    params = {"model": "vgg16-hed", "precision": "float32", "tile_size": 512}
    layers = ["block1_conv1", "block2_pool", "block3_conv1"]
    whole = synthesis.build_engine(context, params, layers, None)
    tiled = synthesis.build_engine(context, {**params, "tile_size": 64}, layers, None)
    image = np.asarray(skimage.data.astronaut()[100:228, 150:278], np.float32) / 255.0
    sample = np.asarray(skimage.data.coffee()[:96, :96], np.float32) / 255.0
    objective = Objective(whole.gram_targets(sample), [1.0, 1.0, 1.0])
    loss_whole, grad_whole, _ = whole.loss_and_gradient(image, objective)
    loss_tiled, grad_tiled, _ = tiled.loss_and_gradient(image, objective)
    assert len(tiled._tiles(128, 128, False)[0]) == 4
    assert loss_tiled == pytest.approx(loss_whole, rel=2e-3)
    cosine = float(np.sum(grad_whole * grad_tiled) / np.linalg.norm(grad_whole) / np.linalg.norm(grad_tiled))
    assert cosine > 0.999, cosine
    # and the engine's gradient is the autodiff gradient of the loss: a finite difference along it
    step = 1e-2 * grad_whole / np.abs(grad_whole).max()
    loss_moved, _, _ = whole.loss_and_gradient(image - step, objective)
    predicted = float(np.sum(grad_whole * step))
    assert (loss_whole - loss_moved) == pytest.approx(predicted, rel=0.05)


@pytest.mark.slow
@pytest.mark.parametrize("weights", [[1.0, 1.0, 1.0, 1.0], [1.0, 1.0, 0.0, 0.0]], ids=["every-layer", "shallow-only"])
def test_one_pass_over_the_windows_equals_the_two_tiled_passes(weights: list[float]) -> None:
    """Several windows in one forward and backward pass give the two passes' loss and gradient, content included;
    with the deep layers weighted 0 both read only the shallow ones (the loss has no deep part)."""
    import skimage.data

    from neurofilters.filters.texture import synthesis
    from neurofilters.filters.texture.engine import Objective
    from neurofilters.plugin_host import FilterContext

    params = {"model": "vgg16-hed", "precision": "float32", "tile_size": 64}
    layers = ["block1_conv1", "block2_pool", "block3_conv1", "block4_conv1"]
    engine = synthesis.build_engine(FilterContext(seed=0), params, layers, "block4_conv2")
    image = np.asarray(skimage.data.astronaut()[100:212, 150:278], np.float32) / 255.0
    style = np.asarray(skimage.data.coffee()[:96, :96], np.float32) / 255.0
    content = np.asarray(skimage.data.astronaut()[90:202, 160:288], np.float32) / 255.0
    objective = Objective(engine.gram_targets(style), weights, content_target=engine.content_features(content), content_weight=0.5)
    tiles, _ = engine._tiles(112, 128, False)
    assert len(tiles) == 4 and engine._fits(tiles)
    one_pass = engine.loss_and_gradient(image, objective)
    engine.fused_max_pixels = 0
    two_passes = engine.loss_and_gradient(image, objective)
    assert one_pass[0] == pytest.approx(two_passes[0], rel=1e-4)
    for part in ("style", "content"):
        assert one_pass[2][part] == pytest.approx(two_passes[2][part], rel=1e-4) and two_passes[2][part] > 0
    scale = float(np.abs(two_passes[1]).max())
    np.testing.assert_allclose(one_pass[1], two_passes[1], rtol=0, atol=2e-4 * scale)
    if weights[-1] == 0.0:  # the deep layers' mismatch is not in the loss: changing their targets changes nothing
        moved = Objective([*objective.style_targets[:2], objective.style_targets[2] * 3, objective.style_targets[3] * 3], weights,
                          content_target=objective.content_target, content_weight=0.5)
        assert engine.loss_and_gradient(image, moved)[0] == two_passes[0]


def test_one_pass_is_taken_only_within_its_pixels_and_a_quarter_of_the_memory(monkeypatch: pytest.MonkeyPatch) -> None:
    """Four 544² windows (a 1024² style octave) fit where they need at most a quarter of the machine's memory and not over the pixel bound."""
    from neurofilters.filters.texture import engine as engine_module
    from neurofilters.filters.texture.engine import FUSED_BYTES_PER_PIXEL, FUSED_MAX_PIXELS, GramEngine

    total = engine_module.physical_memory()  # this machine's, read from the system
    assert total is None or total > 2**28
    engine = GramEngine(None, 4, True, 512, 32, [1, 2, 4, 8, 8])  # type: ignore[arg-type]  # geometry only: no network is run
    tiles, _ = engine._tiles(1024, 1024, False)
    pixels = sum((t.window[1] - t.window[0]) * (t.window[3] - t.window[2]) for t in tiles)
    assert len(tiles) == 4 and pixels == 4 * 544 * 544 <= FUSED_MAX_PIXELS
    monkeypatch.setattr(engine_module, "physical_memory", lambda: 4 * pixels * FUSED_BYTES_PER_PIXEL)
    assert engine._fits(tiles)
    monkeypatch.setattr(engine_module, "physical_memory", lambda: 4 * pixels * FUSED_BYTES_PER_PIXEL - 4)
    assert not engine._fits(tiles)
    monkeypatch.setattr(engine_module, "physical_memory", lambda: None)  # the system does not say: the pixel bound alone
    assert engine._fits(tiles)
    engine.fused_max_pixels = pixels - 1
    assert not engine._fits(tiles)
