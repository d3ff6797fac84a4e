"""Every hook a neurofilters plugin can implement.

A plugin is a module (or object) with functions decorated by
:data:`neurofilters.plugin_host.hookimpl`, registered through the ``neurofilters``
entry-point group::

    [project.entry-points.neurofilters]
    my_filters = "my_package.neurofilters_plugin"
"""

from __future__ import annotations

import pluggy

from .specs import CommandSpec, FilterSpec, ModelSpec

__all__ = ["hookspec", "hookimpl", "PROJECT_NAME"]

PROJECT_NAME = "neurofilters"
hookspec = pluggy.HookspecMarker(PROJECT_NAME)
hookimpl = pluggy.HookimplMarker(PROJECT_NAME)


@hookspec
def register_filters() -> list[FilterSpec]:
    """Return the filters this plugin provides.

    Called once, when the registry is first built (on the first command that
    needs it). It must be cheap: return declarations only and import heavy
    libraries (Keras, TensorFlow) inside the filters' run functions, or
    declare ``run`` as a ``"module:function"`` string.

    Returns:
        A list of :class:`FilterSpec`; an empty list is fine.
    """


@hookspec
def register_models() -> list[ModelSpec]:
    """Return the networks this plugin adds to the model zoo.

    Called once, when the registry is first built. Loading happens later,
    through each spec's ``load`` callable, only when a filter needs the model.

    Returns:
        A list of :class:`ModelSpec`; an empty list is fine.
    """


@hookspec(firstresult=True)
def resolve_model(name: str) -> ModelSpec | None:
    """Turn a model name no plugin registered (such as a file path) into a spec.

    Called when a user names a model that is not in the zoo, e.g.
    ``--model my_net.keras``. The first plugin that returns a spec wins.

    Args:
        name: What the user typed.

    Returns:
        A :class:`ModelSpec`, or ``None`` if this plugin does not know the name.
    """


@hookspec
def register_commands() -> list[CommandSpec]:
    """Return the ``neurofilters`` subcommands this plugin adds (``layers``, ``fit-noise`` ...).

    Called once, when the registry is first built; the command line asks the
    registry for them when it builds its parser. Like the other ``register_*``
    hooks it must be cheap: declare ``run`` as a ``"module:function"`` string
    so that heavy imports happen only when the command runs.

    Returns:
        A list of :class:`CommandSpec`; an empty list is fine.
    """
