"""The public API of neurofilters' plugin host: what filters, models and third-party plugins import.

The host is built in rooms (see ``docs/architecture.md``): ``core`` (declarations,
registry, context, the host/filter call), ``imageio`` (files), ``batch`` (the
batch runner), ``gimp`` (the GIMP worker and its wire protocol) and ``cli``.
Filters and plugins import only the names listed here. Nothing in the host
imports Keras or TensorFlow, so listing filters, ``--help`` and GIMP's plug-in
registration stay fast.
"""

from .cli.docs import text_table
from .cli.progress import ProgressBar
from .core.call import apply_filter, join_alpha, resolve_presets, split_alpha
from .core.commands import CommandContext, CommandProgress, OutputGuard
from .core.context import FilterContext, ModelCache, ProgressCallback, SummarySink
from .core.errors import (
    DeclarationError,
    FilterCancelled,
    ImageIOError,
    ModelUnavailableError,
    NeurofiltersError,
    ParameterError,
    RegistryError,
    UsageError,
)
from .core.hookspecs import hookimpl, hookspec
from .core.params import PARAM_KINDS, Param, ParamValues, format_value, parse_int, parse_weighted_layers, validate_params
from .core.registry import (
    ENTRY_POINT_GROUP,
    PluginFailure,
    PluginInfo,
    Registry,
    build_registry,
    builtin_entry_points,
    get_registry,
    reset_registry,
)
from .core.specs import MODEL_KINDS, CommandSpec, FilterSpec, ModelSpec
from .imageio.guard import WriteGuard, describe_os_error
from .imageio.files import IMAGE_SUFFIXES, SAVE_FORMATS, LoadedImage, atomic_write, encode_pixels, format_for_path, load_image, save_image

__all__ = [
    "CommandContext",
    "CommandProgress",
    "CommandSpec",
    "OutputGuard",
    "DeclarationError",
    "ENTRY_POINT_GROUP",
    "FilterCancelled",
    "FilterContext",
    "FilterSpec",
    "IMAGE_SUFFIXES",
    "ImageIOError",
    "LoadedImage",
    "MODEL_KINDS",
    "SAVE_FORMATS",
    "SummarySink",
    "ModelCache",
    "ModelSpec",
    "ModelUnavailableError",
    "NeurofiltersError",
    "PARAM_KINDS",
    "Param",
    "ParameterError",
    "ParamValues",
    "PluginFailure",
    "PluginInfo",
    "ProgressBar",
    "ProgressCallback",
    "Registry",
    "RegistryError",
    "UsageError",
    "WriteGuard",
    "apply_filter",
    "atomic_write",
    "build_registry",
    "builtin_entry_points",
    "describe_os_error",
    "encode_pixels",
    "format_for_path",
    "format_value",
    "get_registry",
    "hookimpl",
    "hookspec",
    "join_alpha",
    "load_image",
    "parse_int",
    "parse_weighted_layers",
    "reset_registry",
    "resolve_presets",
    "save_image",
    "split_alpha",
    "text_table",
    "validate_params",
]


def __getattr__(name: str) -> object:
    """``BUILTIN_PLUGINS``, deprecated (see :func:`builtin_entry_points`)."""
    if name == "BUILTIN_PLUGINS":
        from .core.registry import deprecated_builtin_plugins

        return deprecated_builtin_plugins()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
