"""The filter and model registry, built on a pluggy plugin manager.

Built-in filters are registered exactly like third-party ones: the project's
own ``pyproject.toml`` declares each built-in plugin module as an entry point
of the ``neurofilters`` group, the group third-party plugins use, so this
module names no filter and no command. The entry points of the
``neurofilters`` distribution itself are the built-ins; they load first,
sorted by entry-point name, then the other distributions' entry points,
sorted by name. A plugin that fails to import, raises in a
hook or returns something that is not a spec is recorded as a
:class:`PluginFailure` and skipped; the others keep working.

The host's own command names belong to the layer that defines the commands
(the CLI); it hands them to :meth:`Registry.reserve_commands`, which keeps the
host's own declarations (registered through the same hook by a built-in
plugin) and drops a plugin command that takes one of the names.

Environment variables:
    NEUROFILTERS_DISABLE_PLUGIN_AUTOLOAD: when set to a non-empty value, no
        third-party entry point is loaded (the built-ins still are).
    NEUROFILTERS_TRACE_HOOKS: when set, every hook call is traced on stderr.
"""

from __future__ import annotations

import difflib
import os
import sys
import warnings
from collections.abc import Iterable
from dataclasses import dataclass, field
from importlib import metadata
from typing import Any

import pluggy

from . import hookspecs as _hookspecs
from .errors import RegistryError
from .specs import CommandSpec, FilterSpec, ModelSpec

__all__ = [
    "ENTRY_POINT_GROUP",
    "PluginFailure",
    "PluginInfo",
    "Registry",
    "build_registry",
    "builtin_entry_points",
    "distribution_version",
    "get_registry",
    "reset_registry",
]

ENTRY_POINT_GROUP = "neurofilters"
DISABLE_AUTOLOAD_ENV = "NEUROFILTERS_DISABLE_PLUGIN_AUTOLOAD"
TRACE_ENV = "NEUROFILTERS_TRACE_HOOKS"

#: The distribution whose entry points are the built-ins (the project itself, not a filter).
HOST_DISTRIBUTION = "neurofilters"
#: Who owns the host's own command names, in the one-line message of a collision.
HOST_OWNER = "neurofilters itself"


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
    _reserved_commands: dict[str, str] = field(default_factory=dict)

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

    def reserve_commands(self, names: Iterable[str], owner: str = HOST_OWNER, *, own: Iterable[CommandSpec] = ()) -> None:
        """Keep command names for the host: a plugin command that takes one is dropped.

        The layer that defines the host's commands (the CLI) calls this with
        their names, so the registry itself names no command. The host's own
        declared commands (``own``) register through ``register_commands`` like
        any plugin's; they stay, now owned by ``owner``, and a plugin that was
        turned away for taking one of their names is told it collided with
        ``owner``. Calling it again with the same names changes nothing.

        Args:
            names: The host's command names.
            owner: Who owns them, as the one-line collision message names it.
            own: The host's own declarations of some of ``names`` (kept, matched by identity).
        """
        own = list(own)
        for name in names:
            if name in self._reserved_commands:
                continue
            self._reserved_commands[name] = owner
            if name not in self.commands:
                continue
            taken_by = self._command_owner[name]
            if any(self.commands[name] is spec for spec in own):
                self._command_owner[name] = owner
                self._rename_owner(name, taken_by, owner)
                continue
            del self.commands[name], self._command_owner[name]
            self._reject_command(name, owner, taken_by)

    def _rename_owner(self, name: str, before: str, after: str) -> None:
        """Reword the collisions already recorded for command ``name``: its owner is ``after``, not ``before``."""
        said, now = f"Command name {name!r} is provided by {before} and ", f"Command name {name!r} is provided by {after} and "
        self.failures = [
            PluginFailure(failure.plugin, failure.distribution, now + failure.error[len(said):])
            if failure.error.startswith(said) else failure
            for failure in self.failures
        ]

    def _reject_command(self, name: str, first: str, owner: str) -> None:
        message = f"Command name {name!r} is provided by {first} and {owner}; keeping the first."
        self.failures.append(PluginFailure(owner, owner, message))

    def _add_command(self, spec: CommandSpec, owner: str) -> None:
        if spec.name in self._reserved_commands:
            self._reject_command(spec.name, self._reserved_commands[spec.name], owner)
            return
        if spec.name in self.commands:
            self._reject_command(spec.name, self._command_owner[spec.name], owner)
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


def _distribution_name(entry_point: metadata.EntryPoint) -> str:
    return entry_point.dist.name if entry_point.dist is not None else "unknown distribution"


def _is_builtin(entry_point: metadata.EntryPoint) -> bool:
    """Whether ``entry_point`` is declared by the project itself (its own ``pyproject.toml``)."""
    return _normalized(_distribution_name(entry_point)) == _normalized(HOST_DISTRIBUTION)


def _normalized(distribution: str) -> str:
    """A distribution name as packaging compares them (PEP 503: case, ``-``, ``_`` and ``.`` alike)."""
    return distribution.lower().replace("_", "-").replace(".", "-")


def builtin_entry_points() -> list[metadata.EntryPoint]:
    """The built-in plugins: the ``neurofilters`` entry points of the project's own distribution.

    Sorted by entry-point name, the order they load in (build back-ends do not
    keep the order ``pyproject.toml`` declares them in). Reading them touches
    only the installed metadata, never a plugin module.

    Raises:
        RegistryError: The ``neurofilters`` distribution is not installed, or
            its installed metadata declares no entry point of the group (an
            editable install older than its ``pyproject.toml``); the message
            names the fix.
    """
    try:
        own = metadata.distribution(HOST_DISTRIBUTION)
    except metadata.PackageNotFoundError:
        raise RegistryError(
            f"The {HOST_DISTRIBUTION!r} distribution is not installed, so its built-in filters (entry points of "
            f"the {ENTRY_POINT_GROUP!r} group) cannot be found. Install it, e.g. 'pip install -e .' in the checkout."
        ) from None
    found = sorted((ep for ep in own.entry_points if ep.group == ENTRY_POINT_GROUP), key=lambda ep: ep.name)
    if not found:
        raise RegistryError(
            f"The installed metadata of {HOST_DISTRIBUTION!r} {own.version} declares no entry point of the "
            f"{ENTRY_POINT_GROUP!r} group, so there are no built-in filters: the install is older than its "
            "pyproject.toml. Reinstall it, e.g. 'pip install -e .' (or 'make install') in the checkout."
        )
    return found


def _third_party_entry_points() -> list[metadata.EntryPoint]:
    """The other distributions' entry points of the group, sorted by name."""
    found = (ep for ep in metadata.entry_points(group=ENTRY_POINT_GROUP) if not _is_builtin(ep))
    return sorted(found, key=lambda ep: (ep.name, _distribution_name(ep)))


def build_registry(*, autoload: bool | None = None) -> Registry:
    """Build a fresh registry: built-ins first, then third-party entry points.

    Both are entry points of the ``neurofilters`` group; the built-ins are
    those the ``neurofilters`` distribution declares (see
    :func:`builtin_entry_points`).

    Args:
        autoload: Load third-party entry points; defaults to ``True`` unless
            ``NEUROFILTERS_DISABLE_PLUGIN_AUTOLOAD`` is set. The built-ins load
            either way.
    """
    if autoload is None:
        autoload = not os.environ.get(DISABLE_AUTOLOAD_ENV)
    pm = pluggy.PluginManager(_hookspecs.PROJECT_NAME)
    pm.add_hookspecs(_hookspecs)
    if os.environ.get(TRACE_ENV):
        pm.trace.root.setwriter(lambda text: sys.stderr.write(text))
        pm.enable_tracing()
    registry = Registry(plugin_manager=pm)

    candidates: list[metadata.EntryPoint] = []
    try:
        candidates.extend(builtin_entry_points())
    except RegistryError as error:
        registry.failures.append(PluginFailure("built-in plugins", HOST_DISTRIBUTION, str(error)))
    if autoload:
        candidates.extend(_third_party_entry_points())

    for entry_point in candidates:
        name, dist = entry_point.name, _distribution_name(entry_point)
        version = entry_point.dist.version if entry_point.dist is not None else "?"
        try:
            plugin = entry_point.load()
            # Unique per distribution, so two distributions may use the same entry-point name.
            pm.register(plugin, name=f"{dist}:{name}")
        except Exception as error:
            registry.failures.append(PluginFailure(name, dist, f"import failed: {_describe_error(error)}"))
            continue
        _collect(registry, plugin, name, dist, version)
    return registry


def deprecated_builtin_plugins(stacklevel: int = 2) -> tuple[str, ...]:
    """The value of the deprecated ``BUILTIN_PLUGINS``: the built-ins' modules, from their entry points.

    Args:
        stacklevel: Passed to :func:`warnings.warn`, so the warning names the
            line that read ``BUILTIN_PLUGINS``.
    """
    warnings.warn(
        "BUILTIN_PLUGINS is deprecated: the built-ins are entry points of the 'neurofilters' group now; "
        "use builtin_entry_points() (their .value is the module, their .name the plugin's name).",
        DeprecationWarning,
        stacklevel=stacklevel + 1,
    )
    return tuple(entry_point.value for entry_point in builtin_entry_points())


def __getattr__(name: str) -> Any:
    """``BUILTIN_PLUGINS``, deprecated (see :func:`deprecated_builtin_plugins`)."""
    if name == "BUILTIN_PLUGINS":
        return deprecated_builtin_plugins()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def distribution_version(distribution: str) -> str:
    """The installed version of ``distribution`` (``"source"`` when it is not installed)."""
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
