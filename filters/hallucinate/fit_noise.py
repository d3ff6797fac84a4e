"""The ``neurofilters fit-noise FOLDER --class K -o noise.npz`` command: a universal class noise.

Photos are read with the host's loader (``neurofilters.plugin_host.load_image``)
and split, by the seed, into a training part and a held-out part. After every
epoch a checkpoint (``OUT.partial.npz``) is written atomically; a rerun with
the same arguments resumes from it. At the end the command writes ``OUT``
(``noise``, ``bound``, ``target``, ``model``, fooling rates) and ``OUT``'s
stem + ``.png``, the 16-bit image the ``add-noise`` filter loads, and prints
the targeted fooling rate on the held-out photos (top-1 = the class, through
``add-noise`` and :meth:`ZooModel.classify`, the way a user would check it).
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass
from pathlib import Path
from collections.abc import Mapping
from typing import Any

from neurofilters.plugin_host import (
    IMAGE_SUFFIXES,
    CommandContext,
    CommandProgress,
    ImageIOError,
    OutputGuard,
    ParameterError,
    UsageError,
    load_image,
    split_alpha,
)

__all__ = ["DEFAULT_STEPS", "NoiseFit", "compute", "evaluate", "render", "split"]

#: Optimiser steps when ``--epochs`` is not given: on 29 photos (42 with 30 % held out) the
#: held-out fooling rate at 10/255 rises until about here and then levels off (bench_hallucinate.py).
DEFAULT_STEPS = 600
#: Photos in the measured runs (docs: 42, 29 trained on): held-out fooling 46-72 %; a run on 8 photos reached 17 % / 0 %.
MEASURED_PHOTOS = 42



def _photos(folder: Path) -> list[Path]:
    if not folder.is_dir():
        raise UsageError(f"FOLDER must be a folder of photos. Received: {folder}")
    files = sorted(path for path in folder.rglob("*") if path.suffix.lower() in IMAGE_SUFFIXES and path.is_file())
    if len(files) < 2:
        raise UsageError(f"fit-noise needs at least 2 photos in the folder. Received: {len(files)} in {folder}")
    return files


def split(files: list[Path], held_out: float, seed: int) -> tuple[list[Path], list[Path]]:
    """The training and held-out photos: ``held_out`` of ``files`` (at least one) kept aside, chosen by ``seed``."""
    import numpy as np

    order = np.random.default_rng(seed).permutation(len(files))
    held = max(1, int(round(len(files) * held_out)))
    return [files[i] for i in sorted(order[held:])], [files[i] for i in sorted(order[:held])]


def _rgb(path: Path) -> Any:
    import numpy as np

    pixels, _ = split_alpha(load_image(path).pixels)
    if pixels.shape[2] == 1:
        pixels = np.repeat(pixels, 3, axis=2)
    return np.asarray(pixels, np.float32)


def _readable(paths: list[Path], skipped: list[tuple[Path, str]]) -> list[Any]:
    """The photos of ``paths`` that read (RGB); the others are appended to ``skipped`` with their reason."""
    images = []
    for path in paths:
        try:
            images.append(_rgb(path))
        except ImageIOError as error:
            skipped.append((path, str(error)))
    return images


def _report_skipped(skipped: list[tuple[Path, str]]) -> None:
    for path, reason in skipped:  # like batch and finetune: listed, not fatal
        print(f"skipped {path}: {reason}", file=sys.stderr)


def _shrunk(image: Any, longest: int) -> Any:
    """``image`` with its longer side at most ``longest`` (antialiased bicubic; memory and speed)."""
    import numpy as np

    from ..octaves import resize_image

    height, width = image.shape[:2]
    scale = longest / max(height, width)
    if scale >= 1.0:
        return image
    shape = (max(1, round(height * scale)), max(1, round(width * scale)))
    return np.clip(resize_image(image, shape, "bicubic"), 0.0, 1.0).astype(np.float32)


def evaluate(model: Any, noise: Any, images: list[Any], target: int) -> float:
    """Share of ``images`` whose top-1 is ``target`` after adding ``noise`` (add-noise, then classify)."""
    from .noise import add_noise

    if not images:
        return float("nan")
    hits = sum(model.classify(add_noise(image, noise), top=1)[0][0] == target for image in images)
    return hits / len(images)


@dataclass(frozen=True)
class NoiseFit:
    """What ``fit-noise`` made: the files written and the fooling rates measured.

    Attributes:
        output: The noise file (``.npz``: ``noise``, ``bound``, ``target``, ``model``, fooling rates).
        image: The 16-bit ``.png`` beside it, the file the ``add-noise`` filter loads.
        target: The target class id.
        label: Its name.
        max_abs: The noise's largest absolute value, in 1/255 units (at most ``epsilon``).
        epsilon: The L-infinity bound, in 1/255 units.
        fooling_train: Share of the training photos classified as ``target`` with the noise added.
        fooling_held_out: The same on the held-out photos (``nan`` when none could be read).
        train_photos: How many photos were set aside for training.
        held_out_photos: How many were held out.
    """

    output: Path
    image: Path
    target: int
    label: str
    max_abs: float
    epsilon: float
    fooling_train: float
    fooling_held_out: float
    train_photos: int
    held_out_photos: int


def render(fit: NoiseFit, values: Mapping[str, Any]) -> int:
    """Print the fooling rates and the files written (the command line's report)."""
    print(f"noise for class {fit.target} ({fit.label}), |r|max = {fit.max_abs:.4f}/255 (bound {fit.epsilon}/255)")
    print(f"fooling rate: training {fit.fooling_train:.1%} ({fit.train_photos} photos), "
          f"held-out {fit.fooling_held_out:.1%} ({fit.held_out_photos} photos)")
    print(f"wrote {fit.output} and {fit.image}")
    return 0


def compute(values: Mapping[str, Any], context: CommandContext) -> NoiseFit:
    """``fit-noise``'s work: fit (or resume), measure and write the noise; the fooling rates come back, not printed.

    Warnings, skipped photos and the progress bar go to stderr, as on the command line.

    Args:
        values: The validated parameters (``plugin.FIT_NOISE_PARAMS``).
        context: The host's context: its model cache and guarded writer.

    Raises:
        ParameterError: A bad value (before the model loads), a model without a classifier head, an unknown class.
        UsageError: A folder with fewer than 2 photos, an output that is not ``.npz`` or would replace a file.
    """
    epsilon, held_out = values["epsilon"], values["held_out"]
    if not 0.0 < epsilon <= 31.0:
        raise ParameterError(f"--epsilon must be a number above 0 and at most 31 (in 1/255 units). Received: --epsilon {epsilon}",
                             param="epsilon", value=epsilon)
    if not 0.0 < held_out < 1.0:
        raise ParameterError(f"--held-out must be a share above 0 and below 1, e.g. 0.3. Received: --held-out {held_out}",
                             param="held_out", value=held_out)
    from ..zoo.labels import check_class_text

    check_class_text(values["class_"])  # 5,000 digits or control characters: refused before the model loads
    output = Path(values["output"])
    if output.suffix.lower() != ".npz":
        raise UsageError(f"-o must name a .npz file. Received: {output}")
    files = _photos(Path(values["folder"]))
    # Before the model loads: the noise, its .png and the checkpoint never replace a photo, the model file or a
    # file neurofilters did not write (the .png beside the .npz is not named by the user).
    guard = context.writer(("the folder of photos", values["folder"]), ("the model file", values["model"]))
    guard.check_all([("noise (-o)", output), ("noise image beside -o", output.with_suffix(".png")),
                     ("checkpoint", _checkpoint_path(output))])
    if len(files) < MEASURED_PHOTOS:
        print(f"neurofilters: warning: {len(files)} photos are few: with {MEASURED_PHOTOS} (29 trained on) the held-out "
              "fooling rate was 46-72 %, with 8 it was 0 % (17 % on the training photos); add varied photos.", file=sys.stderr)
    bar = context.progress_bar("fit-noise", status=f"loading model {values['model']}")
    try:
        return _fit(values, context, files, output, bar, guard)
    finally:
        bar.close()


def _checkpoint_path(output: Path) -> Path:
    return output.with_name(output.name[: -len(".npz")] + ".partial.npz")


def _fit(
    values: Mapping[str, Any], context: CommandContext, files: list[Path], output: Path, bar: CommandProgress, guard: OutputGuard,
) -> NoiseFit:
    """Load the model and the photos, fit (or resume), measure, write; ``bar`` shows each stage."""
    import numpy as np

    from ..zoo.labels import resolve_class, with_class_flag
    from ..zoo.model import CENTRE_CROP_FRACTION
    from .noise import encode_noise_image, fit_universal_noise, quantise

    model = context.load_model(values["model"])
    if getattr(model, "kind", None) != "classifier":
        raise ParameterError(f"fit-noise needs a classifier model. Received: --model {values['model']}", param="model", value=values["model"])
    try:
        target = resolve_class(values["class_"], model.labels, param="class")
    except ParameterError as error:
        raise with_class_flag(error) from None
    bound = values["epsilon"] / 255.0
    train_files, test_files = split(files, values["held_out"], values["seed"])
    side = int(model.input_size or 224)
    noise_side = int(round(side / CENTRE_CROP_FRACTION))
    bar.status(f"reading {len(train_files)} training photos ({len(test_files)} held out)")
    skipped: list[tuple[Path, str]] = []
    photos, train_ok = [], []
    for path in train_files:
        for image in _readable([path], skipped):
            photos.append(_shrunk(image, 2 * noise_side))
            train_ok.append(path)
    _report_skipped(skipped)
    if not photos:
        raise UsageError(f"None of the {len(train_files)} training photos could be read. Received: {values['folder']}")
    epochs = values["epochs"]
    if epochs is None:
        epochs = max(1, -(-DEFAULT_STEPS * values["batch_size"] // len(photos)))
    fingerprint = json.dumps(
        {"files": [str(p) for p in train_files], "target": target, "model": values["model"], "bound": bound, "seed": values["seed"],
         "batch": values["batch_size"], "epochs": epochs}, sort_keys=True
    )
    checkpoint = _checkpoint_path(output)
    state = None
    if checkpoint.is_file():
        with np.load(checkpoint, allow_pickle=False) as saved:
            if str(saved["fingerprint"]) == fingerprint:
                count = int(saved["optimizer_count"])
                state = {"noise": saved["noise"], "epoch": int(saved["epoch"]),
                         "optimizer": [saved[f"optimizer_{index}"] for index in range(count)]}
                print(f"resuming from {checkpoint} (epoch {state['epoch']}/{epochs})", file=sys.stderr)
    done = state["epoch"] if state is not None else 0
    bar(done / epochs, f"epoch {done}/{epochs}")

    def on_epoch(epoch: int, current: dict[str, Any]) -> None:
        arrays = {f"optimizer_{index}": value for index, value in enumerate(current["optimizer"])}
        with guard.write(checkpoint, what="checkpoint") as temporary, open(temporary, "wb") as handle:
            np.savez(handle, noise=current["noise"], epoch=epoch, optimizer_count=len(arrays), fingerprint=fingerprint, **arrays)
        bar(epoch / epochs, f"epoch {epoch}/{epochs}")

    if state is not None and done >= epochs:
        noise = np.clip(np.asarray(state["noise"], np.float32), -bound, bound)
    else:
        noise = fit_universal_noise(
            photos, model, target, bound=bound, side=noise_side, epochs=epochs, batch_size=values["batch_size"],
            seed=values["seed"], state=state, on_epoch=on_epoch,
        )
    noise = quantise(noise, bound)
    bar(1.0, "measuring the fooling rates")
    train_rate = evaluate(model, noise, _readable(train_ok, []), target)
    late: list[tuple[Path, str]] = []
    test_rate = evaluate(model, noise, _readable(test_files, late), target)
    _report_skipped(late)
    with guard.write(output, what="noise (-o)") as temporary, open(temporary, "wb") as handle:
        np.savez(handle, noise=noise, bound=bound, target=target, model=values["model"], png_gain=4.0,
                 fooling_train=train_rate, fooling_held_out=test_rate)
    png = output.with_suffix(".png")
    guard.save_image(png, encode_noise_image(noise), bit_depth=16, what="noise image beside -o")
    checkpoint.unlink(missing_ok=True)
    bar.close()
    return NoiseFit(output, png, int(target), str(model.labels[target]), float(np.abs(noise).max() * 255), values["epsilon"],
                    float(train_rate), float(test_rate), len(train_files), len(test_files))
