"""Fine-tuning speed: seconds per epoch of ``neurofilters finetune`` against a plain ``model.fit``.

Peer: the same frozen EfficientNet-Lite0 and the same new head (pooled features,
dropout, dense), compiled the same way and trained with a bare ``model.fit`` on
the same preprocessed arrays, written here. The ratio ours / plain shows what
the command adds (goal: at most 1.1). The same plain training with nothing frozen
shows what freezing saves. Epoch times are medians over epochs 2.. (epoch 1
includes tracing). Data: 500 images of 224 px in 5 classes, crops of
scikit-image's photos and textures.

    python bench/bench_finetune.py [--images 500] [--size 224] [--epochs 4]
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np

RESULTS = Path(__file__).with_name("results.json")


def make_dataset(root: Path, images: int, seed: int = 0) -> None:
    """``images`` crops in 5 class folders (brick, grass, gravel, coffee, astronaut)."""
    from PIL import Image
    from skimage import data

    rng = np.random.default_rng(seed)
    sources = {name: getattr(data, name)() for name in ("brick", "grass", "gravel", "coffee", "astronaut")}
    for number in range(images):
        name = list(sources)[number % len(sources)]
        picture = sources[name]
        side = int(rng.integers(96, min(picture.shape[:2])))
        top, left = (int(rng.integers(0, extent - side + 1)) for extent in picture.shape[:2])
        folder = root / name
        folder.mkdir(parents=True, exist_ok=True)
        Image.fromarray(picture[top : top + side, left : left + side]).convert("RGB").save(folder / f"{number:04d}.png")


def epoch_timer(keras):  # noqa: ANN001, ANN201 - a Keras callback class
    class Timer(keras.callbacks.Callback):
        def __init__(self) -> None:
            super().__init__()
            self.seconds: list[float] = []

        def on_epoch_begin(self, epoch, logs=None):  # noqa: ANN001
            self.start = time.perf_counter()

        def on_epoch_end(self, epoch, logs=None):  # noqa: ANN001
            self.seconds.append(time.perf_counter() - self.start)

    return Timer()


def plain_fit(root: Path, size: int, epochs: int, freeze: bool) -> float:
    """The peer: the frozen (or not) base and the head, a bare ``model.fit``; median seconds per epoch."""
    import keras

    from neurofilters.filters.finetune.train import load_dataset, stratified_split
    from neurofilters.plugin_host import ModelCache

    base = ModelCache().get("lite0")
    dataset = load_dataset(root, size)
    train, val = stratified_split(dataset.labels, 0.2, 0)
    x = np.asarray(base.preprocess(dataset.images), np.float32)
    copy = keras.models.clone_model(base.keras_model)
    copy.set_weights(base.keras_model.get_weights())
    for layer in copy.layers:
        layer.trainable = not freeze and not isinstance(layer, keras.layers.BatchNormalization)
    head = keras.layers.Dense(len(dataset.class_names))(keras.layers.Dropout(0.2)(copy.layers[-1].input))
    model = keras.Model(copy.inputs, head)
    model.compile(keras.optimizers.Adam(1e-3), keras.losses.SparseCategoricalCrossentropy(from_logits=True), metrics=["accuracy"])
    timer = epoch_timer(keras)
    model.fit(x[train], dataset.labels[train], validation_data=(x[val], dataset.labels[val]), batch_size=16,
              epochs=epochs, verbose=0, callbacks=[timer])
    return statistics.median(timer.seconds[1:])


def ours(root: Path, size: int, epochs: int, augment: tuple[str, ...]) -> float:
    """``neurofilters finetune`` (the library call behind the command); median seconds per epoch."""
    import keras

    from neurofilters.filters.finetune.train import Settings, finetune

    timer = epoch_timer(keras)
    with tempfile.TemporaryDirectory() as folder:
        settings = Settings(data_dir=str(root), output=str(Path(folder) / "bench.keras"), epochs=epochs, image_size=size,
                            augment=augment, patience=epochs + 1)
        finetune(settings, callbacks=[timer])
    return statistics.median(timer.seconds[1:])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=500)
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--epochs", type=int, default=4)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        root = Path(folder)
        make_dataset(root, args.images)
        figures = {
            "ours (no augmentation)": ours(root, args.size, args.epochs, ()),
            "plain model.fit, frozen": plain_fit(root, args.size, args.epochs, freeze=True),
            "ours (default augmentation)": ours(root, args.size, args.epochs, ("flip", "shift", "zoom")),
            "plain model.fit, nothing frozen": plain_fit(root, args.size, args.epochs, freeze=False),
        }
    ratio = figures["ours (no augmentation)"] / figures["plain model.fit, frozen"]
    freezing = figures["plain model.fit, nothing frozen"] / figures["plain model.fit, frozen"]
    for name, seconds in figures.items():
        print(f"{name:34s} {seconds:7.2f} s/epoch")
    print(f"ours / plain fit: {ratio:.2f} (goal <= 1.1); freezing is {freezing:.1f}x faster per epoch")
    results = json.loads(RESULTS.read_text()) if RESULTS.is_file() else {}
    results["finetune"] = {
        "machine": platform.processor() or platform.machine(),
        "images": args.images, "size": args.size, "epochs": args.epochs,
        "seconds_per_epoch": figures, "ours_over_plain": ratio, "freezing_speedup": freezing,
    }
    RESULTS.write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
