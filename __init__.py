"""neurofilters: neural image filters (DeepDream, class hallucination, saliency, texture, explorer).

The Python API, for notebooks and scripts::

    import neurofilters

    neurofilters.list_filters()                                   # what is there
    result = neurofilters.apply("deepdream", "photo.jpg", seed=7, steps=5)
    result.save("dream.png")                                      # the bytes `neurofilters run` writes
    model = neurofilters.load_model("lite0")                      # the zoo's models
    rows = neurofilters.classify("photo.jpg", top=3)              # every command, as a typed function
    table = neurofilters.layers("lite0")
    neurofilters.run_command("fit-noise", "photos", class_="flamingo", output="noise.npz")  # any command, a plugin's too

Plugin authors import the declaration types from here too (``from neurofilters import
hookimpl, Param, FilterSpec, CommandSpec, ModelSpec``); :mod:`neurofilters.plugin_host`
keeps exporting them for existing plugins.

Subpackages: :mod:`neurofilters.plugin_host` (registry, declarations, image I/O,
batch runner, GIMP worker, CLI; no Keras), :mod:`neurofilters.filters` (the
filters and the model zoo) and :mod:`neurofilters.gimp_plugin` (the GIMP 3
plug-in). Importing this package does not import Keras or TensorFlow.
"""

from .plugin_host.api import CommandResult, FilterInfo, Result, apply, describe, list_filters, load_model, run_command
from .commands import atlas, classify, explore_patches, explore_similar, finetune, fit_noise, layers, saliency_check
from .plugin_host.core.hookspecs import hookimpl
from .plugin_host.core.params import Param
from .plugin_host.core.commands import CommandContext
from .plugin_host.core.specs import CommandSpec, FilterSpec, ModelSpec
from .plugin_host.core.errors import (
    ImageIOError,
    ModelUnavailableError,
    NeurofiltersError,
    ParameterError,
    RegistryError,
)

__all__ = [
    "CommandContext",
    "CommandResult",
    "CommandSpec",
    "FilterInfo",
    "FilterSpec",
    "ImageIOError",
    "ModelSpec",
    "ModelUnavailableError",
    "NeurofiltersError",
    "Param",
    "ParameterError",
    "RegistryError",
    "Result",
    "apply",
    "atlas",
    "classify",
    "describe",
    "explore_patches",
    "explore_similar",
    "finetune",
    "fit_noise",
    "hookimpl",
    "layers",
    "list_filters",
    "load_model",
    "run_command",
    "saliency_check",
]
