"""Several equal-size files through one filter call (``--batch-size``), with a one-by-one fallback.

Files are grouped only when their decoded pixels have the same shape (height,
width and channels, so alpha is handled alike), have at most
:data:`BATCH_MAX_PIXELS` pixels, and a step of the pipeline declares
``batch_run`` (:class:`~neurofilters.plugin_host.FilterSpec`). The filter's
contract is that every image of a batch gets exactly what ``run`` gives it
alone, with the same per-file seed, so the grouping never changes an output:
a resumed run, which groups the remaining files differently, writes the
same bytes. When a batched call fails, the group's files are run again one by
one, so a bad file fails alone, with its own error.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from .execute import Outcome, Task, compute
from ..core.call import step_seed
from ..core.context import ModelCache, OutputSink, ProgressCallback

__all__ = [
    "BATCH_MAX_PIXELS",
    "ItemResult",
    "batch_key",
    "can_batch",
    "compute_group",
    "compute_items",
    "worker_run_group",
]

#: Larger images always run one by one: a group holds all its decoded images at
#: once, and networks gain little from batching large images (DeepDream's
#: default memory budget holds one image of 2.5 megapixels per call).
BATCH_MAX_PIXELS = 1 << 22

#: ``progress_for(tasks) -> callback or None``: the progress callback of a group of files.
ProgressFor = Callable[[Sequence[Task]], "ProgressCallback | None"]
#: ``sink_for(task)``: where one file's extra outputs go.
SinkFor = Callable[[Task], "OutputSink | None"]


@dataclass
class ItemResult:
    """The filter result of one file of a group.

    Attributes:
        result: The filtered pixels (``None`` when ``error`` is set).
        error: What went wrong for this file, or ``None``.
        seconds: This file's share of the compute time.
        summary: What the filters reported about this file's result, one line each.
    """

    result: Any
    error: BaseException | None
    seconds: float
    summary: str = ""


def can_batch(steps: Sequence[tuple[Any, dict[str, Any]]]) -> bool:
    """Whether a step of the pipeline declares ``batch_run``."""
    return any(getattr(spec, "batch_run", None) is not None for spec, _ in steps)


def batch_key(task: Task, decoded: Any, steps: Sequence[tuple[Any, dict[str, Any]]]) -> tuple[Any, ...] | None:
    """What files must share to be filtered together, or ``None`` when this file runs alone.

    Per-layer XCF files and images above :data:`BATCH_MAX_PIXELS` run alone;
    other files group by the shape and type of their decoded pixels.
    """
    if task.layered or not can_batch(steps):
        return None
    pixels = getattr(decoded, "pixels", None)
    shape, dtype = getattr(pixels, "shape", None), getattr(pixels, "dtype", None)
    if shape is None or dtype is None or len(shape) < 2 or shape[0] * shape[1] > BATCH_MAX_PIXELS:
        return None
    return (tuple(shape), str(dtype))


def _share(progress: ProgressCallback | None, start: float, width: float) -> ProgressCallback | None:
    if progress is None:
        return None
    return lambda fraction, message: progress(start + width * fraction, message)


def _apply_step(
    spec: Any,
    values: dict[str, Any],
    images: list[Any],
    seeds: list[int],
    models: ModelCache,
    progress: ProgressCallback | None,
    emits: Sequence[OutputSink | None],
    summaries: Sequence[list[str]] | None = None,
) -> list[Any]:
    """One pipeline step on every image: equal shapes together where the filter can, the rest alone."""
    from ..core.call import apply_filter_batch
    from ..front import run

    results: list[Any] = [None] * len(images)
    groups: dict[tuple[Any, ...], list[int]] = {}
    for index, image in enumerate(images):
        key = (tuple(image.shape), str(image.dtype)) if spec.batch_run is not None else ("alone", index)
        groups.setdefault(key, []).append(index)
    done = 0
    for members in groups.values():
        report = _share(progress, done / len(images), len(members) / len(images))
        if len(members) > 1:
            batch = apply_filter_batch(spec, [images[i] for i in members], values, seeds=[seeds[i] for i in members],
                                       models=models, progress=report, emits=[emits[i] for i in members],
                                       reports=None if summaries is None else [summaries[i].append for i in members])
            for index, result in zip(members, batch):
                results[index] = result
        else:
            index = members[0]
            results[index] = run(spec, images[index], values, seed=seeds[index], models=models, progress=report,
                                 emit=emits[index], report=None if summaries is None else summaries[index].append)
        done += len(members)
    return results


def compute_group(
    tasks: Sequence[Task],
    decodeds: Sequence[Any],
    steps: Sequence[tuple[Any, dict[str, Any]]],
    models: ModelCache,
    progress: ProgressCallback | None = None,
    sink_for: SinkFor | None = None,
    summaries: Sequence[list[str]] | None = None,
) -> list[Any]:
    """Every pipeline step on a group of files of one shape (the batched :func:`~neurofilters.plugin_host.batch.execute.compute`).

    Each file gets the seeds :func:`~neurofilters.plugin_host.batch.execute.compute` gives it.

    Raises:
        Exception: Whatever a filter raises (the caller falls back to one by one).
    """
    images = [decoded.pixels for decoded in decodeds]
    emits = [None if sink_for is None else sink_for(task) for task in tasks]
    for number, (spec, values) in enumerate(steps):
        seeds = [step_seed(task.seed, number) for task in tasks]
        report = _share(progress, number / len(steps), 1 / len(steps))
        images = _apply_step(spec, values, images, seeds, models, report, emits, summaries)
    return images


def compute_items(
    tasks: Sequence[Task],
    decodeds: Sequence[Any],
    steps: Sequence[tuple[Any, dict[str, Any]]],
    models: ModelCache,
    progress_for: ProgressFor,
    sink_for: SinkFor | None = None,
) -> list[ItemResult]:
    """Filter a group of files: together when there are several, one by one if that fails.

    A single file goes through :func:`~neurofilters.plugin_host.batch.execute.compute`
    unchanged. For several, a failure of the batched call (a bad file, memory)
    makes every file of the group run alone, so each gets its own result or
    error; the group's compute time is shared equally between its files.

    Args:
        tasks: The files, with ``decodeds`` from :func:`~neurofilters.plugin_host.batch.execute.decode`.
        decodeds: Their decoded images.
        steps: ``(FilterSpec, values)`` per pipeline step.
        models: The process's model cache.
        progress_for: ``progress_for(tasks)``: the progress callback for those files.
        sink_for: ``sink_for(task)``: where that file's extra outputs go.

    Returns:
        One :class:`ItemResult` per file, in order.

    Raises:
        KeyboardInterrupt, SystemExit: Passed on (the run stops).
    """
    if len(tasks) > 1:
        start = time.perf_counter()
        try:
            lines: list[list[str]] = [[] for _ in tasks]
            results = compute_group(tasks, decodeds, steps, models, progress_for(tasks), sink_for, lines)
        except (KeyboardInterrupt, SystemExit):
            raise
        except BaseException:  # noqa: BLE001  # retried one by one: each file gets its own outcome
            pass
        else:
            share = (time.perf_counter() - start) / len(tasks)
            return [ItemResult(result, None, share, "\n".join(text)) for result, text in zip(results, lines)]
    items = []
    for task, decoded in zip(tasks, decodeds):
        start = time.perf_counter()
        text: list[str] = []
        try:
            result = compute(task, decoded, steps, models, progress_for([task]),
                             None if sink_for is None else sink_for(task), text)
        except (KeyboardInterrupt, SystemExit):
            raise
        except BaseException as error:  # noqa: BLE001  # reported for this file only
            items.append(ItemResult(None, error, time.perf_counter() - start))
            continue
        items.append(ItemResult(result, None, time.perf_counter() - start, "\n".join(text)))
    return items


def worker_run_group(tasks: Sequence[Task]) -> list[Outcome]:
    """Process several files completely inside a worker process, equal shapes filtered together.

    One file goes through :func:`~neurofilters.plugin_host.batch.execute.worker_run` unchanged.
    Every file gets its own outcome: a file that cannot be read, filtered or
    written fails alone.
    """
    from .execute import _WORKER, decode, describe_error, encode, extra_output_writer, worker_run

    if len(tasks) == 1:
        return [worker_run(tasks[0])]
    options, steps, models = _WORKER["options"], _WORKER["steps"], _WORKER["models"]
    outcomes: dict[int, Outcome] = {}
    groups: dict[Any, list[tuple[Task, Any, float]]] = {}
    for task in tasks:
        start = time.perf_counter()
        try:
            decoded = decode(task, options)
        except Exception as error:  # a bad file fails alone
            outcomes[task.index] = Outcome(task.index, "failed", describe_error(error), time.perf_counter() - start)
            continue
        key = batch_key(task, decoded, steps)
        groups.setdefault(key if key is not None else ("alone", task.index), []).append(
            (task, decoded, time.perf_counter() - start)
        )
    for members in groups.values():
        items = compute_items([m[0] for m in members], [m[1] for m in members], steps, models, lambda _: None,
                              lambda task: extra_output_writer(task, options))
        for (task, decoded, seconds), item in zip(members, items):
            seconds += item.seconds
            if item.error is not None:
                outcomes[task.index] = Outcome(task.index, "failed", describe_error(item.error), seconds)
                continue
            start = time.perf_counter()
            try:
                encode(task, decoded, item.result, options)
            except Exception as error:
                outcomes[task.index] = Outcome(task.index, "failed", describe_error(error), seconds + time.perf_counter() - start)
                continue
            outcomes[task.index] = Outcome(task.index, "ok", "", seconds + time.perf_counter() - start, item.seconds, item.summary)
    return [outcomes[task.index] for task in tasks]
