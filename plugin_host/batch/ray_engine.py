"""The Ray engine: the same batch, with files spread over actors of a Ray cluster.

Each actor holds one model cache (the model loads once per actor) and
processes whole files exactly like a local worker process: the same decode,
filter, atomic write. The driver (the ``neurofilters batch`` process) keeps the
journal and the report, so resume and ``--report`` work unchanged. Inputs and
OUTDIR must be reachable at the same paths from every node (a shared file
system) when the cluster has more than one machine.

When an actor dies (its node lost, its process killed), Ray restarts it and
the files it held are retried, each alone, once; a file that kills an actor
twice is reported as failed.

Ray is an optional dependency: ``pip install 'neurofilters[ray]'``.
"""

from __future__ import annotations

import os
import shutil
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from .execute import Outcome, RunOptions, Task, worker_init, worker_run
from ..core.errors import ParameterError

__all__ = ["run_tasks_ray", "ray_available"]


def ray_available() -> bool:
    """Whether Ray can be imported."""
    import importlib.util

    return importlib.util.find_spec("ray") is not None


class _BatchActor:
    """A Ray actor: one registry lookup and one model cache for its whole life."""

    def __init__(self, options: RunOptions) -> None:
        worker_init(options)

    def run(self, task: Task) -> Outcome:
        """Process one file (decode, filter, atomic write)."""
        return worker_run(task)

    def pid(self) -> int:
        """The actor's process id (for tests and diagnostics)."""
        return os.getpid()


def _init_ray(address: str | None, actors: int, temp_dir: Path | None = None) -> Any:
    """Import Ray and start (``address=None``: a local instance with its files in ``temp_dir``) or join a cluster.

    Raises:
        ParameterError: Ray is not installed.
    """
    try:
        import ray
    except ImportError:
        raise ParameterError(
            "--engine ray needs Ray, which is not installed. Received: --engine ray; "
            "run \"pip install 'neurofilters[ray]'\" or use --engine local.",
            param="engine",
            value="ray",
        ) from None
    if not ray.is_initialized():
        options: dict[str, Any] = {"address": address, "ignore_reinit_error": True, "log_to_driver": False,
                                   "include_dashboard": False, "configure_logging": False}
        if address is None:
            options["num_cpus"] = max(actors, 1)
            repo = str(Path(__file__).resolve().parents[1])
            paths = [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]
            options["runtime_env"] = {"env_vars": {"PYTHONPATH": os.pathsep.join([*paths, repo])}}
            if temp_dir is not None:
                options["_temp_dir"] = os.fspath(temp_dir)  # its session folder, logs and sockets: removed at the end
        ray.init(**options)
    return ray


#: Longest path of the folder given to Ray: its sockets go ``/session_<date>_<time>_<pid>/sockets/plasma_store``
#: (about 64 bytes) below it, and a unix socket's path has at most 107.
_RAY_TEMP_MAX = 40
#: Tries of a file whose actor Ray reports as temporarily unavailable (restarting after a death), and the pause
#: before each: such a try is no second death (on a loaded CI run, 2026-12-07, a file's retry met its restarting
#: actor and was failed as "died twice"; how long a restart takes was not measured).
_UNAVAILABLE_TRIES = 60
_UNAVAILABLE_PAUSE_S = 0.5


def _ray_temp_dir(address: str | None) -> Path | None:
    """The folder a local Ray instance keeps its session in (instead of ``/tmp/ray``), or ``None``.

    It is made in ``RAY_TMPDIR`` when set, else in the system's temporary folder. ``None`` when joining a
    cluster (its head decides), when Ray already runs in this process, or when no short enough folder can
    be made (Ray's default is used then).
    """
    if address is not None or os.environ.get("RAY_ADDRESS") or ("ray" in sys.modules and sys.modules["ray"].is_initialized()):
        return None
    from ..core.lifecycle import owned_temporary_folder

    try:
        folder = owned_temporary_folder("ray", os.environ.get("RAY_TMPDIR") or None)
    except OSError:
        return None
    if len(os.fsencode(folder)) > _RAY_TEMP_MAX:
        folder.rmdir()
        return None
    return folder


def _remove_ray_temp_dir(folder: Path | None) -> None:
    """Remove the local instance's folder once it has shut down (its last processes may still be closing logs)."""
    if folder is None:
        return
    for _ in range(20):
        shutil.rmtree(folder, ignore_errors=True)
        if not folder.exists():
            return
        time.sleep(0.25)


def run_tasks_ray(
    tasks: list[Task],
    options: RunOptions,
    finish: Callable[[Task, Outcome], None],
    *,
    actors: int,
    address: str | None = None,
    on_started: Callable[[Task], None] | None = None,
) -> None:
    """Run ``tasks`` on Ray actors, calling ``finish(task, outcome)`` for each.

    Args:
        tasks: Files to process.
        options: Filters and encoding settings.
        finish: Called in the driver for every finished task (journal, progress).
        actors: Number of actors (``--jobs``).
        address: Ray cluster address (``--address``); ``None`` starts a local instance.
        on_started: Called before a task is submitted (the journal's "started" line).

    Raises:
        ParameterError: Ray is not installed, or the cluster cannot be reached.
    """
    temp_dir = _ray_temp_dir(address)
    try:
        ray = _init_ray(address, actors, temp_dir)
        try:
            _dispatch(ray, tasks, options, finish, actors, on_started)
        finally:
            ray.shutdown()
    finally:
        _remove_ray_temp_dir(temp_dir)


def _dispatch(
    ray: Any,
    tasks: list[Task],
    options: RunOptions,
    finish: Callable[[Task, Outcome], None],
    actors: int,
    on_started: Callable[[Task], None] | None,
) -> None:
    from ray.exceptions import ActorUnavailableError, RayActorError, WorkerCrashedError

    gpus = 1 if ray.cluster_resources().get("GPU", 0) >= actors else 0
    remote_actor = ray.remote(num_cpus=1, num_gpus=gpus, max_restarts=-1, max_task_retries=0)(_BatchActor)
    pool = [remote_actor.remote(options) for _ in range(max(actors, 1))]
    pending = list(reversed(tasks))
    deaths: dict[int, int] = {}
    unavailable: dict[int, int] = {}
    running: dict[Any, tuple[Task, int]] = {}
    busy = [0] * len(pool)

    def submit(task: Task, slot: int) -> None:
        if on_started is not None:
            on_started(task)
        running[pool[slot].run.remote(task)] = (task, slot)
        busy[slot] += 1

    while pending or running:
        for slot in range(len(pool)):
            # a file that was on an actor when it died runs alone on its actor
            suspect_here = any(t.index in deaths and s == slot for t, s in running.values())
            while pending and busy[slot] < 2 and not suspect_here:
                if pending[-1].index in deaths and busy[slot]:
                    break
                task = pending.pop()
                submit(task, slot)
                suspect_here = task.index in deaths
        if not running:
            continue
        done, _ = ray.wait(list(running), num_returns=1)
        for ref in done:
            task, slot = running.pop(ref)
            busy[slot] -= 1
            try:
                outcome = ray.get(ref)
            except ActorUnavailableError:  # the actor is restarting: Ray says it may be available later
                unavailable[task.index] = unavailable.get(task.index, 0) + 1
                if unavailable[task.index] > _UNAVAILABLE_TRIES:
                    finish(task, Outcome(task.index, "failed", f"the Ray actor stayed unavailable for {_UNAVAILABLE_TRIES} tries"))
                else:
                    time.sleep(_UNAVAILABLE_PAUSE_S)
                    pending.append(task)
                continue
            except (RayActorError, WorkerCrashedError) as error:
                deaths[task.index] = deaths.get(task.index, 0) + 1
                if deaths[task.index] >= 2:
                    finish(task, Outcome(task.index, "failed", f"the Ray actor died twice while processing this file ({type(error).__name__})"))
                else:
                    pending.append(task)
                continue
            except Exception as error:  # a task-level failure Ray reports
                outcome = Outcome(task.index, "failed", f"Ray task failed: {type(error).__name__}: {error}")
            finish(task, outcome)
    for actor in pool:
        ray.kill(actor)
