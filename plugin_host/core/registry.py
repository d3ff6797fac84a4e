"""The filter and model registry, built on a pluggy plugin manager.

Built-in filters are registered exactly like third-party ones: the modules in
:data:`BUILTIN_PLUGINS` implement the same hooks that entry points of the
``neurofilters`` group implement. A plugin that fails to import, raises in a
hook or returns something that is not a spec is recorded as a
:class:`PluginFailure` and skipped; the others keep working.

Environment variables:
    NEUROFILTERS_DISABLE_PLUGIN_AUTOLOAD: when set to a non-empty value, no
        entry point is loaded (built-ins still are).
    NEUROFILTERS_TRACE_HOOKS: when set, every hook call is traced on stderr.
"""

from __future__ import annotations

import difflib
import importlib
import os
import sys
from collections.abc import Iterable
from dataclasses import dataclass, field
from importlib import metadata
from typing import Any

import pluggy

from . import hookspecs as _hookspecs
from .errors import RegistryError
from .specs import CommandSpec, FilterSpec, ModelSpec

__all__ = [
    "BUILTIN_PLUGINS",
    "ENTRY_POINT_GROUP",
    "PluginFailure",
    "PluginInfo",
    "Registry",
    "build_registry",
    "get_registry",
    "reset_registry",
]

ENTRY_POINT_GROUP = "neurofilters"
DISABLE_AUTOLOAD_ENV = "NEUROFILTERS_DISABLE_PLUGIN_AUTOLOAD"
TRACE_ENV = "NEUROFILTERS_TRACE_HOOKS"

#: Modules whose hooks provide the built-in models and filters.
BUILTIN_PLUGINS: tuple[str, ...] = (
    "neurofilters.filters.zoo.plugin",
    "neurofilters.filters.deepdream.plugin",
    "neurofilters.filters.finetune.plugin",
    "neurofilters.filters.saliency.plugin",
    "neurofilters.filters.hallucinate.plugin",
    "neurofilters.filters.explorer.plugin",
    "neurofilters.filters.texture.plugin",
)
_BUILTIN_DIST = "neurofilters"
#: Subcommands of the host itself; a plugin cannot take these names.
RESERVED_COMMANDS = ("list", "describe", "run", "models", "plugins", "batch", "video", "gimp")


@dataclass(frozen=True)
class PluginFailure:
    """A plugin that could not contribute, and why."""

    plugin: str
    distribution: str
    error: str

    def __str__(self) -> str:
        return f'Error in plugin "{self.plugin}" ({self.distribution}): {self.error}'


@dataclass
class PluginInfo:
    """A plugin that loaded, with what it contributed."""

    name: str
    distribution: str
    version: str
    filters: list[str] = field(default_factory=list)
    models: list[str] = field(default_factory=list)
    commands: list[str] = field(default_factory=list)


@dataclass
class Registry:
    """Filters and models by name, plus what went wrong while collecting them."""

    plugin_manager: pluggy.PluginManager
    filters: dict[str, FilterSpec] = field(default_factory=dict)
    models: dict[str, ModelSpec] = field(default_factory=dict)
    commands: dict[str, CommandSpec] = field(default_factory=dict)
    plugins: list[PluginInfo] = field(default_factory=list)
    failures: list[PluginFailure] = field(default_factory=list)
    conflicts: dict[str, str] = field(default_factory=dict)
    _model_aliases: dict[str, str] = field(default_factory=dict)
    _filter_owner: dict[str, str] = field(default_factory=dict)
    _model_owner: dict[str, str] = field(default_factory=dict)
    _command_owner: dict[str, str] = field(default_factory=dict)

    def get_filter(self, name: str) -> FilterSpec:
        """Return the filter called ``name``.

        Raises:
            RegistryError: Unknown name (with suggestions), or a name claimed
                by two plugins (naming both distributions).
        """
        if name in self.conflicts:
            raise RegistryError(self.conflicts[name])
        try:
            return self.filters[name]
        except KeyError:
            raise RegistryError(_unknown("filter", name, self.filters, "neurofilters list")) from None

    def get_model(self, name: str) -> ModelSpec:
        """Return the model spec for ``name`` (a zoo name, alias, or a name a plugin resolves).

        Raises:
            RegistryError: No plugin knows the name.
        """
        key = self._model_aliases.get(name, name)
        if key in self.models:
            return self.models[key]
        try:
            spec = self.plugin_manager.hook.resolve_model(name=name)
        except Exception as error:  # a third-party resolver must not crash the lookup
            raise RegistryError(f"Resolving model {name!r} failed: {error}") from error
        if isinstance(spec, ModelSpec):
            return spec
        raise RegistryError(
            _unknown("model", name, list(self.models) + list(self._model_aliases), "neurofilters models")
            + " A Keras model file must end in '.keras' and exist."
        )

    def model_names(self) -> list[str]:
        """Registered model names, in registration order."""
        return list(self.models)

    def _add_filter(self, spec: FilterSpec, owner: str) -> None:
        if spec.name in self.filters or spec.name in self.conflicts:
            first = self._filter_owner.get(spec.name, "?")
            message = (
                f"Filter name {spec.name!r} is provided by two plugins: {first} and {owner}. "
                f"Uninstall one of them, or set {DISABLE_AUTOLOAD_ENV}=1 to use only the built-ins."
            )
            self.conflicts[spec.name] = message
            self.filters.pop(spec.name, None)
            self.failures.append(PluginFailure(owner, owner, message))
            return
        self.filters[spec.name] = spec
        self._filter_owner[spec.name] = owner

    def _add_command(self, spec: CommandSpec, owner: str) -> None:
        if spec.name in RESERVED_COMMANDS or spec.name in self.commands:
            first = "neurofilters itself" if spec.name in RESERVED_COMMANDS else self._command_owner[spec.name]
            message = f"Command name {spec.name!r} is provided by {first} and {owner}; keeping the first."
            self.failures.append(PluginFailure(owner, owner, message))
            return
        self.commands[spec.name] = spec
        self._command_owner[spec.name] = owner

    def _add_model(self, spec: ModelSpec, owner: str) -> None:
        if spec.name in self.models:
            message = (
                f"Model name {spec.name!r} is provided by two plugins: "
                f"{self._model_owner[spec.name]} and {owner}; keeping the first."
            )
            self.failures.append(PluginFailure(owner, owner, message))
            return
        self.models[spec.name] = spec
        self._model_owner[spec.name] = owner
        for alias in spec.aliases:
            self._model_aliases.setdefault(alias, spec.name)


def _unknown(kind: str, name: str, known: Iterable[str], command: str) -> str:
    close = difflib.get_close_matches(name, list(known), n=3)
    hint = f" Did you mean: {', '.join(close)}?" if close else ""
    return f"Unknown {kind}. Received: {name!r}.{hint} Run '{command}' to see them all."


def _describe_error(error: BaseException) -> str:
    return f"{type(error).__name__}: {error}"


def _collect(
    registry: Registry, plugin: Any, plugin_name: str, distribution: str, version: str
) -> None:
    """Call one plugin's register hooks on its own, so its failure stays its own."""
    pm = registry.plugin_manager
    info = PluginInfo(plugin_name, distribution, version)
    owner = f"{plugin_name} ({distribution})"
    for hook_name, spec_type, add in (
        ("register_models", ModelSpec, registry._add_model),
        ("register_filters", FilterSpec, registry._add_filter),
        ("register_commands", CommandSpec, registry._add_command),
    ):
        caller = pm.subset_hook_caller(hook_name, remove_plugins=[p for p in pm.get_plugins() if p is not plugin])
        try:
            results = caller()
        except Exception as error:
            registry.failures.append(PluginFailure(plugin_name, distribution, f"{hook_name}() raised {_describe_error(error)}"))
            continue
        for returned in results:
            items = returned if isinstance(returned, (list, tuple)) else [returned]
            for item in items:
                if not isinstance(item, spec_type):
                    registry.failures.append(
                        PluginFailure(
                            plugin_name,
                            distribution,
                            f"{hook_name}() returned {type(item).__name__} {item!r:.80}; "
                            f"expected {spec_type.__name__} objects",
                        )
                    )
                    continue
                add(item, owner)
                {ModelSpec: info.models, FilterSpec: info.filters, CommandSpec: info.commands}[spec_type].append(item.name)
    registry.plugins.append(info)


def build_registry(*, autoload: bool | None = None) -> Registry:
    """Build a fresh registry: built-ins first, then entry points.

    Args:
        autoload: Load third-party entry points; defaults to ``True`` unless
            ``NEUROFILTERS_DISABLE_PLUGIN_AUTOLOAD`` is set.
    """
    if autoload is None:
        autoload = not os.environ.get(DISABLE_AUTOLOAD_ENV)
    pm = pluggy.PluginManager(_hookspecs.PROJECT_NAME)
    pm.add_hookspecs(_hookspecs)
    if os.environ.get(TRACE_ENV):
        pm.trace.root.setwriter(lambda text: sys.stderr.write(text))
        pm.enable_tracing()
    registry = Registry(plugin_manager=pm)
    own_version = _version(_BUILTIN_DIST)

    candidates: list[tuple[str, str, str, Any]] = []  # (name, dist, version, loader)
    for module_name in BUILTIN_PLUGINS:
        candidates.append((module_name, _BUILTIN_DIST, own_version, lambda m=module_name: importlib.import_module(m)))
    if autoload:
        for entry_point in sorted(metadata.entry_points(group=ENTRY_POINT_GROUP), key=lambda ep: ep.name):
            dist = entry_point.dist.name if entry_point.dist is not None else "unknown distribution"
            version = entry_point.dist.version if entry_point.dist is not None else "?"
            candidates.append((entry_point.name, dist, version, entry_point.load))

    for name, dist, version, load in candidates:
        try:
            plugin = load()
            pm.register(plugin, name=name)
        except Exception as error:
            registry.failures.append(PluginFailure(name, dist, f"import failed: {_describe_error(error)}"))
            continue
        _collect(registry, plugin, name, dist, version)
    return registry


def _version(distribution: str) -> str:
    try:
        return metadata.version(distribution)
    except metadata.PackageNotFoundError:
        return "source"


_REGISTRY: Registry | None = None


def get_registry() -> Registry:
    """The process-wide registry, built on first use."""
    global _REGISTRY
    if _REGISTRY is None:
        _REGISTRY = build_registry()
    return _REGISTRY


def reset_registry() -> None:
    """Forget the process-wide registry (tests; after installing a plugin)."""
    global _REGISTRY
    _REGISTRY = None
