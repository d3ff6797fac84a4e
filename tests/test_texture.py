"""Texture synthesis and style transfer on real textures: the loss falls, textures are recognisable, tiles wrap."""

from __future__ import annotations

import numpy as np
import pytest
from texture_fixtures import gimp_pattern_dir, skimage_textures

from neurofilters.plugin_host import FilterContext
from neurofilters.plugin_host.imageio.files import load_image

pytestmark = pytest.mark.slow

SIZE = 64
STEPS = 80
LAYERS = ["block1_conv1", "block1_pool", "block2_pool", "block3_pool", "block4_pool"]


@pytest.fixture(scope="module")
def engine():  # type: ignore[no-untyped-def]
    from neurofilters.filters.texture import synthesis

    return synthesis.build_engine(FilterContext(seed=0), {"model": "vgg16-hed", "precision": "float32", "tile_size": 512}, LAYERS, None)


@pytest.fixture(scope="module")
def samples(tmp_path_factory: pytest.TempPathFactory) -> dict[str, np.ndarray]:
    """scikit-image's brick, grass, gravel and one of GIMP's own RGB patterns."""
    from neurofilters.filters.texture.synthesis import rgb_of

    found = skimage_textures()
    folder = gimp_pattern_dir(tmp_path_factory)
    for name in ("Wood/wood2.pat",):
        path = folder / name
        if path.is_file():
            found[path.stem] = rgb_of(load_image(path).pixels)
    return found


def _loss(engine, image: np.ndarray, sample: np.ndarray) -> float:  # type: ignore[no-untyped-def]
    from neurofilters.filters.texture.engine import Objective

    return engine.loss_and_gradient(image, Objective(engine.gram_targets(sample), [1.0] * len(LAYERS)))[0]


@pytest.fixture(scope="module")
def synthesised(engine, samples: dict[str, np.ndarray]) -> dict[str, tuple[np.ndarray, float, float]]:  # type: ignore[no-untyped-def]
    from neurofilters.filters.texture.synthesis import synthesise

    out = {}
    for name, sample in samples.items():
        # Gatys' start: uniform white noise (the filter's own start, noise with the sample's colour
        # covariance, is already closer; the figure for it is in the docs)
        start = _loss(engine, np.random.default_rng(0).random((SIZE, SIZE, 3), dtype=np.float32), sample)
        image, history = synthesise(engine, sample, (SIZE, SIZE), steps=STEPS, octaves=1, wrap=False, rng=np.random.default_rng(0))
        out[name] = (image, start, _loss(engine, image, sample))
        assert history[-1] == pytest.approx(out[name][2], rel=1e-4)
    return out


def test_gram_loss_falls_at_least_100x_from_noise(synthesised: dict[str, tuple[np.ndarray, float, float]]) -> None:
    for name, (_, start, end) in synthesised.items():
        assert start / end >= 100, f"{name}: noise loss {start:.4g}, after {STEPS} steps {end:.4g} ({start / end:.1f}x)"


def test_each_synthesis_is_closest_to_its_own_sample(engine, samples, synthesised) -> None:  # type: ignore[no-untyped-def]
    names = sorted(samples)
    assert len(names) >= 4, names
    table = np.array([[_loss(engine, synthesised[made][0], samples[target]) for target in names] for made in names])
    for row, name in enumerate(names):
        assert names[int(np.argmin(table[row]))] == name, f"{name}: losses against {names}: {table[row]}"


def seam_ratio(image: np.ndarray) -> float:
    """Mean absolute wrap-around step (last row/column to the first) over the mean interior step, both axes."""
    grey = image.mean(axis=2)
    seam = (np.abs(grey[0] - grey[-1]).mean() + np.abs(grey[:, 0] - grey[:, -1]).mean()) / 2
    inner = (np.abs(np.diff(grey, axis=0)).mean() + np.abs(np.diff(grey, axis=1)).mean()) / 2
    return float(seam / inner)


def test_tileable_texture_wraps_as_seamlessly_as_gimps_own_patterns(engine, samples) -> None:  # type: ignore[no-untyped-def]
    """GIMP's 58 patterns have a median seam/interior ratio of 1.15 (DESIGN.md); ours must not exceed it.

    A wrapped synthesis has no seam at all by construction (the network sees the torus), so its
    ratio sits near 1 with statistical noise of a few percent on 64 x 64 pixels; 1.15 leaves room for
    that noise and still fails a non-wrapping result: the samples' own crops (control) score far higher.
    """
    from neurofilters.filters.texture.synthesis import synthesise

    image, _ = synthesise(engine, samples["brick"], (48, 48), steps=30, octaves=1, wrap=True, rng=np.random.default_rng(1))
    assert seam_ratio(image) <= 1.15, seam_ratio(image)
    assert seam_ratio(samples["brick"][:48, :48]) > 1.3  # the measure does see a seam


def test_style_transfer_keeps_the_content(chelsea: np.ndarray, samples: dict[str, np.ndarray]) -> None:
    from neurofilters.filters.octaves import resize_image
    from neurofilters.filters.texture import synthesis
    from neurofilters.filters.texture.plugin import STYLE_PARAMS
    from neurofilters.filters.texture.style import transfer

    CONTENT_WEIGHT = next(param.default for param in STYLE_PARAMS if param.name == "content_weight")  # noqa: N806

    engine = synthesis.build_engine(FilterContext(seed=0), {"model": "vgg16-hed", "precision": "float32", "tile_size": 512},
                                    ["block1_conv1", "block2_conv1", "block3_conv1", "block4_conv1"], "block4_conv2")
    content = resize_image(np.ascontiguousarray(chelsea[50:250, 100:300]), (64, 64))
    style = samples["wood2"] if "wood2" in samples else samples["gravel"]
    result, history = transfer(engine, content, [(style, 1.0)], steps=20, octaves=1, content_weight=CONTENT_WEIGHT,
                               style_weights=[0.25] * 4, tv_weight=0.0, start="content", rng=np.random.default_rng(0))
    assert history[-1] < history[0]
    features = engine.content_features(result)
    to_content = np.linalg.norm(features - engine.content_features(content))
    to_style = np.linalg.norm(features - engine.content_features(resize_image(style, (64, 64))))
    print(f"content-layer distance to the content {to_content:.4g}, to the style {to_style:.4g}")
    assert to_content < 0.5 * to_style, (to_content, to_style)
    assert np.abs(result - content).mean() > 0.02  # and the style did change the picture
