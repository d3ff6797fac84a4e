"""Running a planned batch: a prefetching pipeline in one process, or worker processes.

With one job, a reader thread decodes ahead, the main thread runs the filter
and a writer thread encodes, renames and journals behind it, so decoding and
encoding overlap the filter compute. With ``jobs > 1``, ``spawn``-ed worker
processes each keep one :class:`ModelCache` and process whole files; the
main process journals and reports.

With ``batch_size > 1`` and a filter that declares ``batch_run``, consecutive
files of equal shape are filtered together (:mod:`neurofilters.plugin_host.batch.group`);
each file is still journaled, timed, written and reported on its own.
"""

from __future__ import annotations

import json
import os
import queue
import threading
import time
from collections.abc import Callable
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

from .execute import Outcome, RunOptions, Task, decode, describe_error, encode, extra_output_writer, resolve_steps, worker_init
from .group import batch_key, can_batch, compute_items, worker_run_group
from .journal import Journal
from .plan import Plan
from ..core.context import ModelCache

__all__ = ["BatchResult", "run_plan", "write_report", "summary_text"]

_DONE = object()


@dataclass
class BatchResult:
    """Per-entry outcomes of a run, in plan order."""

    outcomes: dict[int, Outcome] = field(default_factory=dict)
    wall_seconds: float = 0.0
    interrupted: bool = False

    @property
    def compute_seconds(self) -> float:
        """Sum of the pure filter compute of every file."""
        return sum(o.compute_seconds for o in self.outcomes.values())


class _Tracker:
    """Counts, journal lines and the progress bar, shared by the runner's threads."""

    def __init__(self, total: int, journal: Journal, bar: Callable[[float, str], None] | None) -> None:
        self.total = total
        self.journal = journal
        self.bar = bar
        self.lock = threading.Lock()
        self.result = BatchResult()
        self.failed = 0
        self.computed = 0  # files whose filter finished (ahead of their encoding)

    def partial(self, task: Task, fraction: float, message: str, count: int = 1) -> None:
        """Progress inside the file (or the ``count`` files from ``task`` on) being filtered (one-process engine)."""
        if self.bar is None:
            return
        with self.lock:
            done = len(self.result.outcomes)
            failed = f", {self.failed} failed" if self.failed else ""
            overall = (max(done, self.computed) + fraction * count) / self.total if self.total else 1.0
            name = Path(task.source).name + (f" (+{count - 1})" if count > 1 else "")
            self.bar(min(overall, 1.0), f"{done}/{self.total}{failed} {name} {message}".rstrip())

    def finish(self, task: Task, outcome: Outcome) -> None:
        if outcome.status == "ok":
            try:
                self.journal.record(Path(task.output), task.params_hash, Path(task.source))
            except OSError as error:
                outcome.status, outcome.error = "failed", f"cannot write the journal: {describe_error(error)}"
        with self.lock:
            self.result.outcomes[task.index] = outcome
            self.failed += outcome.status != "ok"
            done = len(self.result.outcomes)
            if self.bar is not None:
                failed = f", {self.failed} failed" if self.failed else ""
                self.bar(done / self.total if self.total else 1.0, f"{done}/{self.total}{failed} {Path(task.source).name}")


def _run_threads(
    tasks: list[Task], options: RunOptions, tracker: _Tracker, prefetch: int, stop: threading.Event, batch_size: int = 1
) -> None:
    steps = resolve_steps(options.steps, options.max_pixels)
    models = ModelCache()
    batching = batch_size > 1 and can_batch(steps)
    decoded_q: queue.Queue[Any] = queue.Queue(maxsize=max(1, prefetch))
    encode_q: queue.Queue[Any] = queue.Queue(maxsize=max(1, prefetch))

    def reader() -> None:
        for task in tasks:
            if stop.is_set():
                break
            start = time.perf_counter()
            try:
                item: Any = decode(task, options)
                error = None
                tracker.journal.start(Path(task.output), task.params_hash, Path(task.source))
            except BaseException as exc:  # reported per file
                item, error = None, exc
            decoded_q.put((task, item, error, time.perf_counter() - start))
        decoded_q.put(_DONE)

    def writer() -> None:
        while True:
            job = encode_q.get()
            if job is _DONE:
                return
            task, decoded, result, elapsed, compute_seconds, summary = job
            start = time.perf_counter()
            try:
                encode(task, decoded, result, options)
                outcome = Outcome(task.index, "ok", "", elapsed + time.perf_counter() - start, compute_seconds, summary)
            except BaseException as exc:
                outcome = Outcome(task.index, "failed", describe_error(exc), elapsed + time.perf_counter() - start)
            tracker.finish(task, outcome)

    def progress_for(group: Any) -> Callable[[float, str], None]:
        return lambda fraction, message: tracker.partial(group[0], fraction, message, len(group))

    def filter_group(group: list[tuple[Task, Any, float]]) -> None:
        """Filter decoded files (one, or several of one shape) and queue each result for writing."""
        if not group:
            return
        items = compute_items([g[0] for g in group], [g[1] for g in group], steps, models, progress_for,
                              lambda task: extra_output_writer(task, options))
        for (task, decoded, elapsed), item in zip(group, items):
            tracker.computed += 1
            if item.error is not None:
                tracker.finish(task, Outcome(task.index, "failed", describe_error(item.error), elapsed + item.seconds))
            else:
                encode_q.put((task, decoded, item.result, elapsed + item.seconds, item.seconds, item.summary))

    threads = [threading.Thread(target=reader, daemon=True, name="batch-read"),
               threading.Thread(target=writer, daemon=True, name="batch-write")]
    for thread in threads:
        thread.start()
    try:
        group: list[tuple[Task, Any, float]] = []
        group_key: Any = None
        while True:
            job = decoded_q.get()
            if job is _DONE:
                break
            task, decoded, error, elapsed = job
            if error is not None:
                tracker.computed += 1
                tracker.finish(task, Outcome(task.index, "failed", describe_error(error), elapsed))
                continue
            key = batch_key(task, decoded, steps) if batching else None
            if group and (key is None or key != group_key):
                filter_group(group)
                group = []
            if key is None:
                filter_group([(task, decoded, elapsed)])
                continue
            group.append((task, decoded, elapsed))
            group_key = key
            if len(group) >= batch_size:
                filter_group(group)
                group = []
        filter_group(group)
    finally:
        stop.set()
        while True:  # unblock the reader if it waits on a full queue
            try:
                decoded_q.get_nowait()
            except queue.Empty:
                break
        encode_q.put(_DONE)
        threads[1].join()


def _run_processes(tasks: list[Task], options: RunOptions, tracker: _Tracker, jobs: int, batch_size: int = 1) -> None:
    """Run tasks in ``jobs`` spawned workers; a worker that dies fails only its own files.

    With ``batch_size > 1`` (and a filter that can batch) each worker gets
    up to that many consecutive files at once and filters equal shapes together.
    When a worker process dies (killed, out of memory), the pool breaks and
    every file it held is retried once, alone, in a fresh pool; a file that
    breaks a pool twice is reported as failed.
    """
    import multiprocessing
    from concurrent.futures.process import BrokenProcessPool

    context = multiprocessing.get_context("spawn")
    if batch_size > 1 and not can_batch(resolve_steps(options.steps)):
        batch_size = 1
    pending = list(reversed(tasks))
    deaths: dict[int, int] = {}
    started: dict[int, int] = {}  # task index -> when it was handed to a worker (ns)
    submitted: dict[int, Task] = {}

    def died(task: Task, error: BaseException) -> None:
        deaths[task.index] = deaths.get(task.index, 0) + 1
        if deaths[task.index] >= 2:
            tracker.finish(task, Outcome(task.index, "failed", f"a worker process died twice while processing this file ({error})"))
        else:
            pending.append(task)

    while pending:
        broken = False
        pool = ProcessPoolExecutor(max_workers=jobs, mp_context=context, initializer=worker_init, initargs=(options, True))
        running: dict[Future[list[Outcome]], list[Task]] = {}
        try:
            while (pending or running) and not broken:
                while pending and len(running) < 2 * jobs:
                    # a file that was in a pool when a worker died runs alone, so only the culprit fails
                    if any(t.index in deaths for chunk in running.values() for t in chunk) or (
                        pending[-1].index in deaths and running
                    ):
                        break
                    chunk = [pending.pop()]
                    # near the end, smaller chunks keep every worker busy
                    size = min(batch_size, max(1, -(-(len(pending) + 1) // jobs)))
                    if chunk[0].index not in deaths:
                        while len(chunk) < size and pending and pending[-1].index not in deaths:
                            chunk.append(pending.pop())
                    for task in chunk:
                        started[task.index] = time.time_ns()
                        submitted[task.index] = task
                        tracker.journal.start(Path(task.output), task.params_hash, Path(task.source))
                    try:
                        running[pool.submit(worker_run_group, chunk)] = chunk
                    except BrokenProcessPool:
                        pending.extend(reversed(chunk))
                        broken = True
                        break
                if not running:
                    break
                finished, _ = wait(running, return_when=FIRST_COMPLETED)
                for future in finished:
                    chunk = running.pop(future)
                    try:
                        outcomes = future.result()
                    except BrokenProcessPool as error:
                        broken = True
                        for task in chunk:
                            died(task, error)
                        continue
                    except Exception as error:
                        outcomes = [Outcome(t.index, "failed", f"worker process failed: {describe_error(error)}") for t in chunk]
                    for task, outcome in zip(chunk, outcomes):
                        tracker.finish(task, outcome)
            for future, chunk in running.items():  # a broken pool: what it still held is retried
                try:
                    outcomes = future.result()
                except Exception as error:
                    for task in chunk:
                        died(task, error)
                    continue
                for task, outcome in zip(chunk, outcomes):
                    tracker.finish(task, outcome)
            running.clear()
        except KeyboardInterrupt:
            _stop_workers(pool)
            # outputs are renamed into place whole, after their extra outputs: one that is
            # there was finished by a worker whose answer Ctrl-C cut off; record it
            # (every task handed out is looked at: Ctrl-C may have come between taking a
            # finished chunk off `running` and recording it)
            for task in submitted.values():
                if task.index not in tracker.result.outcomes and _written_since(task, started[task.index]):
                    tracker.finish(task, Outcome(task.index, "ok"))
            running.clear()
            broken = True
            raise
        finally:
            for future in running:
                future.cancel()
            pool.shutdown(wait=not broken, cancel_futures=True)


def _stop_workers(pool: ProcessPoolExecutor) -> None:
    """Kill a pool's worker processes now (Ctrl-C: the user is not waiting for the files in work)."""
    for process in list((getattr(pool, "_processes", None) or {}).values()):
        try:
            process.kill()
            process.join(5)
        except (OSError, ValueError, AttributeError):
            pass


def _written_since(task: Task, since_ns: int) -> bool:
    """Whether ``task``'s output was (completely) written after ``since_ns``."""
    try:
        return os.stat(task.output).st_mtime_ns >= since_ns - 50_000_000  # file times lag the clock by a tick
    except OSError:
        return False


def run_plan(
    plan: Plan,
    options: RunOptions,
    journal: Journal,
    *,
    jobs: int = 1,
    prefetch: int = 2,
    progress: Callable[[float, str], None] | None = None,
    engine: str = "local",
    address: str | None = None,
    batch_size: int = 1,
) -> BatchResult:
    """Run every ``todo`` task of ``plan``.

    Args:
        plan: The planned batch.
        options: Filters and encoding settings.
        journal: The OUTDIR journal (finished outputs are appended to it).
        jobs: Worker processes (1: threads in this process).
        prefetch: Images decoded ahead (and results queued for encoding).
        progress: ``callback(fraction, message)``.
        engine: ``local`` (threads or worker processes) or ``ray`` (actors).
        address: Ray cluster address (``None``: start a local Ray instance).
        batch_size: Files of equal shape filtered in one call, where the
            filter declares ``batch_run`` (1: one by one; the Ray engine
            always runs files one by one).

    Returns:
        Outcomes by task index; ``interrupted`` is set on Ctrl-C (the
        outcomes then hold what finished).
    """
    tasks = plan.todo
    tracker = _Tracker(len(tasks), journal, progress)
    start = time.perf_counter()
    stop = threading.Event()
    if tasks and (engine == "ray" or jobs > 1):
        # What every worker would fail on (a bad --noise image, an unknown model file) is found here, once, with the
        # local engine's message and exit code, instead of as every actor's death ("died twice") for every file.
        resolve_steps(options.steps, options.max_pixels)
    try:
        if tasks and engine == "ray":
            from .ray_engine import run_tasks_ray

            run_tasks_ray(tasks, options, tracker.finish, actors=jobs, address=address,
                          on_started=lambda t: journal.start(Path(t.output), t.params_hash, Path(t.source)))
        elif tasks and jobs > 1:
            _run_processes(tasks, options, tracker, jobs, batch_size)
        elif tasks:
            _run_threads(tasks, options, tracker, prefetch, stop, batch_size)
    except KeyboardInterrupt:
        tracker.result.interrupted = True
    finally:
        journal.close()
    tracker.result.wall_seconds = time.perf_counter() - start
    return tracker.result


def report_rows(plan: Plan, result: BatchResult | None) -> list[dict[str, Any]]:
    """One JSON-ready row per plan entry."""
    rows = []
    for entry in plan.entries:
        task = entry.task
        status, error, seconds, summary = entry.status, entry.error, 0.0, ""
        if task is not None and status == "todo":
            outcome = result.outcomes.get(task.index) if result is not None else None
            if outcome is None:
                status = "planned" if result is None else "not run"
            else:
                status, error, seconds = outcome.status, outcome.error, round(outcome.seconds, 4)
                summary = outcome.summary
        rows.append(
            {
                "input": str(entry.source.path),
                "output": entry.output,
                "status": status,
                "error": error or None,
                "summary": summary or None,
                "seconds": seconds,
                "params_hash": task.params_hash if task is not None else None,
                "seed": task.seed if task is not None else None,
                "frame": task.frame if task is not None else None,
            }
        )
    return rows


def write_report(path: Path, header: dict[str, Any], rows: list[dict[str, Any]], guard: Any = None) -> None:
    """Write the JSON report atomically, through ``guard`` (a ``WriteGuard``: never over an input or an output)."""
    counts: dict[str, int] = {}
    for row in rows:
        counts[row["status"]] = counts.get(row["status"], 0) + 1
    data = {**header, "counts": counts, "files": rows}
    from ..imageio.guard import WriteGuard

    if guard is None:
        guard = WriteGuard()
    guard.mkdir(path.parent, what="report's folder")
    guard.write_text(path, json.dumps(data, indent=2) + "\n", what="report")


def summary_text(rows: list[dict[str, Any]], wall: float, *, stream: TextIO | None = None) -> str:
    """The closing summary: counts, time, and one line per failure."""
    counts: dict[str, int] = {}
    for row in rows:
        counts[row["status"]] = counts.get(row["status"], 0) + 1
    parts = [f"{counts.get('ok', 0)} done"]
    if counts.get("skipped"):
        parts.append(f"{counts['skipped']} skipped (already done)")
    if counts.get("failed"):
        parts.append(f"{counts['failed']} failed")
    if counts.get("not run"):
        parts.append(f"{counts['not run']} not run")
    lines = [f"batch: {len(rows)} outputs: {', '.join(parts)} in {wall:.1f} s"]
    for row in rows:
        if row["status"] == "failed":
            lines.append(f"  FAILED {row['input']}: {row['error']}")
    text = "\n".join(lines)
    if stream is not None:
        print(text, file=stream)
    return text
