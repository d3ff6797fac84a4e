"""What a running filter gets besides its image and parameters."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

from ._errors import FilterCancelled, ModelUnavailableError, NeurofiltersError
from ._quiet import native_stderr_silenced

__all__ = ["FilterContext", "ModelCache", "ProgressCallback"]

#: ``callback(fraction, message)`` with ``fraction`` in [0, 1].
ProgressCallback = Callable[[float, str], None]


class ModelCache:
    """Loaded models by name, shared by every filter call of one process.

    The batch runner and the GIMP worker keep one cache alive, so a model is
    loaded once per process, not once per image.
    """

    def __init__(self, resolve: Callable[[str], Any] | None = None) -> None:
        """Create an empty cache.

        Args:
            resolve: ``resolve(name) -> ModelSpec``; defaults to the process
                registry's :meth:`~plugin_host.Registry.get_model`.
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
                    from ._registry import get_registry

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
    """

    def __init__(
        self,
        *,
        seed: int = 0,
        progress: ProgressCallback | None = None,
        cancel_event: threading.Event | None = None,
        models: ModelCache | None = None,
        alpha: Any | None = None,
    ) -> None:
        self.seed = int(seed)
        self.alpha = alpha
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
