"""neurofilters' plugin host: registry, parameter declarations, image I/O, jobs, CLI.

Nothing here imports Keras or TensorFlow; that stays inside the filters' run
functions, so listing filters, ``--help`` and GIMP's plug-in registration are fast.
"""

from ._context import FilterContext, ModelCache, ProgressCallback
from ._errors import (
    DeclarationError,
    FilterCancelled,
    ImageIOError,
    ModelUnavailableError,
    NeurofiltersError,
    ParameterError,
    RegistryError,
)
from ._hookspecs import hookimpl, hookspec
from ._imageio import SAVE_FORMATS, LoadedImage, atomic_write, encode_pixels, format_for_path, load_image, save_image
from ._jobs import apply_filter, join_alpha, split_alpha
from ._params import PARAM_KINDS, Param, format_value, parse_weighted_layers, validate_params
from ._registry import (
    BUILTIN_PLUGINS,
    ENTRY_POINT_GROUP,
    PluginFailure,
    PluginInfo,
    Registry,
    build_registry,
    get_registry,
    reset_registry,
)
from ._specs import FilterSpec, ModelSpec

__all__ = [
    "BUILTIN_PLUGINS",
    "DeclarationError",
    "ENTRY_POINT_GROUP",
    "FilterCancelled",
    "FilterContext",
    "FilterSpec",
    "ImageIOError",
    "LoadedImage",
    "SAVE_FORMATS",
    "ModelCache",
    "ModelSpec",
    "ModelUnavailableError",
    "NeurofiltersError",
    "PARAM_KINDS",
    "Param",
    "ParameterError",
    "PluginFailure",
    "PluginInfo",
    "ProgressCallback",
    "Registry",
    "RegistryError",
    "apply_filter",
    "atomic_write",
    "encode_pixels",
    "format_for_path",
    "build_registry",
    "format_value",
    "get_registry",
    "hookimpl",
    "hookspec",
    "join_alpha",
    "load_image",
    "parse_weighted_layers",
    "reset_registry",
    "save_image",
    "split_alpha",
    "validate_params",
]
