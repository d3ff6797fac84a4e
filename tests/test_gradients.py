"""Input gradients (filters.gradients) on the real Lite0, on TensorFlow and, in a subprocess, JAX and torch."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import keras
import numpy as np
import pytest

from filters.gradients import make_gradient_fn, supported_backends
from plugin_host import ModelCache

LAYER = "block5_expand_act"


@pytest.fixture(scope="module")
def lite0_features() -> keras.Model:
    return ModelCache().get("lite0").feature_model([LAYER])


def mean_loss(outputs):
    return keras.ops.mean(outputs[0], axis=(1, 2, 3))


def image(seed: int, size: int = 48) -> np.ndarray:
    return np.random.default_rng(seed).random((1, size, size, 3), dtype=np.float32)


def test_backends_listed() -> None:
    assert supported_backends() == ("tensorflow", "jax", "torch")


def test_gradient_matches_finite_differences(lite0_features) -> None:
    gradient = make_gradient_fn(lite0_features, mean_loss)
    x = image(0)
    losses, grad = gradient(x)
    assert losses.shape == (1,) and grad.shape == x.shape and np.abs(grad).sum() > 0
    direction = np.random.default_rng(1).standard_normal(x.shape).astype(np.float32)
    eps = 1e-2
    plus, _ = gradient(x + eps * direction)
    minus, _ = gradient(x - eps * direction)
    numeric = float(plus[0] - minus[0]) / (2 * eps)
    analytic = float((grad * direction).sum())
    assert abs(numeric - analytic) <= 0.05 * abs(analytic), (numeric, analytic)


def test_batched_samples_get_their_own_gradients(lite0_features) -> None:
    gradient = make_gradient_fn(lite0_features, mean_loss)
    a, b = image(2), image(3)
    losses, grads = gradient(np.concatenate([a, b]))
    for index, single in enumerate((a, b)):
        loss, grad = gradient(single)
        np.testing.assert_allclose(losses[index], loss[0], rtol=1e-5)
        np.testing.assert_allclose(grads[index], grad[0], rtol=1e-3, atol=1e-7)


_OTHER_BACKEND = textwrap.dedent(
    """
    import sys
    import numpy as np
    import keras
    from filters.gradients import make_gradient_fn
    from plugin_host import ModelCache, apply_filter, build_registry
    assert keras.backend.backend() == sys.argv[1], keras.backend.backend()
    features = ModelCache().get("lite0").feature_model([{layer!r}])
    x = np.load(sys.argv[2])
    losses, grad = make_gradient_fn(features, lambda o: keras.ops.mean(o[0], axis=(1, 2, 3)))(x)
    np.savez(sys.argv[3], losses=losses, grad=grad)
    spec = build_registry(autoload=False).get_filter("deepdream")
    photo = np.asarray(x[0], np.float32)
    out = apply_filter(spec, photo, spec.preview_params, seed=1)
    assert out.shape == photo.shape and np.isfinite(out).all() and np.abs(out - photo).mean() > 1e-3
    print("ok", keras.backend.backend())
    """
).format(layer=LAYER)


@pytest.mark.parametrize("backend", ["jax", "torch"])
def test_other_backends_agree_with_tensorflow(backend: str, lite0_features, tmp_path: Path) -> None:
    """JAX (and torch when installed): same gradient as TensorFlow, and the filter runs (smoke)."""
    if importlib.util.find_spec(backend) is None:
        pytest.skip(f"{backend} is not installed")
    from skimage import data

    photo = np.asarray(keras.ops.image.resize(data.chelsea()[None, 60:220, 120:280] / 255.0, (64, 64)), np.float32)
    np.save(tmp_path / "x.npy", photo)
    script = tmp_path / "other_backend.py"
    script.write_text(_OTHER_BACKEND)
    env = {**os.environ, "KERAS_BACKEND": backend}
    result = subprocess.run(
        [sys.executable, str(script), backend, str(tmp_path / "x.npy"), str(tmp_path / "out.npz")],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    theirs = np.load(tmp_path / "out.npz")
    losses, grad = make_gradient_fn(lite0_features, mean_loss)(photo)
    np.testing.assert_allclose(theirs["losses"], losses, rtol=1e-4)
    error = np.abs(theirs["grad"] - grad).max() / np.abs(grad).max()
    assert error < 1e-3, error
