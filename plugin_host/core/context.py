"""What a running filter gets besides its image and parameters."""

from __future__ import annotations

import re
import threading
from collections.abc import Callable, Iterable
from typing import Any

from .errors import FilterCancelled, ModelUnavailableError, NeurofiltersError
from .quiet import native_stderr_silenced

__all__ = ["FilterContext", "ModelCache", "OutputSink", "ProgressCallback", "SummarySink", "OUTPUT_NAME_RE"]

#: ``callback(fraction, message)`` with ``fraction`` in [0, 1].
ProgressCallback = Callable[[float, str], None]
#: ``sink(line)``: where the lines of a run's summary go as the filter reports them.
SummarySink = Callable[[str], None]
#: ``sink(name, pixels)``: where a filter's extra outputs go (the host writes them).
OutputSink = Callable[[str, Any], None]
#: Names of extra outputs: they become parts of file names and GIMP layer names.
OUTPUT_NAME_RE = re.compile(r"^[a-z0-9][a-z0-9_-]{0,63}$")


class ModelCache:
    """Loaded models by name, shared by every filter call of one process.

    The batch runner and the GIMP worker keep one cache alive, so a model is
    loaded once per process, not once per image.
    """

    def __init__(self, resolve: Callable[[str], Any] | None = None) -> None:
        """Create an empty cache.

        Args:
            resolve: ``resolve(name) -> ModelSpec``; defaults to the process
                registry's :meth:`~neurofilters.plugin_host.Registry.get_model`.
        """
        self._resolve = resolve
        self._models: dict[tuple[str, str], Any] = {}
        self._keys: dict[str, tuple[str, str]] = {}  # name as typed -> entry
        self._lock = threading.Lock()

    def get(self, name: str) -> Any:
        """Return the loaded model ``name``, loading it on first use.

        Raises:
            RegistryError: No plugin knows the name.
            ModelUnavailableError: The model's weights cannot be loaded.
        """
        with self._lock:
            key = self._keys.get(name)
            if key is None:
                if self._resolve is None:
                    from .registry import get_registry

                    self._resolve = get_registry().get_model
                spec = self._resolve(name)
                # An alias and the model's own name share one entry; two model files
                # with the same stem do not (their sources differ).
                key = (spec.name, spec.source)
                if key not in self._models:
                    try:
                        with native_stderr_silenced():
                            self._models[key] = spec.loader()()
                    except NeurofiltersError:
                        raise
                    except Exception as error:
                        raise ModelUnavailableError(
                            f"Loading model {name!r} failed: {type(error).__name__}: {error}"
                        ) from error
                self._keys[name] = key
            return self._models[key]

    def __contains__(self, name: object) -> bool:
        return name in self._keys

    def clear(self) -> None:
        """Drop every loaded model."""
        with self._lock:
            self._models.clear()
            self._keys.clear()


class FilterContext:
    """Progress reporting, cancellation, the seed and the model cache of one filter call.

    Attributes:
        seed: The run's seed; filters derive all randomness from it.
        models: The process's :class:`ModelCache`.
        alpha: The image's alpha channel (float32 ``H x W`` in [0, 1]) or
            ``None``. The host puts alpha back untouched after the filter;
            filters may read it (e.g. to use it as a mask) but never return it.
        outputs: Extra outputs emitted while no sink was given, by name.
        summary: The lines the filter reported with :meth:`report`, in order.
        given: The parameters the user set explicitly (CLI flags typed, keys
            written in a batch pipeline or ``--params`` file, keyword arguments
            of the Python API, what the GIMP plug-in says was set), whatever
            their values; ``None`` when the caller did not say (a context made
            by hand). Information only: the host has already applied the
            filter's declared presets (``FilterSpec.presets``, through
            :func:`~.call.resolve_presets`) before the filter runs, so a filter
            reads final values and needs no preset logic of its own. A filter
            may still use it for an ``auto`` setting of its own.
    """

    def __init__(
        self,
        *,
        seed: int = 0,
        progress: ProgressCallback | None = None,
        cancel_event: threading.Event | None = None,
        models: ModelCache | None = None,
        alpha: Any | None = None,
        emit: OutputSink | None = None,
        given: Iterable[str] | None = None,
        report: SummarySink | None = None,
    ) -> None:
        self.seed = int(seed)
        self.given: frozenset[str] | None = None if given is None else frozenset(given)
        self.alpha = alpha
        self.outputs: dict[str, Any] = {}
        self.summary: list[str] = []
        self._report = report
        self._emit = emit
        self._progress = progress
        self._cancel_event = cancel_event or threading.Event()
        self.models = models if models is not None else ModelCache()

    def progress(self, fraction: float, message: str = "") -> None:
        """Report progress and honour a pending cancellation.

        Args:
            fraction: Share of the work done, in [0, 1].
            message: What is happening now (``"octave 2/4"``).

        Raises:
            FilterCancelled: The user asked to stop.
        """
        self.check_cancelled()
        if self._progress is not None:
            self._progress(min(max(float(fraction), 0.0), 1.0), message)

    def report(self, line: str) -> None:
        """Add a line to the run's summary: what the result shows, a number to judge it by.

        Progress messages are transient; a summary line stays: the command line
        prints it above the progress bar (where it remains), the Python API
        returns it in ``Result.summary``, the batch runner writes it into its
        report. One or two lines per run (``lite0 sees: flamingo 0.93``).

        Args:
            line: One line of text (no newline).
        """
        line = " ".join(str(line).split())
        self.summary.append(line)
        if self._report is not None:
            self._report(line)

    def emit(self, name: str, pixels: Any) -> None:
        """Hand an extra output (a frame, a map, a learned noise) to the host, which writes it.

        Filters never write files: the command line writes extra outputs next
        to the output (``OUT-NAME.png``), the batch runner under its output
        folder, the GIMP plug-in as new layers, and the Python API returns them
        in ``Result.outputs``.

        Args:
            name: Lowercase letters, digits, ``-`` and ``_`` (``frame-00003``,
                ``heatmap``); unique within one run.
            pixels: float32 ``H x W x C`` in [0, 1], C = 1 or 3.

        Raises:
            NeurofiltersError: A malformed name or array (a filter bug).
        """
        import numpy as np

        if not isinstance(name, str) or not OUTPUT_NAME_RE.match(name):
            raise NeurofiltersError(
                f"Extra output names must be lowercase letters, digits, '-' and '_'. Received: name={name!r}"
            )
        array = np.asarray(pixels, dtype=np.float32)
        if array.ndim == 2:
            array = array[:, :, None]
        if array.ndim != 3 or array.shape[2] not in (1, 3) or not np.all(np.isfinite(array)):
            raise NeurofiltersError(
                f"Extra output {name!r} must be a finite H x W x C array with C = 1 or 3. Received: shape={array.shape}"
            )
        array = np.clip(array, 0.0, 1.0)
        if self._emit is None:
            self.outputs[name] = array
        else:
            self._emit(name, array)

    def check_cancelled(self) -> None:
        """Raise :class:`FilterCancelled` if the user asked to stop."""
        if self._cancel_event.is_set():
            raise FilterCancelled("Cancelled by the user.")

    def cancel(self) -> None:
        """Ask the running filter to stop at its next progress report."""
        self._cancel_event.set()

    def rng(self, stream: int = 0) -> Any:
        """A NumPy generator seeded from the run's seed (and a stream number)."""
        import numpy as np

        return np.random.default_rng([self.seed, stream])

    def load_model(self, name: str) -> Any:
        """Shortcut for ``context.models.get(name)``."""
        return self.models.get(name)
