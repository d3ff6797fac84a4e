"""Exception types shared by the host, the filters and the front ends."""

from __future__ import annotations

__all__ = [
    "NeurofiltersError",
    "ParameterError",
    "DeclarationError",
    "RegistryError",
    "FilterCancelled",
    "ImageIOError",
    "ModelUnavailableError",
    "UsageError",
]


class NeurofiltersError(Exception):
    """Base class of every error the project raises on purpose.

    Front ends print ``str(error)`` without a traceback (the CLI adds one
    only with ``--debug``; the GIMP plug-in shows it in an error dialog).
    """


class ParameterError(NeurofiltersError, ValueError):
    """A parameter value (or name) given by the user is not acceptable.

    Attributes:
        param: The parameter's name, or ``None`` when the problem is not tied
            to a single parameter.
        value: The value that was received.
    """

    def __init__(self, message: str, *, param: str | None = None, value: object = None) -> None:
        super().__init__(message)
        self.param = param
        self.value = value


class DeclarationError(NeurofiltersError, TypeError):
    """A filter or model declaration is malformed (a programming error of its author)."""


class RegistryError(NeurofiltersError, LookupError):
    """A filter or model name cannot be resolved (unknown, or claimed twice)."""


class FilterCancelled(NeurofiltersError):
    """The user cancelled a running filter (Ctrl-C, GIMP's cancel button)."""


class ImageIOError(NeurofiltersError, OSError):
    """An image cannot be read or written."""


class ModelUnavailableError(NeurofiltersError, RuntimeError):
    """A model's weights cannot be found or loaded (e.g. offline, missing file)."""


class UsageError(NeurofiltersError):
    """A command-line mistake (a missing argument, a misplaced flag): one line, exit code 2."""
