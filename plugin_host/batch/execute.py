"""Processing one batch task: decode, filter (every pipeline step), encode.

The three stages are separate functions so the runner can overlap them
(decoding the next file and encoding the previous one while the filter runs),
and picklable so worker processes can run them.
"""

from __future__ import annotations

import os
import re
import sys
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..core.call import derive_seed as file_seed
from ..core.context import ModelCache, OutputSink, ProgressCallback
from ..core.errors import ImageIOError, NeurofiltersError, UsageError

if TYPE_CHECKING:
    from ..imageio.files import ProtectedFiles

__all__ = ["Task", "RunOptions", "Outcome", "decode", "compute", "encode", "describe_error", "resolve_steps", "extra_output_writer", "cleanup_temporaries"]


@dataclass(frozen=True)
class Task:
    """One output to produce.

    Attributes:
        index: Position in the batch.
        source: Absolute input path.
        key: The input's relative path (plus ``#frame`` with ``--all-frames``).
        output: Absolute output path.
        fmt: Output format (a key of ``FORMAT_SUFFIXES``).
        frame: Frame to read.
        seed: The file's seed.
        params_hash: Hash of everything that determines the output.
        layered: Filter each raster layer of an XCF (groups, masks and precision kept) and write a layered file.
        masks: Per-layer XCF: ``keep`` layer masks as masks, or ``apply`` them to the filtered layers' alpha.
    """

    index: int
    source: str
    key: str
    output: str
    fmt: str
    frame: int
    seed: int
    params_hash: str
    layered: bool = False
    masks: str = "keep"


@dataclass(frozen=True)
class RunOptions:
    """Settings shared by every task of a run.

    Attributes:
        steps: ``(filter name, validated values)`` per pipeline step.
        quality: Lossy encoders' quality (1-100).
        max_pixels: Largest image accepted (``None``: Pillow's limit).
        protect: Paths never written (every input of the batch).
    """

    steps: tuple[tuple[str, dict[str, Any]], ...]
    quality: int = 95
    max_pixels: int | None = None
    protect: tuple[str, ...] = ()
    overwrite: bool = False

    @cached_property
    def guard(self) -> Any:
        """The host's guarded writer for extra outputs (never an input; an existing file only if ours or --overwrite)."""
        from ..imageio.guard import WriteGuard

        return WriteGuard(self.protect, overwrite=self.overwrite)

    @cached_property
    def protected(self) -> ProtectedFiles:
        """``protect`` indexed once per process (real paths and inodes), for O(1) checks per output."""
        from ..imageio.files import ProtectedFiles

        return ProtectedFiles(self.protect)

    def __getstate__(self) -> dict[str, Any]:
        # the index is rebuilt where the options are used: inode numbers are per machine
        return {k: v for k, v in self.__dict__.items() if k not in ("protected", "guard")}


@dataclass
class Outcome:
    """What happened to one task."""

    index: int
    status: str  # "ok" or "failed"
    error: str = ""
    seconds: float = 0.0
    compute_seconds: float = 0.0
    summary: str = ""  # what the filters reported about this file's result, one line each


def describe_error(error: BaseException) -> str:
    """One line saying what went wrong (the message of our errors, type and message otherwise)."""
    if isinstance(error, NeurofiltersError):
        return str(error)
    if isinstance(error, MemoryError):
        return "out of memory while processing this image (try a smaller image or --max-pixels)"
    return f"{type(error).__name__}: {error}"


def resolve_steps(
    steps: Sequence[tuple[str, dict[str, Any]]], max_pixels: int | None = None
) -> list[tuple[Any, dict[str, Any]]]:
    """Turn ``(name, values)`` pairs into ``(FilterSpec, values)``, image parameters loaded once per process.

    The loaded :class:`~..core.params.ParamValues` keep the names the user gave
    (``given``), which :func:`~..front.run` hands to the filter as ``context.given``.
    """
    from ..core.registry import get_registry
    from ..imageio.values import load_image_params

    registry = get_registry()
    resolved = []
    for name, values in steps:
        spec = registry.get_filter(name)
        resolved.append((spec, load_image_params(spec.params, values, max_pixels=max_pixels)))
    return resolved


def extra_output_writer(task: Task, options: RunOptions) -> OutputSink:
    """Where a file's extra outputs go: ``OUTDIR/<output stem>-<name><suffix>``, atomically, never over an input.

    They are written while the file is filtered, before its output; the journal
    marks the file done only once its output is written, so a resumed run
    writes them again (the same bytes) for every file it redoes.
    """
    output = Path(task.output)
    suffix = ".png" if task.fmt in ("ora", "xcf") else output.suffix

    def write(name: str, pixels: Any) -> None:
        path = output.with_name(f"{output.stem}-{name}{suffix}")
        path.parent.mkdir(parents=True, exist_ok=True)
        options.protected.check(path)
        try:
            options.guard.save_image(path, pixels, what="extra output", quality=options.quality)
        except UsageError as error:  # this file fails, with the reason; the batch goes on
            raise ImageIOError(str(error)) from None

    return write


def decode(task: Task, options: RunOptions) -> Any:
    """Read the task's input: a ``LoadedImage``, or a ``LayeredImage`` for per-layer XCF.

    Raises:
        ImageIOError: The file cannot be read (with the reason).
    """
    source = Path(task.source)
    if source.suffix.lower() == ".xcf":
        from ..imageio.layered import composite, read_xcf

        try:
            layered = read_xcf(source, max_pixels=options.max_pixels)
        except MemoryError:
            raise
        except Exception as error:
            raise _xcf_error(source, error) from error
        for warning in layered.warnings:  # what the output cannot keep (GIMP 3 non-destructive filters)
            print(f"warning: {source}: {warning}", file=sys.stderr, flush=True)
        if task.layered:
            return layered
        depth = 8 if layered.precision == "u8" else 16  # a flattened 16-bit or float XCF gives a 16-bit PNG/TIFF
        return _FlatXcf(composite(layered, max_pixels=options.max_pixels, source=source), source, bit_depth=depth)
    from ..imageio.files import load_image

    return load_image(source, frame=task.frame, max_pixels=options.max_pixels)


def _xcf_error(source: Path, error: Exception) -> Exception:
    """What the batch reports for an XCF that does not read: the reader's reason when it gave
    one, else what is wrong with the file (not a bare ``IndexError: tuple index out of range``)."""
    try:
        with open(source, "rb") as stream:
            magic = stream.read(9)
    except OSError:
        magic = b"gimp xcf "
    if magic != b"gimp xcf ":
        return ImageIOError(f"Cannot read '{source.name}': it is not an XCF file (it does not start with 'gimp xcf').")
    text = str(error)
    if isinstance(error, NeurofiltersError):
        if not re.search(r"\b\w*(Error|error): ", text):
            return error  # the reader's own explanation (a pixel limit, a file without layers ...)
        detail = text.split(": ", 1)[-1]  # past "Cannot read the XCF file PATH"
    else:
        detail = f"{type(error).__name__}: {error}"
    return ImageIOError(
        f"Cannot read '{source.name}': the XCF file is damaged or truncated (its data ends or "
        f"contradicts itself where the reader expected more: {detail}); re-save it from GIMP."
    )


@dataclass
class _FlatXcf:
    """A flattened XCF, shaped like a ``LoadedImage`` for the encoder."""

    pixels: Any
    path: Path
    bit_depth: int = 8
    icc_profile: bytes | None = None
    exif: bytes | None = None
    format: str = "XCF"
    n_frames: int = 1


def _run_steps(
    pixels: Any,
    steps: Sequence[tuple[Any, dict[str, Any]]],
    seed: int,
    models: ModelCache,
    progress: ProgressCallback | None,
    emit: OutputSink | None = None,
    summary: list[str] | None = None,
) -> Any:
    from ..core.call import step_seed
    from ..core.errors import ParameterError
    from ..core.params import flag_worded
    from ..front import run

    for number, (spec, values) in enumerate(steps):
        report = None
        if progress is not None:
            report = lambda fraction, message, n=number: progress((n + fraction) / len(steps), message)  # noqa: E731
        try:
            pixels = run(spec, pixels, values, seed=step_seed(seed, number), models=models, progress=report, emit=emit,
                         report=None if summary is None else summary.append)
        except ParameterError as error:  # a value only the filter can judge: named by its flag, as typed
            raise flag_worded(error, spec.params, declared_only=True) from None
    return pixels


def compute(
    task: Task,
    decoded: Any,
    steps: Sequence[tuple[Any, dict[str, Any]]],
    models: ModelCache,
    progress: ProgressCallback | None = None,
    emit: OutputSink | None = None,
    summary: list[str] | None = None,
) -> Any:
    """Run every pipeline step on the decoded image (on each layer for per-layer XCF).

    Args:
        task: The task.
        decoded: What :func:`decode` returned.
        steps: ``(FilterSpec, values)`` per pipeline step.
        models: The process's model cache.
        progress: ``callback(fraction, message)`` for this file's progress.
        emit: Where the filters' extra outputs go (:func:`extra_output_writer`).
        summary: Where the filters' summary lines go (for the report).
    """
    if task.layered:
        from ..imageio.layered import apply_masks, map_layers, raster_layers

        count = len(raster_layers(decoded))  # the layers filtered (inside groups too)

        def one_layer(index: int, layer: Any) -> Any:
            report = None
            if progress is not None:
                report = lambda fraction, message: progress((index + fraction) / count, f"layer {index + 1}/{count} {message}")  # noqa: E731
            layer_emit = None if emit is None else (lambda name, pixels: emit(f"layer{index}-{name}", pixels))
            return _run_steps(layer.pixels, steps, file_seed(task.seed, f"layer{index}"), models, report, layer_emit, summary)

        filtered = map_layers(decoded, one_layer)
        return apply_masks(filtered) if task.masks == "apply" else filtered
    return _run_steps(decoded.pixels, steps, task.seed, models, progress, emit, summary)


def encode(task: Task, decoded: Any, result: Any, options: RunOptions) -> Path:
    """Write the result atomically to ``task.output``.

    Raises:
        ImageIOError: The output cannot be written (or is an input).
    """
    from ..imageio import ledger

    output = Path(task.output)
    protected = options.protected  # every input, indexed once per process: one O(1) check per output
    output.parent.mkdir(parents=True, exist_ok=True)
    if task.layered or task.fmt in ("ora", "xcf"):
        from ..imageio.layered import Layer, LayeredImage, write_ora
        from ..imageio.xcf import write_xcf

        layered = result
        if not task.layered:
            import numpy as np

            pixels = np.asarray(result, dtype=np.float32)
            if pixels.shape[2] == 3:
                pixels = np.concatenate([pixels, np.ones_like(pixels[..., :1])], axis=2)
            elif pixels.shape[2] != 4:  # grey results are RGB already (filters return RGB)
                raise ImageIOError(f"Cannot write {output}: unexpected result shape {pixels.shape}")
            layered = LayeredImage(pixels.shape[1], pixels.shape[0], (Layer(Path(task.source).stem, pixels),))
        writer = write_xcf if task.fmt == "xcf" else write_ora
        written = writer(output, layered, protect=protected)
        ledger.record(written)
        return written
    from ..imageio.files import save_image

    like = decoded  # a LoadedImage, or a flattened XCF (its bit depth; no ICC or EXIF)
    protected.check(output)  # (save_image's own protect= compares with each input in turn: slow for big batches)
    written = save_image(output, result, like=like, quality=options.quality)
    ledger.record(written)  # the plan decided replacing it (journal, --overwrite); the ledger knows it is ours
    return written


# -- worker processes ----------------------------------------------------------------
_WORKER: dict[str, Any] = {}


def _die_with_parent(parent: int, interval: float = 0.2) -> None:
    """Exit this worker as soon as the batch process that started it is gone (``kill -9`` included).

    A worker outliving its batch would write into OUTDIR without its lock or
    journal; what it left half-written is a temporary file the next run removes.
    """
    while True:
        time.sleep(interval)
        if os.getppid() != parent:
            os._exit(1)


def worker_init(options: RunOptions, pool_worker: bool = False) -> None:
    """Initializer of a worker process: resolve the filters once, keep one model cache.

    Args:
        options: The run's settings.
        pool_worker: A ``--jobs`` worker of the batch process (not a Ray actor,
            whose parent is Ray's): it dies with the batch process, and leaves
            Ctrl-C to it (the batch records what finished, then stops its workers).
    """
    if pool_worker:
        import signal
        import threading

        signal.signal(signal.SIGINT, signal.SIG_IGN)
        threading.Thread(target=_die_with_parent, args=(os.getppid(),), name="die-with-parent", daemon=True).start()
    _WORKER["options"] = options
    _WORKER["steps"] = resolve_steps(options.steps, options.max_pixels)
    _WORKER["models"] = ModelCache()


def worker_run(task: Task) -> Outcome:
    """Process one task completely inside a worker process."""
    options: RunOptions = _WORKER["options"]
    start = time.perf_counter()
    try:
        decoded = decode(task, options)
        compute_start = time.perf_counter()
        lines: list[str] = []
        result = compute(task, decoded, _WORKER["steps"], _WORKER["models"], emit=extra_output_writer(task, options), summary=lines)
        compute_seconds = time.perf_counter() - compute_start
        encode(task, decoded, result, options)
    except Exception as error:  # bad files, and filter bugs too: they must not kill the batch
        return Outcome(task.index, "failed", describe_error(error), time.perf_counter() - start)
    return Outcome(task.index, "ok", "", time.perf_counter() - start, compute_seconds, "\n".join(lines))


#: The temporary files :func:`~neurofilters.plugin_host.imageio.files.atomic_write` creates: ``.NAME.XXXXXXXX.tmp``
#: (``XXXXXXXX``: 8 lower-case hex digits).
_TEMPORARY_RE = re.compile(r"\..+\.[0-9a-f]{8}\.tmp", re.DOTALL)


def cleanup_temporaries(folders: Iterable[Path]) -> int:
    """Delete the temporary files a killed run left behind; return how many.

    Only the folders outputs are written to are looked at (not their
    sub-folders), and only files named exactly like the atomic writer's
    temporaries (``.NAME.XXXXXXXX.tmp``); anything else, a user's
    ``.notes.tmp`` included, is left alone.

    Args:
        folders: The folders of the planned outputs.
    """
    removed = 0
    for folder in sorted({os.fspath(f) for f in folders}):
        try:
            entries = list(os.scandir(folder))
        except OSError:  # not created yet
            continue
        for entry in entries:
            if not _TEMPORARY_RE.fullmatch(entry.name):
                continue
            try:
                if not entry.is_file(follow_symlinks=False):
                    continue
                os.unlink(entry.path)
                removed += 1
            except OSError:
                pass
    return removed
