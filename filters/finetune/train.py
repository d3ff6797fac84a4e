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

import hashlib
import json
import math
import os
import re
import shutil
import sys
import time
import zipfile
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from neurofilters.plugin_host import (
    IMAGE_SUFFIXES,
    CommandContext,
    ImageIOError,
    ModelCache,
    NeurofiltersError,
    ParameterError,
    WriteGuard,
    load_image,
    parse_int,
    split_alpha,
    text_table,
)

from ..zoo.model import centre_crop_resize
from ..zoo.preprocessing import PREPROCESSING_MODES
from ..zoo.user_model import EMBEDDED_SETTINGS, IMAGE_SIZE_RANGE

__all__ = [
    "AUGMENTATIONS", "Dataset", "FinetuneResult", "Report", "Settings", "compute_command", "finetune", "load_dataset", "parse_settings",
    "render_command",
    "run_command",
]

AUGMENTATIONS = ("flip", "shift", "zoom", "contrast")
#: ``--group-by`` default: a file's group is its name without a trailing number (``brick-3.png`` and
#: ``brick_12.png`` are one source); a name that is only a number is a group of its own.
DEFAULT_GROUP_BY = "trailing-number"
#: Validation accuracy this far above the accuracy on the validation images that have no near-duplicate
#: in the training images is reported as a leak.
LEAK_MARGIN = 0.15
#: Cosine similarity of frozen pooled features (Lite0) above which a validation image counts as a
#: near-duplicate of a training image. Measured: a crop's nearest crop of the same source has a median
#: cosine of 0.84-0.97 (scikit-image's brick/grass/gravel at 96 px, GIMP's stone/wood/geometric patterns
#: at 224 px), its nearest crop of another pattern of the same material 0.50-0.54 (75th percentile <= 0.66).
NEAR_DUPLICATE = 0.8
#: The head's logits are this times the cosine between the unit features and the unit class means.
HEAD_SCALE = 10.0


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
    group_by: str = DEFAULT_GROUP_BY
    dropout: float = 0.5
    head_init: str = "class-means"
    quiet: bool = False
    overwrite: bool = False

    def fingerprint(self) -> str:
        """What a checkpoint must match to be resumed (everything but the epoch budget and display)."""
        data = {k: v for k, v in asdict(self).items() if k not in ("epochs", "quiet", "output", "overwrite")}
        return hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()[:16]


def parse_settings(values: Mapping[str, Any]) -> Settings:
    """The settings of a run from the command's validated values (``plugin.FINETUNE_PARAMS``), checked before any model loads.

    The declaration checks each value's kind and range; this checks what only
    the command knows: the folders, the output's suffix, ``--freeze``,
    ``--augment none`` alone, and the ``--group-by`` expression.

    Raises:
        ParameterError: A bad value, naming the flag, the value and what is allowed.
    """
    data_dir = Path(values["data_dir"])
    if not data_dir.is_dir():
        raise ParameterError(f'DATA_DIR must be a folder with one sub-folder per class. Received: {values["data_dir"]}',
                             param="data_dir", value=values["data_dir"])
    output = Path(values["output"])
    if output.suffix != ".keras":
        raise ParameterError(f'"--output" must end in .keras. Received: -o {values["output"]}', param="output", value=values["output"])
    if not output.parent.resolve().is_dir() or not os.access(output.parent.resolve(), os.W_OK):
        raise ParameterError(f'"--output" must be in an existing, writable folder. Received: -o {values["output"]}',
                             param="output", value=values["output"])
    freeze = None if str(values["freeze"]).strip().lower() == "auto" else parse_int(values["freeze"], "--freeze", 0)
    augment = tuple(dict.fromkeys(values["augment"]))
    if "none" in augment:
        if augment != ("none",):
            raise ParameterError(
                f'--augment must list some of {", ".join(AUGMENTATIONS)}, or none alone. Received: --augment {",".join(augment)}',
                param="augment", value=values["augment"],
            )
        augment = ()
    group_by = str(values["group_by"])
    if group_by not in (DEFAULT_GROUP_BY, "none"):
        try:
            re.compile(group_by)
        except re.error as error:
            raise ParameterError(
                f'"--group-by" must be a regular expression, {DEFAULT_GROUP_BY} or none. Received: --group-by {group_by[:100]} ({error})',
                param="group_by", value=group_by,
            ) from None
    return Settings(
        data_dir=os.fspath(data_dir),
        group_by=group_by,
        output=os.fspath(output),
        base=str(values["base"]),
        freeze=freeze,
        epochs=values["epochs"],
        image_size=values["image_size"],
        val_split=values["val_split"],
        augment=augment,
        batch_size=values["batch_size"],
        learning_rate=values["learning_rate"],
        patience=values["patience"],
        seed=values["seed"],
        quiet=values["quiet"],
        overwrite=values["overwrite"],
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
    names: list[str] = field(default_factory=list)


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
    images, labels, skipped, names = [], [], [], []
    for number, (label, path) in enumerate(files):
        try:
            rgb, _ = split_alpha(load_image(path).pixels)
        except ImageIOError as error:
            skipped.append((os.fspath(path), str(error)))
            continue
        images.append(centre_crop_resize(rgb, size, fraction=1.0))
        labels.append(label)
        names.append(path.name)
        if progress is not None:
            progress((number + 1) / len(files), f"reading images {number + 1}/{len(files)}")
    counts = np.bincount(np.asarray(labels, dtype=np.int64), minlength=len(classes))
    thin = [f"{name} ({count})" for name, count in zip(classes, counts) if count < 2]
    if thin:
        raise ParameterError(
            f"Every class needs at least two readable images. Received: {', '.join(thin)} in {root}",
            param="data_dir", value=os.fspath(root),
        )
    return Dataset(np.stack(images).astype(np.float32), np.asarray(labels, dtype=np.int64), classes, skipped, names)


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


def group_key(name: str, group_by: str = DEFAULT_GROUP_BY) -> str:
    """The source group of a file name: files of one group are never split between training and validation.

    Args:
        name: The file name (``brick-3.png``).
        group_by: ``trailing-number`` (the stem without a trailing number and the
            separators before it; a stem that is only a number is its own group),
            ``none`` (every file its own group) or a regular expression searched in
            the stem (its first capture group, else the whole match, is the key; a
            stem it does not match is its own group).
    """
    stem = Path(name).stem
    if group_by == "none":
        return name
    if group_by == DEFAULT_GROUP_BY:
        key = re.sub(r"[\s_.\-(]*\d+\)?$", "", stem)
        return key if key else name
    match = re.search(group_by, stem)
    if match is None:
        return name
    return match.group(1) if match.re.groups else match.group(0)


def grouped_split(
    labels: np.ndarray, names: Sequence[str], val_split: float, seed: int, group_by: str = DEFAULT_GROUP_BY
) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """Training and validation indices with whole source groups held out (``val_split`` of each class's images).

    A class whose files form a single group is split file by file (its
    validation images may then be near-duplicates of training ones): its name
    is returned so the report can say so.

    Returns:
        Training indices, validation indices, classes split file by file.
    """
    rng = np.random.default_rng([seed, 1])
    train: list[int] = []
    val: list[int] = []
    ungrouped: list[int] = []
    for label in np.unique(labels):
        members = np.flatnonzero(labels == label)
        groups: dict[str, list[int]] = {}
        for index in members:
            groups.setdefault(group_key(names[index], group_by), []).append(int(index))
        wanted = min(len(members) - 1, max(1, int(round(len(members) * val_split))))
        if len(groups) < 2:
            ungrouped.append(int(label))
            shuffled = rng.permutation(members)
            val.extend(shuffled[:wanted])
            train.extend(shuffled[wanted:])
            continue
        keys = [sorted(groups)[i] for i in rng.permutation(len(groups))]
        held = 0
        for number, key in enumerate(keys):
            if held < wanted and number < len(keys) - 1:
                val.extend(groups[key])
                held += len(groups[key])
            else:
                train.extend(groups[key])
    return np.sort(np.asarray(train, dtype=np.int64)), np.sort(np.asarray(val, dtype=np.int64)), ungrouped


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
    if not model.default_dream_layers:  # a user's backbone that names no good layer: its own output
        return copy, copy.outputs[0]
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
    baseline_accuracy: float = float("nan")
    heldout_accuracy: float | None = None
    near_duplicates: int = 0
    validation_groups: int = 0
    training_groups: int = 0
    selected_epochs: int = 0
    warnings: list[str] = field(default_factory=list)

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
    """The resumable state of one run, beside the output: ``OUTPUT.training/`` (run fingerprint + ``state.npz``).

    The state holds everything that changes while training: the trainable
    weights, the optimizer's variables, the random generators of the dropout and
    augmentation layers, and the early-stopping bookkeeping (best validation
    accuracy, its weights, epochs without improvement). The data order of an
    epoch depends only on the seed and the epoch, so a resumed run continues
    exactly as an uninterrupted one would.
    """

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
        """The trainable weights, the optimizer's variables, the generators' states and the next epoch."""
        return self.folder / "state.npz"

    @staticmethod
    def _generators(trainer: Any) -> list[Any]:
        return [variable for variable in trainer.non_trainable_variables if "seed_generator_state" in variable.path]

    def save(self, trainer: Any, state: dict[str, Any]) -> None:
        """Write the weights, optimizer, generators and ``state`` (phase, epoch, best) atomically."""
        from keras import ops

        arrays = {f"w{i}": ops.convert_to_numpy(v) for i, v in enumerate(trainer.trainable_variables)}
        arrays.update({f"o{i}": ops.convert_to_numpy(v) for i, v in enumerate(trainer.optimizer.variables)})
        arrays.update({f"g{i}": ops.convert_to_numpy(v) for i, v in enumerate(self._generators(trainer))})
        scalars = {key: np.asarray(state[key]) for key in ("phase", "next_epoch", "best", "best_epoch", "wait")}
        temporary = self.folder / "state.tmp.npz"
        np.savez(temporary, predictions=np.asarray(state["predictions"]), **scalars, **arrays)
        os.replace(temporary, self.state)

    def restore(self, trainer: Any, state: dict[str, Any], before_restore: Callable[[int], None]) -> dict[str, Any]:
        """The saved state, loaded into ``trainer`` (after ``before_restore(phase)`` compiles it); ``state`` when nothing was saved."""
        if not self.state.is_file():
            return state
        with np.load(self.state) as saved:
            restored = {key: saved[key].item() for key in ("phase", "next_epoch", "best", "best_epoch", "wait")}
            restored["predictions"] = saved["predictions"]
            before_restore(int(restored["phase"]))
            for i, variable in enumerate(trainer.trainable_variables):
                variable.assign(saved[f"w{i}"])
            trainer.optimizer.build(trainer.trainable_variables)
            for i, variable in enumerate(trainer.optimizer.variables):
                variable.assign(saved[f"o{i}"])
            for i, variable in enumerate(self._generators(trainer)):
                variable.assign(saved[f"g{i}"])
        return restored

    def remove(self) -> None:
        """Forget the checkpoint (the model is written)."""
        shutil.rmtree(self.folder, ignore_errors=True)


def nearest_class_mean(features: np.ndarray, labels: np.ndarray, classes: int) -> tuple[np.ndarray, np.ndarray]:
    """The nearest-class-mean classifier as a linear layer: ``argmax(f @ kernel + bias)`` is the closest class mean.

    ``|f - m|^2 = |f|^2 - 2 f.m + |m|^2``, so the class of smallest distance has
    the largest ``f.m - |m|^2 / 2``.

    Returns:
        ``kernel`` (features x classes) and ``bias`` (classes), float32.
    """
    means = np.stack([features[labels == label].mean(axis=0) for label in range(classes)]).astype(np.float64)
    return means.T.astype(np.float32), (-0.5 * (means**2).sum(axis=1)).astype(np.float32)


def _accuracy(logits: np.ndarray, labels: np.ndarray) -> float:
    return float(np.mean(np.argmax(logits, axis=1) == labels)) if len(labels) else float("nan")


def finetune(
    settings: Settings, progress: Callable[[float, str], None] | None = None, callbacks: Sequence[Any] = (),
    models: ModelCache | None = None,
) -> Report:
    """Train a new head (and the unfrozen layers) on the folders; write the ``.keras`` file.

    Two phases. Selection: the head (on L2-normalised pooled features) starts
    as the nearest-class-mean classifier of the training split's features and
    trains with augmentation and dropout while the validation images, whole
    source groups (``settings.group_by``) never seen in training, pick the best
    number of epochs (zero included: then the class means are the model).
    Final: the same recipe on every image for that many epochs, so no source
    is wasted on validation. The report gives the selection's validation
    accuracy beside the baseline, the nearest class mean of the frozen base's
    pooled features, on the same images.

    Args:
        settings: From :func:`parse_settings`.
        progress: ``callback(fraction, message)``.
        models: The model cache the base comes from (the command's context's);
            ``None``: a new one resolving through the registry.
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
    base = (models if models is not None else ModelCache()).get(settings.base)
    mode = preprocessing_mode(base)
    data = load_dataset(settings.data_dir, settings.image_size, lambda f, m: report_progress(0.05 * f, m))
    train_index, val_index, ungrouped = grouped_split(data.labels, data.names, settings.val_split, settings.seed, settings.group_by)
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
    x = np.asarray(base.preprocess(data.images), dtype=np.float32)
    features = np.asarray(keras.Model(copy.inputs, pooled).predict(x, batch_size=settings.batch_size, verbose=0), dtype=np.float64)
    classes = len(data.class_names)
    labels = data.labels
    kernel, bias = nearest_class_mean(features[train_index], labels[train_index], classes)
    baseline = _accuracy(features[val_index] @ kernel + bias, labels[val_index])
    unit = features / np.maximum(np.linalg.norm(features, axis=1, keepdims=True), 1e-12)
    normalised = keras.layers.UnitNormalization(name="finetune_normalize")(pooled)
    dropped = keras.layers.Dropout(settings.dropout, name="finetune_dropout")(normalised)
    head = keras.layers.Dense(classes, name="logits")  # the zoo's name for class logits
    network = keras.Model(copy.inputs, head(dropped), name=Path(settings.output).stem)
    size = (settings.image_size, settings.image_size, 3)
    trainer = keras.Sequential([keras.Input(size), *_augmentation(settings), network]) if settings.augment else network

    def start_head(indices: np.ndarray) -> None:
        """The head as the nearest class mean of the unit features of ``indices`` (or fresh), a fresh optimizer."""
        if settings.head_init == "class-means":
            means = np.stack([unit[indices][labels[indices] == label].mean(axis=0) for label in range(classes)])
            means /= np.maximum(np.linalg.norm(means, axis=1, keepdims=True), 1e-12)
            head.set_weights([(HEAD_SCALE * means.T).astype(np.float32), np.zeros(classes, np.float32)])
        trainer.compile(
            optimizer=keras.optimizers.Adam(settings.learning_rate),
            loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
            metrics=["accuracy"],
        )

    def val_predictions() -> np.ndarray:
        return np.argmax(np.asarray(network.predict(x[val_index], batch_size=settings.batch_size, verbose=0)), axis=1)

    start_head(train_index)
    first = val_predictions()
    state: dict[str, Any] = {"phase": 1, "next_epoch": 0, "best": float(np.mean(first == labels[val_index])),
                             "best_epoch": 0, "wait": 0, "predictions": first}
    epochs: dict[str, int] = {"first": -1, "last": 0}
    if resuming:
        state = checkpoint.restore(trainer, state, before_restore=lambda phase: start_head(
            train_index if phase == 1 else np.arange(len(labels))))
    resumed_at = state["next_epoch"] + (settings.epochs if state["phase"] == 2 else 0)
    progress_callback = _progress_callback(keras, settings, report_progress, epochs, resuming)
    if state["phase"] == 1:
        for epoch in range(state["next_epoch"], settings.epochs):
            if state["wait"] >= settings.patience:
                break
            order = np.random.default_rng([settings.seed, 2, epoch]).permutation(train_index)
            trainer.fit(x[order], labels[order], batch_size=settings.batch_size, epochs=epoch + 1, initial_epoch=epoch,
                        shuffle=False, verbose=0, callbacks=[progress_callback, *callbacks])
            predictions = val_predictions()
            accuracy = float(np.mean(predictions == labels[val_index]))
            progress_callback.metrics += f" val_acc {accuracy:.3f}"
            if accuracy > state["best"]:
                state.update(best=accuracy, best_epoch=epoch + 1, wait=0, predictions=predictions)
            else:
                state["wait"] += 1
            state["next_epoch"] = epoch + 1
            epochs["last"] = epoch + 1
            checkpoint.save(trainer, state)
        state.update(phase=2, next_epoch=0)
        start_head(np.arange(len(labels)))
        checkpoint.save(trainer, state)
    everything = np.arange(len(labels))
    for epoch in range(state["next_epoch"], state["best_epoch"]):
        report_progress(0.95, f"final fit on every image, epoch {epoch + 1}/{state['best_epoch']}")
        order = np.random.default_rng([settings.seed, 3, epoch]).permutation(everything)
        trainer.fit(x[order], labels[order], batch_size=settings.batch_size, epochs=epoch + 1, initial_epoch=epoch,
                    shuffle=False, verbose=0, callbacks=list(callbacks))
        state["next_epoch"] = epoch + 1
        checkpoint.save(trainer, state)
    predictions = state["predictions"]
    confusion = np.zeros((classes,) * 2, dtype=np.int64)
    np.add.at(confusion, (labels[val_index], predictions), 1)
    _save_model(network, settings, data.class_names, mode, base)
    checkpoint.remove()
    report_progress(1.0, "done")
    trainable = sum(1 for layer in base_layers if layer.trainable)
    report = Report(
        data.class_names, confusion, max(epochs["last"], state["best_epoch"]), time.perf_counter() - started, frozen, trainable,
        data.skipped, resumed_at_epoch=resumed_at + 1 if resuming and resumed_at > 0 else None, baseline_accuracy=baseline,
        validation_groups=len({(labels[i], group_key(data.names[i], settings.group_by)) for i in val_index}),
        training_groups=len({(labels[i], group_key(data.names[i], settings.group_by)) for i in train_index}),
        selected_epochs=state["best_epoch"],
    )
    _check_leak(report, features, labels, train_index, val_index, predictions)
    if ungrouped:
        names = ", ".join(data.class_names[label] for label in ungrouped)
        report.warnings.append(
            f"class {names}: its files form one source group (--group-by {settings.group_by}), so its validation "
            "images were picked file by file and may be near-duplicates of training images"
        )
    return report


def _check_leak(report: Report, features: np.ndarray, labels: np.ndarray, train_index: np.ndarray,
                val_index: np.ndarray, predictions: np.ndarray) -> None:
    """Measure accuracy on the validation images without a near-duplicate in training; warn when far below."""
    unit = features / np.maximum(np.linalg.norm(features, axis=1, keepdims=True), 1e-12)
    nearest = (unit[val_index] @ unit[train_index].T).max(axis=1)
    fresh = nearest < NEAR_DUPLICATE
    report.near_duplicates = int((~fresh).sum())
    if fresh.any():
        report.heldout_accuracy = float(np.mean(predictions[fresh] == labels[val_index][fresh]))
    if report.near_duplicates and report.heldout_accuracy is not None and report.accuracy - report.heldout_accuracy > LEAK_MARGIN:
        report.warnings.append(
            f"validation accuracy {report.accuracy:.0%} is far above the {report.heldout_accuracy:.0%} on the "
            f"{int(fresh.sum())} validation images without a near-duplicate among the training images: the split "
            "leaks; name files so that crops of one source share a name, or give --group-by a pattern"
        )
    elif report.near_duplicates == len(val_index) and len(val_index):
        report.warnings.append(
            "every validation image has a near-duplicate among the training images: the validation accuracy says "
            "little about new images; give --group-by a pattern that keeps each source's files together"
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
            self.metrics = f"loss {logs.get('loss', float('nan')):.3f} acc {logs.get('accuracy', float('nan')):.3f}"

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


def _guard(settings: Settings, context: CommandContext) -> Any:
    """The host's guarded writer: never over a file of DATA_DIR or the base model, nor a file neurofilters did not write."""
    return context.writer(("the training data", settings.data_dir), ("the base model file", settings.base))


@dataclass(frozen=True)
class FinetuneResult:
    """What ``finetune`` made: the model file, its confusion image and the validation report.

    Attributes:
        model: The ``.keras`` file written (use it as ``model=`` / ``--model``).
        confusion_image: The confusion matrix as a picture, beside the model.
        report: The validation :class:`Report` (accuracy, per-class accuracy, confusion, baseline).
        settings: The validated settings of the run.
    """

    model: Path
    confusion_image: Path
    report: Report
    settings: Settings

    @property
    def accuracy(self) -> float:
        """Validation accuracy over every held-out image."""
        return self.report.accuracy

    @property
    def class_names(self) -> list[str]:
        """The classes the model knows, in the order of its outputs."""
        return list(self.report.class_names)


def _train(values: Mapping[str, Any], context: CommandContext) -> tuple[Settings, Report, Any]:
    settings = parse_settings(values)
    guard = _guard(settings, context)
    guard.check_all([("model (-o)", settings.output), ("confusion image", _confusion_path(settings)),
                     ("checkpoint folder", settings.output + ".training")])  # before any work
    bar = context.progress_bar("finetune")
    try:
        return settings, finetune(settings, bar, models=context.models), guard
    finally:
        bar.close()


def compute_command(values: Mapping[str, Any], context: CommandContext) -> FinetuneResult:
    """``finetune``'s work: train, write the model and its confusion image; the report comes back, not printed.

    Args:
        values: The validated parameters (``plugin.FINETUNE_PARAMS``).
        context: The host's context: its model cache and guarded writer.

    Raises:
        ParameterError: A bad value (before any model loads), bad data or an unusable base.
        UsageError: An output that would replace an input or a file neurofilters did not write.
    """
    settings, report, guard = _train(values, context)
    picture = guard.save_image(_confusion_path(settings), confusion_image(report.confusion), what="confusion image")
    return FinetuneResult(Path(settings.output), picture, report, settings)


def render_command(result: FinetuneResult, values: Mapping[str, Any]) -> int:
    """``neurofilters finetune``'s report: per-class accuracy, the confusion, the baseline, the files written."""
    report, settings, picture = result.report, result.settings, result.confusion_image
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
    print(
        f"\nvalidation accuracy {report.accuracy:.1%} after {report.epochs_run} epochs in {report.seconds:.0f} s "
        f"({report.frozen_layers} base layers frozen, {report.trainable_layers} trained); the model: the class-mean "
        f"head trained {report.selected_epochs} epochs (the best count on validation) on every image"
    )
    print(
        f"baseline: nearest class mean on the frozen {settings.base} features {report.baseline_accuracy:.1%} "
        f"on the same validation images ({report.validation_groups} source groups never seen in training, "
        f"{report.training_groups} in training)"
    )
    if report.heldout_accuracy is not None and report.near_duplicates:
        print(f"{report.near_duplicates} validation images have a near-duplicate in training; on the others: {report.heldout_accuracy:.1%}")
    for warning in report.warnings:
        print(f"warning: {warning}", file=sys.stderr)
    print(f"wrote {settings.output} and {picture}; use it as --model {settings.output}")
    return 0
