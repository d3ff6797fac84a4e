"""One quick run of every registered filter on a small real photo.

Marked ``smoke``: ``make test`` runs these again on Keras' JAX backend.
"""

from __future__ import annotations

import numpy as np
import pytest

from neurofilters.plugin_host import apply_filter, build_registry
from neurofilters.plugin_host.imageio.values import load_image_params

FILTERS = sorted(build_registry(autoload=False).filters)


@pytest.mark.smoke
@pytest.mark.parametrize("name", FILTERS)
def test_filter_runs_on_a_small_photo(name: str, chelsea: np.ndarray) -> None:
    spec = build_registry(autoload=False).get_filter(name)
    image = np.ascontiguousarray(chelsea[100:172:2, 150:246:2])  # 36 x 48 crop of the cat's face
    alpha = np.linspace(0, 1, image.shape[0] * image.shape[1], dtype=np.float32).reshape(image.shape[:2])
    rgba = np.concatenate([image, alpha[:, :, None]], axis=2)
    reports: list[float] = []
    # Image parameters of the preview (a shipped sample file) are loaded as every front end loads them.
    preview = load_image_params(spec.params, spec.preview_params)
    result = apply_filter(spec, rgba, preview, seed=1, progress=lambda f, m: reports.append(f))
    assert result.dtype == np.float32
    assert np.isfinite(result).all() and result.min() >= 0 and result.max() <= 1
    assert reports and reports[-1] == 1.0
    assert any(0.0 < fraction < 1.0 for fraction in reports), "the filter never reported progress"
    if spec.output == "image":
        assert result.shape == rgba.shape
        np.testing.assert_array_equal(result[..., 3], alpha)
        assert np.abs(result[..., :3] - image).mean() > 1e-3, "the filter left the image unchanged"


def test_every_filter_declares_quick_preview_parameters() -> None:
    for name in FILTERS:
        spec = build_registry(autoload=False).get_filter(name)
        assert spec.preview_params, f"{name} has no preview_params for quick runs"
