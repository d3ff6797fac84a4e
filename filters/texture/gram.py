"""Gram statistics and the Gram loss with its closed-form gradient (DeepTextures' formulas), in numpy.

For a layer with ``N`` channels and ``M`` positions, ``F`` is the ``M x N``
feature matrix, ``G = Fᵀ F / M`` its Gram matrix. The loss against a target
``Ĝ`` is ``w/4 · Σ(G - Ĝ)² / N²`` and its gradient with respect to ``F`` is
``w · F (G - Ĝ) / (M N²)`` (DeepTextures writes ``F`` as ``N x M``, hence its
``Fᵀ``). The engine uses that gradient directly: Gram matrices are summed over
tiles first, then each tile back-propagates ``F_tile (G - Ĝ)``, so no image is
ever differentiated whole. ``tests/test_texture_gram.py`` checks it against autodiff.
"""

from __future__ import annotations

import numpy as np

__all__ = ["gram", "gram_loss", "gram_loss_gradient", "relative_weight"]


def gram(features: np.ndarray) -> np.ndarray:
    """``Fᵀ F / M`` of features ``(..., N)`` (all leading axes are positions), float64."""
    flat = np.asarray(features, np.float64).reshape(-1, features.shape[-1])
    return flat.T @ flat / max(flat.shape[0], 1)


def gram_loss(g: np.ndarray, target: np.ndarray, weight: float) -> float:
    """``w/4 · Σ(G - Ĝ)² / N²``."""
    n = g.shape[0]
    return float(weight / 4.0 * np.sum((g - target) ** 2) / n**2)


def gram_loss_gradient(features: np.ndarray, target: np.ndarray, weight: float) -> np.ndarray:
    """The closed-form gradient ``w · F (G - Ĝ) / (M N²)`` of :func:`gram_loss` with respect to ``features``.

    Args:
        features: ``(..., N)`` features; the leading axes are positions.
        target: ``Ĝ``, ``N x N``.
        weight: ``w``.

    Returns:
        The gradient, shaped like ``features``.
    """
    flat = np.asarray(features, np.float64).reshape(-1, features.shape[-1])
    m, n = flat.shape
    g = flat.T @ flat / m
    return (weight * flat @ (g - target) / (m * n**2)).reshape(features.shape)


def relative_weight(target: np.ndarray, weight: float = 1.0) -> float:
    """The ``w`` that makes :func:`gram_loss` equal ``weight · Σ(G - Ĝ)² / ΣĜ²``.

    Raw VGG activations differ by orders of magnitude between layers; relative
    errors give every layer the same say and make losses comparable between
    images (a loss of 1 is "as far from the target as an all-zero Gram matrix").
    """
    n = target.shape[0]
    return float(4.0 * weight * n**2 / max(float(np.sum(np.asarray(target, np.float64) ** 2)), 1e-30))

