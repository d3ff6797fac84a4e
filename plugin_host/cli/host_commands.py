"""The host's own commands, declared like any plugin's: ``list``, ``describe``, ``models``, ``plugins``, ``gimp``.

This module is a built-in plugin (the ``host`` entry point of the ``neurofilters``
group): its ``register_commands`` hook returns the declarations below, and the CLI
reserves their names for them (:func:`reserve`), so a third-party command cannot
take one. Each ``run(values, context)`` returns a result object that Python
receives from ``neurofilters.run_command("list")`` and each ``render(result,
values)`` prints it on the command line, as before the declarations.

``run``, ``batch`` and ``video`` stay the CLI's own: their flags come from the
filter named on the command line, so no fixed declaration describes them.

The module stays light (no Keras, no NumPy): the registry imports it on every start.
"""

from __future__ import annotations

import sys
import textwrap
from dataclasses import dataclass
from typing import Any

from ..core.errors import ParameterError, UsageError
from ..core.hookspecs import hookimpl
from ..core.params import Param, ParamValues
from ..core.registry import PluginInfo, Registry, get_registry
from ..core.specs import CommandSpec, FilterSpec

__all__ = [
    "HOST_COMMANDS", "HOST_OWNER_PLUGIN", "HOST_SPECS", "FilterRow", "FilterListing", "ModelRow", "ModelListing",
    "ModelFetched", "PluginListing", "GimpInstalled", "GimpRemoved", "host_spec", "is_host_command", "reserve",
    "register_commands",
]

PROG = "neurofilters"

#: Every command name the host owns, in the order ``neurofilters --help`` lists them
#: (the declared ones below, and ``run``, ``batch``, ``video``, which the CLI builds from the chosen filter).
HOST_COMMANDS: tuple[str, ...] = ("list", "describe", "run", "models", "plugins", "batch", "video", "gimp")
#: The entry-point name of this built-in plugin (``plugins`` does not list the host as a plugin).
HOST_OWNER_PLUGIN = "host"


# --- result objects ------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class FilterRow:
    """One filter of ``neurofilters list``."""

    category: str
    name: str
    summary: str


@dataclass(frozen=True)
class FilterListing:
    """What ``list`` returns: the filters by category then name, and the plugins that failed to load."""

    rows: tuple[FilterRow, ...]
    failures: tuple[str, ...] = ()

    @property
    def names(self) -> list[str]:
        """The filter names, in the listing's order."""
        return [row.name for row in self.rows]


@dataclass(frozen=True)
class ModelRow:
    """One model of ``neurofilters models``."""

    name: str
    kind: str
    offline: bool
    description: str
    aliases: tuple[str, ...] = ()
    source: str = ""


@dataclass(frozen=True)
class ModelListing:
    """What ``models`` returns: the zoo's models in registration order, and the plugins that failed."""

    rows: tuple[ModelRow, ...]
    failures: tuple[str, ...] = ()


@dataclass(frozen=True)
class ModelFetched:
    """What ``models fetch NAME`` returns: the model whose weights were obtained (and the file converted, if any)."""

    model: str
    from_file: str | None = None


@dataclass(frozen=True)
class PluginListing:
    """What ``plugins`` returns: the plugins that loaded (the host itself left out) and what failed."""

    plugins: tuple[PluginInfo, ...]
    failures: tuple[str, ...] = ()


@dataclass(frozen=True)
class GimpInstalled:
    """What ``gimp install`` returns: where the plug-in went, and the plugins that failed to load."""

    path: str
    failures: tuple[str, ...] = ()


@dataclass(frozen=True)
class GimpRemoved:
    """What ``gimp uninstall`` returns: the folder removed, or ``None`` when the plug-in was not installed."""

    path: str | None


# --- run(values, context) ------------------------------------------------------------------------------------------


def _failures(registry: Registry) -> tuple[str, ...]:
    return tuple(str(failure) for failure in registry.failures)


def _print_failures(failures: tuple[str, ...]) -> None:
    for failure in failures:
        print(f"{PROG}: warning: {failure}", file=sys.stderr)


def compute_list(values: ParamValues, context: Any) -> FilterListing:
    """``list``: every registered filter by category, then name."""
    registry = get_registry()
    rows = sorted((FilterRow(spec.category, spec.name, spec.summary) for spec in registry.filters.values()),
                  key=lambda row: (row.category, row.name))
    return FilterListing(tuple(rows), _failures(registry))


def render_list(result: FilterListing, values: ParamValues) -> int:
    _print_failures(result.failures)
    if not result.rows:
        print("No filters are registered. 'neurofilters plugins' shows what failed to load.")
        return 1
    width = max(len(row.name) for row in result.rows)
    category = None
    for row in result.rows:
        if row.category != category:
            category = row.category
            print(f"{category}:")
        print(f"  {row.name.ljust(width)}  {row.summary}")
    return 0


def compute_describe(values: ParamValues, context: Any) -> FilterSpec:
    """``describe FILTER``: the filter's declaration (its parameters, presets, description)."""
    return get_registry().get_filter(values["filter"])


def render_describe(spec: FilterSpec, values: ParamValues) -> int:
    from . import docs as _docs

    if values["markdown"]:
        print(_docs.markdown_table(spec), end="")
        return 0
    print(f"{spec.title} ({spec.name}) - {spec.category}, output: {spec.output}")
    print()
    print(textwrap.fill(spec.summary, 80))
    if spec.description:
        print()
        for paragraph in spec.description.strip().split("\n\n"):
            print(textwrap.fill(" ".join(paragraph.split()), 80))
    essential = [param for param in spec.params if not param.advanced]
    advanced = [param for param in spec.params if param.advanced]
    for title, params in (("Parameters", essential), ("Advanced parameters (rarely needed)", advanced)):
        if not params:
            continue
        rows = [(flag, default, f"{help_text} Allowed: {allowed}.") for flag, _, default, allowed, help_text in _docs.param_rows(params)]
        print()
        print(_docs.text_table(rows, ("flag", "default", "what it does"), title=f"{title}:"))
    presets = _docs.presets_text(spec)
    if presets:
        print()
        print(presets)
    print(f"\nUsage: neurofilters run {spec.name} INPUT -o OUTPUT [--seed N] [--PARAM VALUE ...]")
    print("Bool flags: --flag, --flag true|false, --no-flag.")
    return 0


#: The actions ``models`` takes (a word, not a subcommand: ``models`` alone lists the zoo).
MODEL_ACTIONS = ("fetch",)


def compute_models(values: ParamValues, context: Any) -> ModelListing | ModelFetched:
    """``models``: the zoo's models; ``models fetch NAME [--from FILE]``: obtain and convert a model's weights once."""
    action, model, from_file = values["action"], values["model"], values["from_"]
    if action and action not in MODEL_ACTIONS:
        choices = ", ".join(repr(choice) for choice in MODEL_ACTIONS)
        raise ParameterError(
            f"argument action: invalid choice: {action!r} (choose from {choices}) (see '{PROG} models --help')",
            param="action", value=action,
        )
    registry = get_registry()
    if action == "fetch":
        if not model:
            raise UsageError("'models fetch' needs a model name: neurofilters models fetch NAME")
        spec = registry.get_model(model)
        fetch = spec.fetcher()
        if fetch is None:
            fetchable = ", ".join(name for name, other in registry.models.items() if other.fetch is not None) or "none"
            raise UsageError(f"Model {spec.name!r} has nothing to fetch. Models that do: {fetchable}")
        fetch(from_file)
        return ModelFetched(spec.name, from_file)
    if model or from_file:
        raise UsageError("'models' takes a model name and --from only with 'fetch': neurofilters models fetch NAME")
    rows = tuple(
        ModelRow(spec.name, spec.kind, spec.works_offline(), spec.description, tuple(spec.aliases), spec.source or "")
        for spec in registry.models.values()
    )
    return ModelListing(rows, _failures(registry))


def render_models(result: ModelListing | ModelFetched, values: ParamValues) -> int:
    if isinstance(result, ModelFetched):
        return 0  # the fetch said what it did
    from . import docs as _docs

    _print_failures(result.failures)
    rows = []
    for row in result.rows:
        aliases = f" Also called: {', '.join(row.aliases)}." if row.aliases else ""
        weights = f" Weights: {row.source}." if row.source else ""
        rows.append((row.name, row.kind, "yes" if row.offline else "no", f"{row.description}{aliases}{weights}"))
    print(_docs.text_table(rows, ("name", "kind", "offline", "description")))
    print("\noffline: the weights are on this machine ('no': downloaded on first use).")
    print("\nAny Keras model file works too: --model path/to/model.keras")
    print("A model's layers, and which dream well: neurofilters layers MODEL")
    return 0


def compute_plugins(values: ParamValues, context: Any) -> PluginListing:
    """``plugins``: the plugins that loaded, with what each contributed, and the ones that failed."""
    registry = get_registry()
    own = {spec.name for spec in HOST_SPECS}
    shown = tuple(
        info for info in registry.plugins
        if not (info.name == HOST_OWNER_PLUGIN and not info.filters and not info.models and set(info.commands) <= own)
    )
    return PluginListing(shown, _failures(registry))


def render_plugins(result: PluginListing, values: ParamValues) -> int:
    for info in result.plugins:
        print(f"{info.name} ({info.distribution} {info.version})")
        for what, names in (("filters", info.filters), ("models", info.models), ("commands", info.commands)):
            if names:
                print(textwrap.fill(", ".join(names), 80, initial_indent=f"  {what}: ", subsequent_indent="    "))
    if result.failures:
        print("\nProblems:")
        for failure in result.failures:
            print(f"  {failure}")
    return 0


def _gimp_dir(values: ParamValues, action: str) -> Any:
    """``--gimp-dir`` as a path, or ``None`` for GIMP's per-user folder; an empty text is refused, not taken as ``.``."""
    from pathlib import Path

    text = values["gimp_dir"]
    if text is None:
        return None
    if not str(text).strip():
        raise ParameterError(
            f"argument --gimp-dir: must name a folder. Received: {text!r}; leave the flag out for the default "
            f"(see '{PROG} gimp {action} --help')",
            param="gimp_dir", value=text,
        )
    return Path(text).expanduser()


def compute_gimp_install(values: ParamValues, context: Any) -> GimpInstalled:
    """``gimp install``: copy the GIMP 3 plug-in into GIMP's profile folder."""
    folder = _gimp_dir(values, "install")
    failures = _failures(get_registry())
    blocked = next((part for part in ([folder, *folder.parents] if folder else []) if part.exists() and not part.is_dir()), None)
    if blocked is not None:
        raise UsageError(f"--gimp-dir must be a folder (GIMP's profile folder). Received: --gimp-dir {folder}, where "
                         f"{blocked} is a file; give the folder that holds GIMP's plug-ins folder.")
    from ..gimp import installer

    try:
        path = installer.install(gimp_dir=folder)
    except OSError as error:
        from ..imageio.guard import describe_os_error

        raise UsageError(describe_os_error(error, error.filename or folder or "~/.config/GIMP/3.0", "GIMP plug-in")) from None
    return GimpInstalled(str(path), failures)


def render_gimp_install(result: GimpInstalled, values: ParamValues) -> int:
    _print_failures(result.failures)
    print(f"installed the GIMP plug-in in {result.path}; restart GIMP and look under Filters > Neural")
    return 0


def compute_gimp_uninstall(values: ParamValues, context: Any) -> GimpRemoved:
    """``gimp uninstall``: remove the plug-in (nothing to do when it is not installed)."""
    folder = _gimp_dir(values, "uninstall")
    from ..gimp import installer

    removed = installer.uninstall(gimp_dir=folder)
    return GimpRemoved(str(removed) if removed else None)


def render_gimp_uninstall(result: GimpRemoved, values: ParamValues) -> int:
    print(f"removed {result.path}" if result.path else "the GIMP plug-in was not installed")
    return 0


# --- the declarations ----------------------------------------------------------------------------------------------

_GIMP_DIR = Param("gimp_dir", "string", None, "GIMP 3 profile folder (default: the per-user folder, ~/.config/GIMP/3.0)",
                  metavar="GIMP_DIR")

#: The host's declared commands. Their help lines are printed as written (they predate the
#: declarations, and docs/cli.md pins their ``--help``), see ``cli.args.add_command_arguments(verbatim=True)``.
HOST_SPECS: tuple[CommandSpec, ...] = (
    CommandSpec(
        name="list", help="list the filters", description="List every registered filter by category.",
        run=compute_list, render=render_list,
    ),
    CommandSpec(
        name="describe", help="show a filter's description and parameters",
        params=(
            Param("filter", "string", None, "filter name (see 'neurofilters list')", positional=True),
            Param("markdown", "bool", False, "print the parameter table as Markdown"),
        ),
        run=compute_describe, render=render_describe,
    ),
    CommandSpec(
        name="models", help="list the models of the zoo",
        params=(
            Param("action", "string", "", "fetch: obtain and convert a model's weights once", positional=True, metavar="{fetch}"),
            Param("model", "string", "", "the model to fetch (one whose weights say 'models fetch')", positional=True),
            Param("from_", "string", None, "convert a file you already have instead of downloading", metavar="FILE"),
        ),
        run=compute_models, render=render_models,
    ),
    CommandSpec(
        name="plugins", help="list the loaded plugins and the ones that failed",
        run=compute_plugins, render=render_plugins,
    ),
    CommandSpec(
        name="gimp", help="install or remove the GIMP 3 plug-in",
        subcommands=(
            CommandSpec(name="install", help="install the plug-in for GIMP 3", params=(_GIMP_DIR,),
                        run=compute_gimp_install, render=render_gimp_install),
            CommandSpec(name="uninstall", help="remove the plug-in", params=(_GIMP_DIR,),
                        run=compute_gimp_uninstall, render=render_gimp_uninstall),
        ),
    ),
)


def host_spec(name: str) -> CommandSpec | None:
    """The host's declared command ``name`` (``None`` for ``run``, ``batch``, ``video`` and other names)."""
    return next((spec for spec in HOST_SPECS if spec.name == name), None)


def is_host_command(spec: CommandSpec) -> bool:
    """Whether ``spec`` is one of the host's declared commands or one of their actions (identity, not name)."""
    return any(spec is own or any(spec is action for action in own.subcommands) for own in HOST_SPECS)


def reserve(registry: Registry) -> None:
    """Keep the host's command names for the host: its own declarations stay, a plugin's command of that name goes."""
    registry.reserve_commands(HOST_COMMANDS, own=HOST_SPECS)


@hookimpl
def register_commands() -> list[CommandSpec]:
    """The host's declared commands, registered through the hook every plugin uses."""
    return list(HOST_SPECS)
