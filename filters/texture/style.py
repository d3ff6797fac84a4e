"""The ``style-transfer`` filter: content of the input, Gram statistics of one or two blended style images."""

from __future__ import annotations

from typing import Any

import numpy as np

from neurofilters.plugin_host import ParameterError

from ..octaves import resize_image
from .engine import GramEngine, Objective, optimise
from .plugin import DEFAULT_CONTENT_LAYER, DEFAULT_STYLE_LAYERS
from .synthesis import STALL, build_engine, default_steps, noise_like, octave_sizes, octave_steps, resolve_layers, rgb_of

#: Style layers matched at the finest octave: 0, every layer and the content. Matching only the two
#: shallowest there (a fifth of the network's cost, as texture does) saved 20 % CPU but let the picture
#: drift from the content: content-layer distance over style distance 0.22 -> 0.59 (chelsea with
#: coffee at 384², AVX2). The old check compared the parsed ``--style-layers`` with ``"auto"`` and never
#: applied it, so the default always matched everything; this keeps that, on purpose.
FINE_STYLE_LAYERS = 0

__all__ = ["keep_colours", "run_style_transfer", "transfer"]

# ITU-R BT.601 luma and the YIQ chroma axes.
_TO_YIQ = np.array([[0.299, 0.587, 0.114], [0.596, -0.274, -0.322], [0.211, -0.523, 0.312]], np.float32)
_FROM_YIQ = np.linalg.inv(_TO_YIQ).astype(np.float32)


def keep_colours(result: np.ndarray, original: np.ndarray) -> np.ndarray:
    """The result's luma with the original's chroma (YIQ), the "luminance-only transfer" of Gatys et al. 2016."""
    result_yiq = result @ _TO_YIQ.T
    original_yiq = original @ _TO_YIQ.T
    merged = np.concatenate([result_yiq[:, :, :1], original_yiq[:, :, 1:]], axis=2)
    return np.clip(merged @ _FROM_YIQ.T, 0.0, 1.0).astype(np.float32)


def _scaled(image: np.ndarray, factor: float) -> np.ndarray:
    if abs(factor - 1.0) < 1e-6:
        return image
    return resize_image(image, (max(16, round(image.shape[0] * factor)), max(16, round(image.shape[1] * factor))))


def transfer(
    engine: GramEngine,
    content: np.ndarray,
    styles: list[tuple[np.ndarray, float]],
    *,
    steps: int,
    octaves: int,
    content_weight: float,
    style_weights: list[float],
    tv_weight: float,
    start: str,
    rng: np.random.Generator,
    optimizer: str = "auto",
    progress: Any = None,
    schedule: str = "flat",
    stall: float = 0.0,
    fine_layers: int = 0,
) -> tuple[np.ndarray, list[float]]:
    """Style transfer of blended ``styles`` onto ``content``, coarse to fine.

    Args:
        engine: Gram engine with the style layers and the content layer.
        content: float32 ``H x W x 3``.
        styles: ``(image, share)`` pairs; Gram targets are blended by share.
        steps: Iterations per octave.
        octaves: Coarse-to-fine scales (0 = automatic).
        content_weight: Weight of the relative content distance.
        style_weights: Weight of each style layer.
        tv_weight: Weight of the total variation.
        start: ``"content"`` or ``"noise"``.
        rng: Source of the starting noise.
        optimizer: ``auto``, ``lbfgs`` or ``adam``.
        progress: ``progress(fraction, message)``.
        schedule: ``flat`` (``steps`` per octave) or ``pyramid`` (``steps`` at the finest, see :func:`.synthesis.octave_steps`).
        stall: Stop an octave once its loss fell by less than this fraction over the last 5 iterations (0: never).
        fine_layers: When there are several octaves, the finest matches only this many (shallowest)
            style layers and no content (both were matched at the coarser octaves, from which it
            starts): the network then runs only up to the last layer matched (0: everything).

    Returns:
        The result and the loss history.
    """
    shape = content.shape[:2]
    sizes = octave_sizes(shape[0], shape[1], octaves)
    plan = octave_steps(steps, len(sizes), schedule)
    total_share = sum(share for _, share in styles)
    history: list[float] = []
    image: np.ndarray | None = None
    total_work = sum(h * w * n for (h, w), n in zip(sizes, plan))
    done = 0.0
    for index, (size, level_steps) in enumerate(zip(sizes, plan)):
        fine = bool(fine_layers) and index == len(sizes) - 1 and index > 0
        scale = size[0] / shape[0]
        level_content = resize_image(content, size) if size != shape else content
        if image is None:
            image = level_content.copy() if start == "content" else noise_like(level_content, size, rng)
        else:
            image = resize_image(image, size)
        targets: list[np.ndarray] | None = None
        for style, share in styles:
            grams = engine.gram_targets(_scaled(style, scale))
            weighted = [g * (share / total_share) for g in grams]
            targets = weighted if targets is None else [a + b for a, b in zip(targets, weighted)]
        assert targets is not None
        if fine:
            objective = Objective(targets, [w if layer < fine_layers else 0.0 for layer, w in enumerate(style_weights)], tv_weight=tv_weight)
        else:
            objective = Objective(
                targets, style_weights, content_target=engine.content_features(level_content), content_weight=content_weight, tv_weight=tv_weight
            )
        level_work = size[0] * size[1]

        def report(step: int, loss: float, _done: float = done, _work: float = level_work, _index: int = index, _steps: int = level_steps) -> None:
            if progress is not None:
                progress(min(0.999, (_done + _work * step) / total_work), f"octave {_index + 1}/{len(sizes)}, step {step}/{_steps}, loss {loss:.4g}")

        def evaluate(x: np.ndarray, _objective: Objective = objective) -> tuple[float, np.ndarray]:
            loss, gradient, _ = engine.loss_and_gradient(x, _objective)
            return loss, gradient

        image, level_history = optimise(evaluate, image, level_steps, progress=report, method=optimizer, stall=stall)
        history += level_history
        done += level_work * level_steps
    assert image is not None
    return image, history


def run_style_transfer(image: np.ndarray, params: dict[str, Any], context: Any) -> np.ndarray:
    """The ``style-transfer`` filter (without ``--style`` the input is its own style, repainted from noise)."""
    content = np.asarray(image[:, :, :3], np.float32)
    start = params.get("start", "content")
    named: list[tuple[str, np.ndarray, float]] = []  # (parameter, image, share)
    share2 = float(params.get("style2_weight", 0.5))
    if params.get("style") is not None:
        named.append(("style", rgb_of(params["style"]), 1.0 - share2 if params.get("style2") is not None else 1.0))
    if params.get("style2") is not None:
        named.append(("style2", rgb_of(params["style2"]), share2 if params.get("style") is not None else 1.0))
    if not named:
        named, start = [("input", content, 1.0)], "noise"
    scale = float(params.get("style_scale", 1.0))
    named = [(name, _scaled(style, scale), share) for name, style, share in named if share > 0]
    for name, style, _ in named:
        if min(style.shape[:2]) < 16:
            scaled = f" after --style-scale {scale:g}" if scale != 1.0 else ""
            raise ParameterError(
                f'"{name}" must be at least 16 x 16 pixels{scaled}. Received: {style.shape[1]} x {style.shape[0]}; '
                "give a larger image" + (" or a larger --style-scale." if scale < 1.0 else "."),
                param=name, value=f"{style.shape[1]}x{style.shape[0]}",
            )
    styles = [(style, share) for _, style, share in named]
    model = context.load_model(params["model"])
    layers = resolve_layers(model, params.get("style_layers", "auto"), DEFAULT_STYLE_LAYERS, "style_layers")
    content_layer = params.get("content_layer", "auto")
    content_layer = model.resolve_layer(DEFAULT_CONTENT_LAYER if content_layer == "auto" else content_layer)
    context.progress(0.0, "preparing the network")
    engine = build_engine(context, params, [name for name, _ in layers], content_layer)
    total = sum(weight for _, weight in layers) or 1.0
    result, history = transfer(
        engine,
        content,
        styles,
        steps=default_steps(int(params["steps"]), content.shape[:2], context),
        octaves=int(params["octaves"]),
        content_weight=float(params["content_weight"]),
        style_weights=[float(params["style_weight"]) * weight / total for _, weight in layers],
        tv_weight=float(params["tv_weight"]),
        start=start,
        rng=context.rng(1),
        optimizer=params.get("optimizer", "auto"),
        progress=context.progress,
        schedule="pyramid",
        stall=STALL,
        fine_layers=FINE_STYLE_LAYERS,
    )
    if params.get("keep_colours"):
        result = keep_colours(result, content)
    if history:
        context.report(f"style-transfer loss {history[-1]:.4g} after {len(history)} steps")
    context.progress(1.0, "done")
    return np.clip(result, 0.0, 1.0).astype(np.float32)
