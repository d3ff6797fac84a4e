"""Fine-tuning speed: seconds per epoch of ``neurofilters finetune`` against a plain ``model.fit``.

Peer: the same frozen EfficientNet-Lite0 and the same new head (pooled features,
dropout, dense), compiled the same way and trained with a bare ``model.fit`` on
the same preprocessed arrays, written here. The ratio ours / plain shows what
the command adds (goal: at most 1.1). The same plain training with nothing frozen
shows what freezing saves. Epoch times are medians over epochs 2.. (epoch 1
includes tracing). Data: 500 images of 224 px in 5 classes, crops of
scikit-image's photos and textures.

    python bench/bench_finetune.py [--images 500] [--size 224] [--epochs 4]

Generalisation (``--generalisation``): two offline datasets whose test images come
from *sources* never seen in training, fine-tuned with the command's settings
(several candidates) against the nearest-class-mean baseline on the frozen
base's pooled features (trained on the same training folder):

- ``gimp-patterns``: the patterns of Debian's ``gimp-data`` (GIMP 2.10, fetched
  with ``apt-get download``, read with ``gimpformats``) in three materials, stone
  (15 patterns), wood (13) and GIMP's geometric "Legacy" patterns (15); 8 crops of
  the tiled pattern per source;
- ``debian-photos``: Debian's wallpaper photographs by subject, plants (11),
  landscapes (14) and things (7); 8 crops per photo.

A third of each class's sources (seeded) is the test set.

    python bench/bench_finetune.py --generalisation [--epochs 10]
"""

from __future__ import annotations

import argparse
import re
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

import machine  # noqa: E402


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


GIMP_PATTERN_CLASSES = {"stone": "Stone", "wood": "Wood", "geometric": "Legacy"}
PHOTO_CLASSES = {
    "plants": ("usr/share/backgrounds/Dragonfly_by_Bolly.jpg", "usr/share/backgrounds/seeding_by_Clements_Engelhardt.jpg",
               *(f"usr/share/backgrounds/mate/nature/{name}.jpg" for name in (
                   "Blinds", "Garden", "GreenMeadow", "LadyBird", "RainDrops", "TwoWings", "YellowFlower")),
               "usr/share/wallpapers/FallenLeaf/contents/images/1280x1024.jpg",
               "usr/share/wallpapers/OneStandsOut/contents/images/1280x1024.jpg"),
    "landscapes": (*(f"usr/share/backgrounds/{name}.jpg" for name in (
                       "aitzgorri_by_Aitzol_Berasategi", "picosdeeuropa_by_Aitzol_Berasategi", "sunset_by_Aitzol_Berasategi",
                       "life_by_Aitzol_Berasategi", "Bridge_by_Sander_Klootwijk", "Infinite-Sea_by_Aury88")),
                   "usr/share/backgrounds/mate/nature/Dune.jpg", "usr/share/backgrounds/mate/nature/Storm.jpg",
                   *(f"usr/share/wallpapers/{name}/contents/images/1280x1024.jpg" for name in (
                       "EveningGlow", "BytheWater", "summer_1am", "Path", "ColdRipple")),
                   "usr/share/wallpapers/Volna/contents/images/5120x2880.jpg"),
    "things": (*(f"usr/share/backgrounds/{name}.jpg" for name in (
                   "Picture_0B_by_freespace", "Picture_1A_by_freespace", "Wine_by_Jakkub_Mede", "free_by_Peter_Nerlich",
                   "friends_by_Aitzol_Berasategi")),
               "usr/share/backgrounds/mate/nature/Wood.jpg", "usr/share/wallpapers/Grey/contents/images/1280x1024.jpg"),
}
DEBIAN_CACHE = Path("/var/tmp/neurofilters-bench-finetune")
#: Candidate settings (Settings fields); "before" is the command's defaults before grouped validation.
CANDIDATES = {
    "before (random split, dropout 0.2, random head)": {"group_by": "none", "dropout": 0.2, "head_init": "random"},
    "grouped split, dropout 0.5, class-mean head (default)": {},
}

def _debian(packages: tuple[str, ...]) -> Path:
    """Packages unpacked under the cache folder (``apt-get download``, then ``dpkg-deb -x``)."""
    import subprocess

    unpacked = DEBIAN_CACHE / "unpacked"
    marker = DEBIAN_CACHE / ("-".join(packages) + ".done")
    if not marker.is_file():
        DEBIAN_CACHE.mkdir(parents=True, exist_ok=True)
        subprocess.run(["apt-get", "download", *packages], cwd=DEBIAN_CACHE, check=True, capture_output=True)
        for package in packages:
            for deb in DEBIAN_CACHE.glob(f"{package}_*.deb"):
                subprocess.run(["dpkg-deb", "-x", str(deb), str(unpacked)], check=True)
        marker.touch()
    return unpacked


def _crops(picture: np.ndarray, count: int, rng: np.random.Generator, low: float, high: float) -> list[np.ndarray]:
    side_limit = min(picture.shape[:2])
    crops = []
    for _ in range(count):
        side = int(rng.integers(int(side_limit * low), int(side_limit * high) + 1))
        top, left = (int(rng.integers(0, extent - side + 1)) for extent in picture.shape[:2])
        crops.append(picture[top : top + side, left : left + side])
    return crops


def gimp_pattern_sources() -> dict[str, dict[str, np.ndarray]]:
    """class -> pattern name -> the pattern tiled to 256 x 256 (RGB uint8)."""
    from gimpformats.GimpPatPattern import GimpPatPattern

    root = _debian(("gimp-data",)) / "usr/share/gimp/2.0/patterns"
    sources: dict[str, dict[str, np.ndarray]] = {}
    for name, folder in GIMP_PATTERN_CLASSES.items():
        sources[name] = {}
        for path in sorted((root / folder).glob("*.pat")):
            tile = np.asarray(GimpPatPattern(str(path)).image.convert("RGB"))
            reps = (256 // tile.shape[0] + 1, 256 // tile.shape[1] + 1, 1)
            sources[name][path.stem.lower()] = np.tile(tile, reps)[:256, :256]
    return sources


def photo_sources() -> dict[str, dict[str, np.ndarray]]:
    """class -> photo name -> the photo, longer side 640 px (RGB uint8)."""
    from PIL import Image

    root = _debian(("lomiri-wallpapers-16.04", "lomiri-wallpapers-20.04", "mate-backgrounds", "plasma-workspace-wallpapers"))
    sources: dict[str, dict[str, np.ndarray]] = {}
    for name, files in PHOTO_CLASSES.items():
        sources[name] = {}
        for file in files:
            image = Image.open(root / file).convert("RGB")
            image.thumbnail((640, 640), Image.Resampling.LANCZOS)
            stem = file.split("/")[3] if "/wallpapers/" in file else Path(file).stem
            sources[name][re.sub(r"[^a-z0-9]+", "", stem.lower())] = np.asarray(image)
    return sources


def split_sources(sources: dict[str, dict[str, np.ndarray]], root: Path, seed: int = 0, crops: int = 8,
                  low: float = 0.4, high: float = 0.8) -> tuple[list[np.ndarray], np.ndarray]:
    """Write the training folder (``root/<class>/<source>-<k>.png``); return the test crops and labels."""
    from PIL import Image

    rng = np.random.default_rng(seed)
    test_images, test_labels = [], []
    for label, (name, members) in enumerate(sorted(sources.items())):
        order = rng.permutation(sorted(members))
        held = set(order[: max(1, len(order) // 3)])
        (root / name).mkdir(parents=True)
        for source in sorted(members):
            for number, crop in enumerate(_crops(members[source], crops, rng, low, high)):
                if source in held:
                    test_images.append(crop)
                    test_labels.append(label)
                else:
                    Image.fromarray(crop).save(root / name / f"{source}-{number}.png")
    return test_images, np.asarray(test_labels)


def held_out_accuracy(model_path: Path, images: list[np.ndarray], labels: np.ndarray, size: int) -> float:
    """Accuracy of a fine-tuned ``.keras`` on the test crops (loaded as the zoo loads it)."""
    from neurofilters.filters.zoo.model import centre_crop_resize
    from neurofilters.filters.zoo.user_model import load_user_model

    model = load_user_model(model_path)
    batch = np.stack([centre_crop_resize(image.astype(np.float32) / 255.0, size, fraction=1.0) for image in images])
    logits = np.asarray(model.logits_model().predict(batch, batch_size=16, verbose=0))
    return float(np.mean(np.argmax(logits, axis=1) == labels))


def baseline_accuracy(train_root: Path, images: list[np.ndarray], labels: np.ndarray, size: int) -> float:
    """Nearest class mean on Lite0's frozen pooled features: training folder -> test crops."""
    import keras

    from neurofilters.filters.finetune.train import load_dataset, nearest_class_mean
    from neurofilters.filters.zoo.model import centre_crop_resize
    from neurofilters.plugin_host import ModelCache

    base = ModelCache().get("lite0")
    pooled = keras.Model(base.keras_model.inputs, base.keras_model.layers[-1].input)
    data = load_dataset(train_root, size)
    train = np.asarray(pooled.predict(np.asarray(base.preprocess(data.images)), batch_size=16, verbose=0))
    test_batch = np.stack([centre_crop_resize(image.astype(np.float32) / 255.0, size, fraction=1.0) for image in images])
    test = np.asarray(pooled.predict(np.asarray(base.preprocess(test_batch)), batch_size=16, verbose=0))
    kernel, bias = nearest_class_mean(train, data.labels, len(data.class_names))
    return float(np.mean(np.argmax(test @ kernel + bias, axis=1) == labels))


def generalisation(epochs: int, size: int, only: str | None = None) -> dict:
    """Held-out-source accuracy of each candidate setting on both datasets, and the baseline."""
    from neurofilters.filters.finetune.train import Settings, finetune

    results: dict = {}
    for dataset, make in (("gimp-patterns", gimp_pattern_sources), ("debian-photos", photo_sources)):
        with tempfile.TemporaryDirectory() as folder:
            root = Path(folder) / "train"
            images, labels = split_sources(make(), root)
            entry = {"test_crops": len(labels), "baseline_nearest_class_mean": baseline_accuracy(root, images, labels, size),
                     "candidates": {}}
            print(f"{dataset}: {len(labels)} test crops, baseline {entry['baseline_nearest_class_mean']:.1%}", flush=True)
            for name, overrides in CANDIDATES.items():
                if only and only not in name:
                    continue
                started = time.perf_counter()
                output = Path(folder) / "model.keras"
                report = finetune(Settings(data_dir=str(root), output=str(output), epochs=epochs, image_size=size,
                                           quiet=True, **overrides))
                accuracy = held_out_accuracy(output, images, labels, size)
                output.unlink()
                entry["candidates"][name] = {
                    "held_out": accuracy, "validation": report.accuracy, "validation_baseline": report.baseline_accuracy,
                    "epochs": report.epochs_run, "seconds": round(time.perf_counter() - started, 1),
                    "warnings": report.warnings,
                }
                print(f"  {name:58s} held-out {accuracy:6.1%}  validation {report.accuracy:6.1%} "
                      f"(baseline there {report.baseline_accuracy:6.1%})  {report.epochs_run} epochs", flush=True)
            results[dataset] = entry
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=500)
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--generalisation", action="store_true", help="held-out-source accuracy against the frozen baseline")
    parser.add_argument("--only", help="with --generalisation: only the candidates whose name contains this")
    args = parser.parse_args()
    if args.generalisation:
        figures = generalisation(args.epochs, args.size, args.only)
        machine.save({"finetune_generalisation": {"machine": machine.cpu(), "epochs": args.epochs,
                                                  "size": args.size, "datasets": figures}})
        return
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
    machine.save({"finetune": {
        "machine": machine.cpu(),
        "images": args.images, "size": args.size, "epochs": args.epochs,
        "seconds_per_epoch": figures, "ours_over_plain": ratio, "freezing_speedup": freezing,
    }})


if __name__ == "__main__":
    main()
