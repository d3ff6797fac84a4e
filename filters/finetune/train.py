"""The ``finetune`` command: folders of images -> a frozen base with a new head -> a ``.keras`` model.

Training is Keras' own ``fit`` (``EarlyStopping`` stops on the validation
accuracy); this module adds what the command needs around it: loading the
folders through the host's safe loader, a stratified split, freezing, the
report, an atomic model file that carries its class names and preprocessing
(``neurofilters.json`` inside the ``.keras`` archive, read back by
:mod:`neurofilters.filters.zoo.user_model`), and a checkpoint after every epoch
so that Ctrl-C or a crash loses at most one epoch. The checkpoint is written
here rather than by Keras' ``BackupAndRestore``, which saves the whole model
every epoch: frozen layers never change, so only the trainable weights, the
optimizer's state and the epoch are saved (measured: ``BackupAndRestore`` made
an epoch of Lite0 at 224 px 1.4x slower than a bare ``fit``).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import os
import shutil
import time
import zipfile
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from neurofilters.plugin_host import (
    IMAGE_SUFFIXES,
    ImageIOError,
    ModelCache,
    NeurofiltersError,
    ParameterError,
    ProgressBar,
    WriteGuard,
    get_registry,
    load_image,
    split_alpha,
    text_table,
)

from ..zoo.model import centre_crop_resize
from ..zoo.preprocessing import PREPROCESSING_MODES
from ..zoo.user_model import EMBEDDED_SETTINGS

__all__ = ["AUGMENTATIONS", "Dataset", "Report", "Settings", "finetune", "load_dataset", "parse_settings", "run_command"]

AUGMENTATIONS = ("flip", "shift", "zoom", "contrast")


@dataclass(frozen=True)
class Settings:
    """The validated arguments of one fine-tuning run."""

    data_dir: str
    output: str
    base: str = "lite0"
    freeze: int | None = None  # None = auto
    epochs: int = 10
    image_size: int = 224
    val_split: float = 0.2
    augment: tuple[str, ...] = ("flip", "shift", "zoom")
    batch_size: int = 16
    learning_rate: float = 1e-3
    patience: int = 3
    seed: int = 0
    quiet: bool = False
    overwrite: bool = False

    def fingerprint(self) -> str:
        """What a checkpoint must match to be resumed (everything but the epoch budget and display)."""
        data = {k: v for k, v in asdict(self).items() if k not in ("epochs", "quiet", "output", "overwrite")}
        return hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()[:16]


def _number(text: str, flag: str, kind: type, low: float, high: float | None = None) -> Any:
    try:
        if isinstance(text, str) and any(ord(character) < 32 for character in text.strip(" \t\n\r")):
            raise ValueError  # int()/float() take U+001C-U+001F as white space
        value = kind(text)
        if not math.isfinite(value) or value < low or (high is not None and value > high):
            raise ValueError
    except (TypeError, ValueError, OverflowError):
        bound = f"between {low:g} and {high:g}" if high is not None else f">= {low:g}"
        noun = "an integer" if kind is int else "a number"
        raise ParameterError(f'"{flag}" must be {noun} {bound}. Received: {flag} {str(text)[:100]}', param=flag.lstrip("-"), value=text) from None
    return value


def parse_settings(args: argparse.Namespace) -> Settings:
    """Check every argument (before any model loads) and return the settings.

    Raises:
        ParameterError: A bad value, naming the flag, the value and what is allowed.
    """
    data_dir = Path(args.data_dir)
    if not data_dir.is_dir():
        raise ParameterError(f'DATA_DIR must be a folder with one sub-folder per class. Received: {args.data_dir}', param="data_dir", value=args.data_dir)
    output = Path(args.output)
    if output.suffix != ".keras":
        raise ParameterError(f'"--output" must end in .keras. Received: -o {args.output}', param="output", value=args.output)
    if not output.parent.resolve().is_dir() or not os.access(output.parent.resolve(), os.W_OK):
        raise ParameterError(f'"--output" must be in an existing, writable folder. Received: -o {args.output}', param="output", value=args.output)
    freeze = None if str(args.freeze).strip().lower() == "auto" else _number(args.freeze, "--freeze", int, 0)
    augment = tuple(part.strip().lower() for part in str(args.augment).split(",") if part.strip())
    if augment == ("none",):
        augment = ()
    unknown = [name for name in augment if name not in AUGMENTATIONS]
    if unknown:
        raise ParameterError(
            f'"--augment" must list some of {", ".join(AUGMENTATIONS)} (or none). Received: --augment {args.augment}',
            param="augment", value=args.augment,
        )
    return Settings(
        data_dir=os.fspath(data_dir),
        output=os.fspath(output),
        base=str(args.base),
        freeze=freeze,
        epochs=_number(args.epochs, "--epochs", int, 1, 1000),
        image_size=_number(args.image_size, "--image-size", int, 32, 1024),
        val_split=_number(args.val_split, "--val-split", float, 0.05, 0.5),
        augment=augment,
        batch_size=_number(args.batch_size, "--batch-size", int, 1, 4096),
        learning_rate=_number(args.learning_rate, "--learning-rate", float, 1e-7, 1.0),
        patience=_number(args.patience, "--patience", int, 1, 1000),
        seed=_number(args.seed, "--seed", int, 0, 2**31 - 1),
        quiet=bool(args.quiet),
        overwrite=bool(getattr(args, "overwrite", False)),
    )


@dataclass
class Dataset:
    """Images of every class, resized and ready for the base network.

    Attributes:
        images: float32 ``N x S x S x 3`` RGB in [0, 1].
        labels: int ``N`` class ids.
        class_names: Folder names, index = class id.
        skipped: ``(file, reason)`` for every file that could not be read.
    """

    images: np.ndarray
    labels: np.ndarray
    class_names: list[str]
    skipped: list[tuple[str, str]] = field(default_factory=list)


def load_dataset(data_dir: str | os.PathLike[str], size: int, progress: Callable[[float, str], None] | None = None) -> Dataset:
    """Read ``DATA_DIR/<class>/<image>`` through the host's loader; unreadable files are skipped and listed.

    Raises:
        ParameterError: Fewer than two classes, or a class with fewer than two readable images.
    """
    root = Path(data_dir)
    classes = sorted(entry.name for entry in root.iterdir() if entry.is_dir() and not entry.name.startswith("."))
    if len(classes) < 2:
        raise ParameterError(
            f"DATA_DIR needs at least two class folders. Received: {root} with {len(classes)} ({', '.join(classes) or 'none'})",
            param="data_dir", value=os.fspath(root),
        )
    files = [
        (index, path)
        for index, name in enumerate(classes)
        for path in sorted((root / name).iterdir())
        if path.is_file() and not path.name.startswith(".") and path.suffix.lower() in IMAGE_SUFFIXES
    ]
    images, labels, skipped = [], [], []
    for number, (label, path) in enumerate(files):
        try:
            rgb, _ = split_alpha(load_image(path).pixels)
        except ImageIOError as error:
            skipped.append((os.fspath(path), str(error)))
            continue
        images.append(centre_crop_resize(rgb, size, fraction=1.0))
        labels.append(label)
        if progress is not None:
            progress((number + 1) / len(files), f"reading images {number + 1}/{len(files)}")
    counts = np.bincount(np.asarray(labels, dtype=np.int64), minlength=len(classes))
    thin = [f"{name} ({count})" for name, count in zip(classes, counts) if count < 2]
    if thin:
        raise ParameterError(
            f"Every class needs at least two readable images. Received: {', '.join(thin)} in {root}",
            param="data_dir", value=os.fspath(root),
        )
    return Dataset(np.stack(images).astype(np.float32), np.asarray(labels, dtype=np.int64), classes, skipped)


def stratified_split(labels: np.ndarray, val_split: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Indices of the training and validation images: ``val_split`` of each class (at least one) held out."""
    rng = np.random.default_rng([seed, 1])
    train, val = [], []
    for label in np.unique(labels):
        members = rng.permutation(np.flatnonzero(labels == label))
        count = min(len(members) - 1, max(1, int(round(len(members) * val_split))))
        val.extend(members[:count])
        train.extend(members[count:])
    return np.sort(np.asarray(train)), np.sort(np.asarray(val))


def preprocessing_mode(model: Any) -> str:
    """The name of the zoo model's input convention among ``PREPROCESSING_MODES`` (found by probing).

    Raises:
        NeurofiltersError: The model's preprocessing is none of the named modes.
    """
    probe = np.random.default_rng(0).random((1, 4, 4, 3), dtype=np.float32)
    expected = np.asarray(model.preprocess(probe))
    for name, function in PREPROCESSING_MODES.items():
        if np.allclose(np.asarray(function(probe)), expected, atol=1e-4):
            return name
    raise NeurofiltersError(f"Model {model.name!r} has an input convention a .keras file cannot name; choose another --base.")


def auto_freeze(layer_count: int, image_count: int) -> int:
    """How many base layers ``--freeze auto`` freezes: all for small datasets, all but the last ~15 % beyond 2,000 images."""
    return layer_count if image_count < 2000 else int(layer_count * 0.85)


def _feature_network(model: Any) -> tuple[Any, Any]:
    """A copy of the base (own weights) and its feature tensor: pooled features, or a backbone's deepest good layer.

    The fine-tuned model is one flat graph over the copy's layers, so every
    layer stays reachable by name (DeepDream, saliency and the explorer use them).
    """
    import keras

    copy = keras.models.clone_model(model.keras_model)
    copy.set_weights(model.keras_model.get_weights())
    if model.kind == "classifier":
        return copy, copy.layers[-1].input
    deepest = max(copy.layers.index(copy.get_layer(name)) for name, _ in model.default_dream_layers)
    return copy, copy.layers[deepest].output


@dataclass
class Report:
    """What the command prints at the end (and the tests read)."""

    class_names: list[str]
    confusion: np.ndarray
    epochs_run: int
    seconds: float
    frozen_layers: int
    trainable_layers: int
    skipped: list[tuple[str, str]]
    resumed_at_epoch: int | None = None

    @property
    def per_class_accuracy(self) -> list[float]:
        """Validation accuracy of each class."""
        totals = self.confusion.sum(axis=1)
        return [float(self.confusion[i, i] / totals[i]) if totals[i] else 0.0 for i in range(len(totals))]

    @property
    def accuracy(self) -> float:
        """Validation accuracy over every held-out image."""
        return float(np.trace(self.confusion) / max(1, self.confusion.sum()))


class _Checkpoint:
    """The resumable state of one run, beside the output: ``OUTPUT.training/`` (run fingerprint + ``state.npz``)."""

    def __init__(self, settings: Settings) -> None:
        self.folder = Path(settings.output + ".training")
        self.fingerprint = settings.fingerprint()

    def prepare(self, create: bool = True) -> bool:
        """Check that an existing folder belongs to the same run (True: resuming), else create it (unless ``create`` is false)."""
        stamp = self.folder / "run.json"
        if stamp.is_file():
            recorded = json.loads(stamp.read_text()).get("fingerprint")
            if recorded != self.fingerprint:
                raise ParameterError(
                    f"{self.folder} holds the checkpoint of a run with other settings. Received: the same -o with "
                    "different data or arguments; rerun them unchanged to resume, or delete that folder to start again.",
                    param="output", value=os.fspath(self.folder),
                )
            return True
        if not create:
            return False
        self.folder.mkdir(parents=True, exist_ok=True)
        stamp.write_text(json.dumps({"fingerprint": self.fingerprint}))
        return False

    @property
    def state(self) -> Path:
        """The trainable weights, the optimizer's variables and the next epoch."""
        return self.folder / "state.npz"

    def save(self, trainer: Any, next_epoch: int) -> None:
        """Write the state atomically (temporary file, then rename)."""
        from keras import ops

        arrays = {f"w{i}": ops.convert_to_numpy(v) for i, v in enumerate(trainer.trainable_variables)}
        arrays.update({f"o{i}": ops.convert_to_numpy(v) for i, v in enumerate(trainer.optimizer.variables)})
        temporary = self.folder / "state.tmp.npz"
        np.savez(temporary, next_epoch=np.int64(next_epoch), **arrays)
        os.replace(temporary, self.state)

    def restore(self, trainer: Any) -> int:
        """Load a saved state into ``trainer`` (compiled); return the epoch to start from (0: nothing saved)."""
        if not self.state.is_file():
            return 0
        with np.load(self.state) as saved:
            for i, variable in enumerate(trainer.trainable_variables):
                variable.assign(saved[f"w{i}"])
            trainer.optimizer.build(trainer.trainable_variables)
            for i, variable in enumerate(trainer.optimizer.variables):
                variable.assign(saved[f"o{i}"])
            return int(saved["next_epoch"])

    def callback(self, keras: Any) -> Any:
        """A Keras callback that saves the state at the end of every epoch."""
        checkpoint = self

        class SaveState(keras.callbacks.Callback):
            def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
                checkpoint.save(self.model, epoch + 1)

        return SaveState()

    def remove(self) -> None:
        """Forget the checkpoint (the model is written)."""
        shutil.rmtree(self.folder, ignore_errors=True)


def finetune(
    settings: Settings, progress: Callable[[float, str], None] | None = None, callbacks: Sequence[Any] = ()
) -> Report:
    """Train a new head (and the unfrozen layers) on the folders; write the ``.keras`` file.

    Args:
        settings: From :func:`parse_settings`.
        progress: ``callback(fraction, message)``.
        callbacks: More Keras callbacks for ``fit`` (timing, logging).

    Returns:
        The validation report.

    Raises:
        ParameterError: Bad data or a base without a usable input convention.
    """
    report_progress = progress or (lambda fraction, message: None)
    started = time.perf_counter()
    checkpoint = _Checkpoint(settings)
    resuming = checkpoint.prepare(create=False)  # a checkpoint of other settings is refused now; nothing is created yet
    report_progress(0.0, f"loading {settings.base}")
    base = ModelCache(get_registry().get_model).get(settings.base)
    mode = preprocessing_mode(base)
    data = load_dataset(settings.data_dir, settings.image_size, lambda f, m: report_progress(0.05 * f, m))
    train_index, val_index = stratified_split(data.labels, settings.val_split, settings.seed)
    if not resuming:  # only once the base and the data are validated: a usage error leaves no checkpoint behind
        checkpoint.prepare()

    import keras

    keras.utils.set_random_seed(settings.seed)
    copy, pooled = _feature_network(base)
    base_layers = [layer for layer in copy.layers if not isinstance(layer, keras.layers.InputLayer)]
    frozen = auto_freeze(len(base_layers), len(data.labels)) if settings.freeze is None else min(settings.freeze, len(base_layers))
    for number, layer in enumerate(base_layers):
        # BatchNorm statistics stay those of the base: small batches of a few classes would spoil them.
        layer.trainable = number >= frozen and not isinstance(layer, keras.layers.BatchNormalization)
    if len(pooled.shape) == 4:
        pooled = keras.layers.GlobalAveragePooling2D(name="finetune_pool")(pooled)
    pooled = keras.layers.Dropout(0.2, name="finetune_dropout")(pooled)
    logits = keras.layers.Dense(len(data.class_names), name="logits")(pooled)  # the zoo's name for class logits
    network = keras.Model(copy.inputs, logits, name=Path(settings.output).stem)
    size = (settings.image_size, settings.image_size, 3)
    trainer = keras.Sequential([keras.Input(size), *_augmentation(settings), network]) if settings.augment else network
    trainer.compile(
        optimizer=keras.optimizers.Adam(settings.learning_rate),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=["accuracy"],
    )
    x = np.asarray(base.preprocess(data.images), dtype=np.float32)
    epochs: dict[str, int] = {"first": -1, "last": 0}
    start = checkpoint.restore(trainer) if resuming else 0
    trainer.fit(
        x[train_index], data.labels[train_index],
        validation_data=(x[val_index], data.labels[val_index]),
        batch_size=settings.batch_size, epochs=settings.epochs, initial_epoch=min(start, settings.epochs), shuffle=True,
        verbose=0,
        callbacks=[
            checkpoint.callback(keras),
            keras.callbacks.EarlyStopping(monitor="val_accuracy", mode="max", patience=settings.patience, restore_best_weights=True),
            _progress_callback(keras, settings, report_progress, epochs, resuming),
            *callbacks,
        ],
    )
    predictions = np.argmax(np.asarray(network.predict(x[val_index], batch_size=settings.batch_size, verbose=0)), axis=1)
    confusion = np.zeros((len(data.class_names),) * 2, dtype=np.int64)
    np.add.at(confusion, (data.labels[val_index], predictions), 1)
    _save_model(network, settings, data.class_names, mode, base)
    checkpoint.remove()
    report_progress(1.0, "done")
    trainable = sum(1 for layer in base_layers if layer.trainable)
    return Report(
        data.class_names, confusion, epochs["last"], time.perf_counter() - started, frozen, trainable, data.skipped,
        resumed_at_epoch=epochs["first"] + 1 if resuming and epochs["first"] > 0 else None,
    )


def _augmentation(settings: Settings) -> list[Any]:
    import keras

    layers: list[Any] = []
    seed = settings.seed
    if "flip" in settings.augment:
        layers.append(keras.layers.RandomFlip("horizontal", seed=seed, name="aug_flip"))
    if "shift" in settings.augment:
        layers.append(keras.layers.RandomTranslation(0.1, 0.1, fill_mode="reflect", seed=seed + 1, name="aug_shift"))
    if "zoom" in settings.augment:
        layers.append(keras.layers.RandomZoom(0.15, fill_mode="reflect", seed=seed + 2, name="aug_zoom"))
    if "contrast" in settings.augment:
        layers.append(keras.layers.RandomContrast(0.2, seed=seed + 3, name="aug_contrast"))
    return layers


def _progress_callback(keras: Any, settings: Settings, report: Callable[[float, str], None], epochs: dict[str, int], resuming: bool) -> Any:
    class Progress(keras.callbacks.Callback):
        """Per-batch progress, the last epoch's metrics in the message."""

        def __init__(self) -> None:
            super().__init__()
            self.epoch = 0
            self.metrics = "resuming from the checkpoint" if resuming else ""

        def on_epoch_begin(self, epoch: int, logs: dict | None = None) -> None:
            self.epoch = epoch
            if epochs["first"] < 0:
                epochs["first"] = epoch  # > 0 when Keras restored a backup

        def on_train_batch_end(self, batch: int, logs: dict | None = None) -> None:
            steps = self.params.get("steps") or 1
            fraction = 0.05 + 0.9 * (self.epoch + (batch + 1) / steps) / settings.epochs
            report(min(fraction, 0.95), f"epoch {self.epoch + 1}/{settings.epochs} {self.metrics}".rstrip())

        def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
            logs = logs or {}
            epochs["last"] = epoch + 1
            self.metrics = (
                f"loss {logs.get('loss', float('nan')):.3f} acc {logs.get('accuracy', float('nan')):.3f} "
                f"val_acc {logs.get('val_accuracy', float('nan')):.3f}"
            )

    return Progress()


def _save_model(network: Any, settings: Settings, class_names: Sequence[str], mode: str, base: Any,
                guard: WriteGuard | None = None) -> Path:
    """Write the model atomically; the archive carries ``neurofilters.json`` (labels, preprocessing, size, dream layers)."""
    target = Path(settings.output)
    temporary = target.with_name(f".{target.stem}.{os.getpid()}.tmp.keras")
    try:
        network.save(temporary)
        info = {
            "labels": list(class_names),
            "preprocessing": mode,
            "image_size": settings.image_size,
            "dream_layers": [[name, weight] for name, weight in base.default_dream_layers],
            "base": settings.base,
        }
        with zipfile.ZipFile(temporary, "a") as archive:
            archive.writestr(EMBEDDED_SETTINGS, json.dumps(info, indent=1))
        guard = guard if guard is not None else WriteGuard([("the training data", settings.data_dir)], overwrite=settings.overwrite)
        guard.check(target, what="model (-o)")  # (Keras needs a .keras name, so the guard checks and records around it)
        os.replace(temporary, target)
        guard.record(target)
    finally:
        temporary.unlink(missing_ok=True)
    return target


def confusion_image(confusion: np.ndarray, cell: int = 24) -> np.ndarray:
    """The confusion matrix as a picture: one square per (true, predicted) pair, darker = more images."""
    totals = np.maximum(confusion.sum(axis=1, keepdims=True), 1)
    shares = confusion / totals
    grid = np.kron(1.0 - shares, np.ones((cell, cell)))
    grid[::cell, :] = 0.6
    grid[:, ::cell] = 0.6
    picture = np.repeat(grid[:, :, None], 3, axis=2).astype(np.float32)
    picture[:, :, 0] = np.minimum(1.0, picture[:, :, 0] + 0.15 * np.kron(np.eye(len(confusion)), np.ones((cell, cell))))
    return picture


def _confusion_path(settings: Settings) -> Path:
    return Path(settings.output).with_name(Path(settings.output).stem + "-confusion.png")


def _guard(settings: Settings) -> WriteGuard:
    """The host's guarded writer: never over a file of DATA_DIR or the base model, nor a file neurofilters did not write."""
    return WriteGuard([("the training data", settings.data_dir), ("the base model file", settings.base)],
                      overwrite=settings.overwrite)


def run_command(args: argparse.Namespace) -> int:
    """``neurofilters finetune``: train, print the report, write the model and its confusion image."""
    settings = parse_settings(args)
    _guard(settings).check_all([("model (-o)", settings.output), ("confusion image", _confusion_path(settings)),
                                ("checkpoint folder", settings.output + ".training")])  # before any work
    bar = None if settings.quiet else ProgressBar("finetune")
    try:
        report = finetune(settings, bar)
    finally:
        if bar is not None:
            bar.close()
    if report.resumed_at_epoch is not None:
        print(f"resumed at epoch {report.resumed_at_epoch} from the checkpoint of an interrupted run")
    for path, reason in report.skipped:
        print(f"skipped {path}: {reason}")
    rows = [
        (name, str(int(report.confusion[i].sum())), f"{accuracy:.1%}")
        for i, (name, accuracy) in enumerate(zip(report.class_names, report.per_class_accuracy))
    ]
    print(text_table(rows, ("class", "validation images", "accuracy")))
    print("\nconfusion (rows: true class, columns: predicted):")
    print(text_table([(name, *map(str, row)) for name, row in zip(report.class_names, report.confusion)], ("", *report.class_names)))
    picture = _guard(settings).save_image(_confusion_path(settings), confusion_image(report.confusion), what="confusion image")
    print(
        f"\nvalidation accuracy {report.accuracy:.1%} after {report.epochs_run} epochs in {report.seconds:.0f} s "
        f"({report.frozen_layers} base layers frozen, {report.trainable_layers} trained)"
    )
    print(f"wrote {settings.output} and {picture}; use it as --model {settings.output}")
    return 0
