"""The real lucent as the transfer peer: its standard recipe on a torch Lite0, judged by our Keras Lite0 and Lite1.

lucent (``torch-lucent``, the torch port of Lucid) runs its documented default:
``render_vis(model, "_fc:K", thresholds=(128,))`` with ``param.image(128)`` (FFT spectrum,
decorrelated colour, sigmoid), Adam at 0.05, ``transform.standard_transforms`` (pad 12, jitter 8,
scale 0.9-1.1, rotate ±10°, jitter 4) and its upsampling of images under 224 px to 224. The
objective is the target's logit (the ``_fc`` layer, pre-softmax, as Lucid's class objectives).
The one change: ``preprocess=False`` with the Lite input mapping appended in the place of
lucent's torchvision normalisation (lucent does the same for its InceptionV1), since Lite0
expects ``(x * 255 - 127) / 128``.

The torch network is ``tests/lite_torch.py`` (ours, mirroring the Keras builder; the saliency
cross-check's captum peer runs on it too) on the very
``.pth`` the zoo loads; :func:`logit_match` checks it against the Keras Lite0 on real photos
and the run stops if they differ. Each 128-px image is then scored by the zoo's ``classify``
(centre crop, bicubic resize), p on Lite0 and the target's rank and p on Lite1, the same
measure as the ``quality`` part of ``bench_hallucinate.py``; the ``*_full`` figures score the
whole image as lucent shows it to the network (:func:`full_view_rank`). ``bench_hallucinate.py
--parts lucent`` calls :func:`quality` and stores the result under ``quality`` -> ``"lucent-real"``.

Bench-only dependencies (not in any extra of pyproject.toml, which has no ``bench`` extra; the
package never imports torch): ``torch==2.13.0+cpu`` (the Makefile's CPU wheel), and with
``pip install --no-deps``: ``torch-lucent==0.1.8``, ``kornia==0.4.1`` (lucent needs <= 0.4.1;
it imports and runs with torch 2.13 unchanged) and ``decorator`` (lucent's objectives). lucent's
other declared requirements are test and notebook tools it does not import for rendering.
``torchvision`` and ``IPython`` are stand-ins in ``bench/_lucent_standins`` (see its README),
put on ``sys.path`` by :func:`import_lucent` only.

Run alone: ``PYTHONPATH=... python bench/bench_lucent.py`` (or ``--classes 130,417``).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

BENCH = Path(__file__).resolve().parent
STANDINS = BENCH / "_lucent_standins"
sys.path.insert(0, str(BENCH.parent / "tests"))  # lite_torch, the torch port of Lite0/Lite1 shared with the tests
#: Photos for the logit check (scikit-image, no download) and the largest |logit difference| allowed.
MATCH_PHOTOS = ("chelsea", "astronaut", "coffee", "rocket")
MATCH_TOLERANCE = 1e-3


def import_lucent() -> Any:
    """Import ``lucent.optvis`` with the stand-ins first on ``sys.path``; return the module.

    Raises:
        SystemExit: lucent, kornia or decorator is missing (with the install command).
    """
    if str(STANDINS) not in sys.path:
        sys.path.insert(0, str(STANDINS))
    try:
        import lucent.optvis as optvis
        import lucent.optvis.render  # noqa: F401  (submodules used below)
    except ImportError as error:
        raise SystemExit(
            f"The lucent peer needs: pip install --no-deps torch-lucent==0.1.8 kornia==0.4.1 decorator ({error})"
        ) from error
    return optvis


def logit_match(keras_model: Any, torch_model: Any) -> dict:
    """Compare Lite0's logits in Keras and in torch on real photos (224 px and an odd 201 px).

    Returns:
        ``{"max_abs_diff", "max_logit", "top5_equal", "photos"}`` over every photo and size.
    """
    import torch
    from skimage import data

    from lite_torch import lite_preprocess
    from neurofilters.filters.zoo.model import centre_crop_resize

    worst, largest, same = 0.0, 0.0, True
    for name in MATCH_PHOTOS:
        photo = getattr(data, name)().astype(np.float32) / 255.0
        for size in (224, 201):
            batch = centre_crop_resize(photo, size)[None]
            ours = np.asarray(keras_model.logits_model()(batch, training=False), dtype=np.float64)[0]
            with torch.no_grad():
                theirs = torch_model(lite_preprocess(torch.from_numpy(batch).permute(0, 3, 1, 2))).double().numpy()[0]
            worst = max(worst, float(np.abs(ours - theirs).max()))
            largest = max(largest, float(np.abs(ours).max()))
            same &= list(np.argsort(-ours, kind="stable")[:5]) == list(np.argsort(-theirs, kind="stable")[:5])
    result = {"max_abs_diff": worst, "max_logit": largest, "top5_equal": bool(same),
              "photos": [f"skimage.data.{name}" for name in MATCH_PHOTOS]}
    print("lucent logit match (torch Lite0 vs Keras Lite0)", result, flush=True)
    return result


def resize_aligned(image: np.ndarray, side: int) -> np.ndarray:
    """Bilinear resize of ``H x W x C`` to ``side x side`` with corners aligned (torch's ``align_corners=True``)."""

    def axis_weights(size: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        position = np.linspace(0.0, size - 1.0, side)
        low = np.clip(np.floor(position).astype(int), 0, max(size - 2, 0))
        return low, np.minimum(low + 1, size - 1), (position - low)[:, None]

    image = np.asarray(image, dtype=np.float64)
    top, bottom, fy = axis_weights(image.shape[0])
    rows = image[top] * (1 - fy[:, :, None]) + image[bottom] * fy[:, :, None]
    left, right, fx = axis_weights(image.shape[1])
    return (rows[:, left] * (1 - fx[None]) + rows[:, right] * fx[None]).astype(np.float32)


def full_view_rank(model: Any, image: np.ndarray, target: int) -> tuple[int, float]:
    """The target's rank and p when ``model`` sees the whole image as lucent shows it (no crop).

    lucent upsamples its 128-px image to 224 (bilinear, corners aligned) and never crops; the
    zoo's ``classify`` crops the central 87.5 % and resizes bicubically. This is the former, at
    the model's own input size, to tell how much of a result is the crop (torch-free, so the
    ``quality`` part of ``bench_hallucinate.py`` scores our recipes the same way).
    """
    view = resize_aligned(image, int(model.input_size))[None]
    logits = np.asarray(model.logits_model()(view, training=False), dtype=np.float64)[0]
    probabilities = np.exp(logits - logits.max())
    probabilities /= probabilities.sum()
    return int((probabilities > probabilities[target]).sum()) + 1, float(probabilities[target])


def render_class(optvis: Any, model: Any, target: int, steps: int, size: int, seed: int) -> np.ndarray:
    """One class with lucent's standard recipe; returns the ``size x size x 3`` image in [0, 1]."""
    import torch

    from lite_torch import lite_preprocess

    torch.manual_seed(seed)
    np.random.seed(seed)  # lucent's transforms draw from numpy's global generator
    transforms = [*optvis.transform.standard_transforms, lite_preprocess]
    images = optvis.render.render_vis(
        model, f"_fc:{target}", param_f=lambda: optvis.param.image(size), transforms=transforms,
        thresholds=(steps,), preprocess=False, progress=False, show_image=False,
    )
    return np.clip(images[-1][0], 0.0, 1.0).astype(np.float32)


def quality(classes: tuple[int, ...], steps: int = 128, size: int = 128, seed: int = 0,
            save: Path | None = None, threads: int = 1) -> dict:
    """lucent's standard recipe on torch Lite0 for ``classes``, judged by the Keras Lite0 and Lite1.

    Args:
        classes: ImageNet ids.
        steps: Optimisation steps (lucent's threshold).
        size: ``param.image`` side (lucent's default 128).
        seed: torch and numpy seed, set before each class.
        save: Folder for the images as PNGs (to look at), or None.
        threads: torch's intra-op threads. 1 by default: on the shared 2-core machine two
            threads made a Lite0 forward + backward 4-40x slower (0.1 s with one thread,
            0.4-7 s with two, while other jobs ran).

    Returns:
        ``{"rows", "p_lite0_ge_0.9", "lite1_top5", "median_rank_lite1", "logit_match", ...}``.

    Raises:
        AssertionError: The torch Lite0 does not reproduce the Keras Lite0's logits.
    """
    import torch

    from bench_hallucinate import score, summary
    from neurofilters.filters.zoo.lite0 import load_lite0, load_lite1

    optvis = import_lucent()
    from lite_torch import load_lite_torch

    torch.set_num_threads(threads)

    lite0, lite1, torch_lite0 = load_lite0(), load_lite1(), load_lite_torch()
    match = logit_match(lite0, torch_lite0)
    if not (match["max_abs_diff"] < MATCH_TOLERANCE and match["top5_equal"]):
        raise AssertionError(f"The torch Lite0 does not reproduce the Keras Lite0 (tolerance {MATCH_TOLERANCE}): {match}")
    rows = []
    for target in classes:
        began = time.perf_counter()
        image = render_class(optvis, torch_lite0, target, steps, size, seed)
        seconds = time.perf_counter() - began
        row = score(lite0, lite1, image, target, seconds)
        print("lucent-real", row, flush=True)
        rows.append(row)
        if save is not None:
            from PIL import Image

            save.mkdir(parents=True, exist_ok=True)
            Image.fromarray((image * 255).round().astype(np.uint8)).save(save / f"lucent-{target}.png")
    import kornia
    import lucent

    out = summary(rows)
    out.update({
        "seconds_per_class": statistics.mean(r["seconds"] for r in rows),
        "logit_match": match,
        "setup": {"lucent": lucent.__version__, "kornia": kornia.__version__, "torch": torch.__version__,
                  "torch_threads": torch.get_num_threads(), "steps": steps, "size": size, "seed": seed,
                  "objective": "_fc:K (logit)", "transforms": "standard_transforms + Lite input mapping",
                  "upsampled_to": 224 if size < 224 else None},
    })
    print("lucent-real", {k: v for k, v in out.items() if k != "rows"}, flush=True)
    return out


def main() -> None:
    from bench_hallucinate import CLASSES, store

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--classes", default=",".join(map(str, CLASSES)))
    parser.add_argument("--steps", type=int, default=128)
    parser.add_argument("--save", type=Path, default=None, help="folder for the images as PNGs")
    args = parser.parse_args()
    result = quality(tuple(int(item) for item in args.classes.split(",")), args.steps, save=args.save)
    store({"quality": {"lucent-real": result}})


if __name__ == "__main__":
    sys.path.insert(0, str(BENCH))
    main()
