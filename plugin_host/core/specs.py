"""Declarations of filters and models, as plugins return them from their hooks."""

from __future__ import annotations

import importlib
import re
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass, field
from typing import Any

from .errors import DeclarationError, ParameterError
from .params import Param, validate_params

__all__ = ["CommandSpec", "FilterSpec", "ModelSpec", "resolve_callable", "FILTER_OUTPUTS", "MODEL_KINDS"]

_FILTER_NAME_RE = re.compile(r"^[a-z][a-z0-9]*(-[a-z0-9]+)*$")

#: ``image`` filters replace the picture; ``layer`` filters (saliency maps,
#: activation grids) produce an analysis shown beside it (a new GIMP layer).
FILTER_OUTPUTS = ("image", "layer")
MODEL_KINDS = ("classifier", "backbone")


def resolve_callable(target: Callable[..., Any] | str) -> Callable[..., Any]:
    """Return ``target`` itself, or import it from a ``"package.module:function"`` string.

    The string form lets a declaration module stay light: the heavy module
    (the one that imports Keras) is imported only when the filter runs.
    """
    if callable(target):
        return target
    module_name, _, attribute = target.partition(":")
    if not module_name or not attribute:
        raise DeclarationError(f"Expected 'package.module:function'. Received: {target!r}")
    value: Any = importlib.import_module(module_name)
    for part in attribute.split("."):
        value = getattr(value, part)
    if not callable(value):
        raise DeclarationError(f"{target!r} is not callable.")
    return value


def _check_name(kind: str, name: str) -> None:
    if not isinstance(name, str) or not _FILTER_NAME_RE.match(name):
        raise DeclarationError(
            f"{kind} names must be lowercase words joined by dashes (like 'guided-backprop'). "
            f"Received: name={name!r}"
        )


@dataclass(frozen=True)
class FilterSpec:
    """Everything the host knows about one filter.

    Attributes:
        name: Unique name, lowercase words joined by dashes (``deepdream``).
        title: Human title for menus (``DeepDream``).
        summary: One line for listings.
        description: Longer text for ``describe``, docs and GIMP's help.
        category: Menu group (``Dream``, ``Saliency``, ...).
        params: Parameter declarations, in dialog order.
        run: ``run(image, params, context) -> image``, or a ``"module:function"``
            string imported on first use. ``image`` is float32 ``H x W x 3`` in
            [0, 1]; the result is float32 ``h x w x 3`` in [0, 1].
        output: ``"image"`` or ``"layer"`` (see :data:`FILTER_OUTPUTS`).
        preview_params: Parameter values that make a quick, low-cost run
            (used by the smoke tests and for previews); validated at declaration.
        batch_run: Optional ``batch_run(images, params, contexts) -> images``
            (or a ``"module:function"`` string) for several images of one size
            at once: ``images`` is a list of float32 ``H x W x 3`` arrays of
            equal shape, ``contexts`` one :class:`FilterContext` per image (its
            seed and alpha; progress is reported through the first). It must
            return, for every image, exactly what ``run`` returns for it alone,
            bit for bit: the batch runner groups images differently when a run
            is resumed. ``None`` (the default): images run one by one.
        presets: Named sets of parameter values, ``{preset: {param: value}}``,
            chosen by the ``choice`` parameter ``preset_param`` (its choices are
            exactly the preset names; an empty preset changes nothing). The
            host fills a preset's values into the parameters the user did not
            give (:meth:`preset_values`, applied by
            :func:`~neurofilters.plugin_host.core.call.resolve_presets` before
            the filter runs), so the filter receives final values. Checked and
            validated at declaration.
        preset_param: The ``choice`` parameter that selects the preset
            (``"preset"``); read only when ``presets`` is declared.
        model_presets: Per-model presets, ``{model value: preset}``: when the
            selector is ``"auto"``, the preset named here for the value of the
            filter's ``model`` parameter applies (a model not listed: none).
            Needs ``"auto"`` among ``presets``.
    """

    name: str
    title: str
    summary: str
    description: str
    category: str
    params: tuple[Param, ...]
    run: Callable[..., Any] | str
    output: str = "image"
    preview_params: Mapping[str, Any] = field(default_factory=dict)
    batch_run: Callable[..., Any] | str | None = None
    presets: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    preset_param: str = "preset"
    model_presets: Mapping[str, str] = field(default_factory=dict)
    param_index: dict[str, Param] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        _check_name("Filter", self.name)
        for attribute in ("title", "summary", "category"):
            if not isinstance(getattr(self, attribute), str) or not getattr(self, attribute):
                raise DeclarationError(f"Filter {self.name!r} needs a non-empty {attribute}.")
        object.__setattr__(self, "params", tuple(self.params))
        names = [param.name for param in self.params]
        if not all(isinstance(param, Param) for param in self.params):
            raise DeclarationError(f"Filter {self.name!r}: every parameter must be a Param.")
        if len(set(names)) != len(names):
            raise DeclarationError(f"Filter {self.name!r} declares a parameter twice: {names}")
        if "seed" in names:
            raise DeclarationError(f"Filter {self.name!r}: 'seed' is reserved (it comes from the context).")
        for param in self.params:
            self._check_filter_param(param)
        if self.output not in FILTER_OUTPUTS:
            raise DeclarationError(
                f"Filter {self.name!r}: output must be one of {FILTER_OUTPUTS}. Received: {self.output!r}"
            )
        if not (callable(self.run) or isinstance(self.run, str)):
            raise DeclarationError(f"Filter {self.name!r}: run must be callable or 'module:function'.")
        if not (self.batch_run is None or callable(self.batch_run) or isinstance(self.batch_run, str)):
            raise DeclarationError(
                f"Filter {self.name!r}: batch_run must be None, callable or 'module:function'. "
                f"Received: batch_run={self.batch_run!r}"
            )
        object.__setattr__(self, "param_index", {param.name: param for param in self.params})
        try:
            object.__setattr__(
                self, "preview_params", validate_params(
                    self.params, self.preview_params, check_files=False, check_required=False
                )
            )
        except ParameterError as error:
            raise DeclarationError(f"Filter {self.name!r}: invalid preview_params: {error}") from None
        self._check_presets()

    def _check_filter_param(self, param: Param) -> None:
        """A filter's parameters are flags with a valid default (``positional``, ``nargs``, ``short`` are a command's)."""
        where = f"Filter {self.name!r}, parameter {param.name!r}"
        if param.positional or param.nargs or param.short:
            raise DeclarationError(
                f"{where}: positional, nargs and short are for commands; a filter's parameters are flags. "
                f"Received: positional={param.positional!r}, nargs={param.nargs!r}, short={param.short!r}"
            )
        if param.required and param.kind not in ("image", "path"):
            raise DeclarationError(
                f"{where}: only image and path parameters can be required. Received: kind={param.kind!r}"
            )
        if param.default is None and param.kind not in ("image", "path"):
            raise DeclarationError(f"{where}: a filter parameter needs a default. Received: default=None")

    def _check_presets(self) -> None:
        """Validate ``presets``/``model_presets`` and keep each preset's values validated."""
        if not self.presets:
            if self.model_presets:
                raise DeclarationError(
                    f"Filter {self.name!r}: model_presets needs presets (with an 'auto' preset) to choose from."
                )
            object.__setattr__(self, "presets", {})
            object.__setattr__(self, "model_presets", {})
            return
        selector = self.param_index.get(self.preset_param)
        if selector is None or selector.kind != "choice":
            raise DeclarationError(
                f"Filter {self.name!r}: presets are chosen by preset_param={self.preset_param!r}, which must be "
                f"a declared 'choice' parameter. Declare Param({self.preset_param!r}, 'choice', ...) or set "
                "preset_param to the selecting parameter."
            )
        if set(selector.choices or ()) != set(self.presets):
            raise DeclarationError(
                f"Filter {self.name!r}: the choices of {self.preset_param!r} must be exactly the preset names. "
                f"Choices: {sorted(selector.choices or ())}; presets: {sorted(self.presets)}"
            )
        checked_presets: dict[str, dict[str, Any]] = {}
        for preset, values in self.presets.items():
            if not isinstance(values, Mapping):
                raise DeclarationError(
                    f"Filter {self.name!r}, preset {preset!r}: expected a mapping of parameter values. "
                    f"Received: {values!r}"
                )
            for key in values:
                if key == self.preset_param or key not in self.param_index:
                    raise DeclarationError(
                        f"Filter {self.name!r}, preset {preset!r}: parameter {key!r} "
                        + ("selects the preset; a preset cannot set it." if key == self.preset_param
                           else f"is not declared. Declared: {sorted(self.param_index)}")
                    )
            try:
                checked = validate_params(self.params, values, check_files=False, check_required=False)
            except ParameterError as error:
                raise DeclarationError(
                    f"Filter {self.name!r}, preset {preset!r}, parameter {getattr(error, 'param', None)!r}: {error}"
                ) from None
            checked_presets[preset] = {key: checked[key] for key in values}
        object.__setattr__(self, "presets", checked_presets)
        model_presets = dict(self.model_presets)
        if model_presets:
            if "auto" not in checked_presets:
                raise DeclarationError(
                    f"Filter {self.name!r}: model_presets apply when {self.preset_param!r} is 'auto'; "
                    "declare an 'auto' preset (usually empty)."
                )
            if self._model_param() is None:
                raise DeclarationError(f"Filter {self.name!r}: model_presets needs a parameter of kind 'model'.")
            for model, preset in model_presets.items():
                if preset not in checked_presets or preset == "auto":
                    raise DeclarationError(
                        f"Filter {self.name!r}, model_presets[{model!r}]: {preset!r} is not a preset. "
                        f"Presets: {sorted(set(checked_presets) - {'auto'})}"
                    )
        object.__setattr__(self, "model_presets", model_presets)

    def _model_param(self) -> Param | None:
        return next((param for param in self.params if param.kind == "model"), None)

    def preset_name(self, values: Mapping[str, Any]) -> str | None:
        """The preset ``values`` select (``auto`` resolved through ``model_presets``), or ``None``.

        Args:
            values: Validated parameter values (missing ones count as their defaults).

        Returns:
            A key of :attr:`presets`, or ``None`` when the filter declares no
            presets or ``auto`` finds no preset for the model.
        """
        if not self.presets:
            return None
        selector = self.param_index[self.preset_param]
        name = str(values.get(selector.name, selector.default))
        if name == "auto" and self.model_presets:
            model_param = self._model_param()
            assert model_param is not None  # checked at declaration
            return self.model_presets.get(str(values.get(model_param.name, model_param.default)))
        return name if name in self.presets else None

    def preset_values(self, values: Mapping[str, Any], given: Collection[str] | None) -> dict[str, Any]:
        """The values the selected preset sets: those of its parameters the user did not give.

        Args:
            values: Validated parameter values.
            given: The names the user set (whatever their value). ``None``
                (unknown) counts a value differing from its declared default as given.

        Returns:
            ``{param: preset value}`` to lay over ``values``; empty without a preset.
        """
        name = self.preset_name(values)
        if name is None:
            return {}
        chosen = {}
        for key, value in self.presets[name].items():
            default = self.param_index[key].default
            explicit = key in given if given is not None else values.get(key, default) != default
            if not explicit:
                chosen[key] = value
        return chosen

    def runner(self) -> Callable[..., Any]:
        """The filter's run function (importing it if declared as a string)."""
        return resolve_callable(self.run)

    def batch_runner(self) -> Callable[..., Any] | None:
        """The filter's ``batch_run`` function (imported if declared as a string), or ``None``."""
        return None if self.batch_run is None else resolve_callable(self.batch_run)


@dataclass(frozen=True)
class ModelSpec:
    """A network the filters can use.

    Attributes:
        name: Unique name (``lite0``, ``vgg16-hed``, ``inception-v3``).
        title: Human title.
        description: One or two sentences: what it is, where the weights come from.
        load: ``load() -> model handle`` (a ``neurofilters.filters.zoo`` model), or a
            ``"module:function"`` string imported on first use.
        kind: ``classifier`` (has class logits) or ``backbone`` (features only).
        source: Where the weights come from, in words (shown by ``models``).
        aliases: Other names accepted for this model.
        classes: ``classes(value, param) -> class id``: a class id or name
            checked against the model's label list without loading the model
            (no framework import), raising ``ParameterError`` with suggestions
            for an unknown name; or a ``"module:function"`` string. ``None``
            when the labels are known only once the model is loaded.
        offline: ``offline() -> bool``: whether the weights are on this
            machine now (checked without a framework), or a
            ``"module:function"`` string; ``None``: they come with an
            installed package, so the model always works offline.
        layer_names: ``layer_names(value, param=...)``: checks a ``layer`` or
            ``layers`` value against the model's layer names without loading
            it (no framework import), raising ``ParameterError`` with
            suggestions; or a ``"module:function"`` string. ``None`` when the
            names are known only once the model is loaded.
        fetch: For a model whose weights must be obtained once (``neurofilters models
            fetch NAME``): ``fetch(source) -> path`` downloads (``source=None``) or
            reads a file the user has, converts and caches them; a
            ``"module:function"`` string, imported only when fetching. ``None``: nothing to fetch.
    """

    name: str
    title: str
    description: str
    load: Callable[[], Any] | str
    kind: str = "classifier"
    source: str = ""
    aliases: tuple[str, ...] = ()
    classes: Callable[..., Any] | str | None = None
    offline: Callable[[], bool] | str | None = None
    fetch: Callable[..., Any] | str | None = None
    layer_names: Callable[..., Any] | str | None = None

    def __post_init__(self) -> None:
        _check_name("Model", self.name)
        if self.kind not in MODEL_KINDS:
            raise DeclarationError(f"Model {self.name!r}: kind must be one of {MODEL_KINDS}. Received: {self.kind!r}")
        object.__setattr__(self, "aliases", tuple(self.aliases))

    def loader(self) -> Callable[[], Any]:
        """The model's load function (importing it if declared as a string)."""
        return resolve_callable(self.load)

    def works_offline(self) -> bool:
        """Whether the model can load without a network connection right now."""
        return True if self.offline is None else bool(resolve_callable(self.offline)())

    def layer_checker(self) -> Callable[..., Any] | None:
        """The model's framework-free layer-name check (imported if declared as a string), or ``None``."""
        return None if self.layer_names is None else resolve_callable(self.layer_names)

    def class_resolver(self) -> Callable[..., Any] | None:
        """The model's framework-free class resolver (imported if declared as a string), or ``None``."""
        return None if self.classes is None else resolve_callable(self.classes)

    def fetcher(self) -> Callable[..., Any] | None:
        """The model's fetch function (importing it if declared as a string), or ``None``."""
        return None if self.fetch is None else resolve_callable(self.fetch)


_COMMAND_NAME_RE = re.compile(r"^[a-z][a-z0-9]*(-[a-z0-9]+)*$")


@dataclass(frozen=True)
class CommandSpec:
    """A ``neurofilters`` subcommand contributed by a plugin (datasette's ``register_commands``).

    A command is declared like a filter: its ``params`` (:class:`Param`, the
    positional arguments with ``positional=True``) and ``run(values, context)``.
    The host derives the parser, validation, ``--help``, the docs' command
    reference and the Python API (``neurofilters.run_command``) from them::

        CommandSpec(
            name="classify", help="print the top classes of images",
            params=(Param("image", "image", None, "Input images.", positional=True, nargs="+"),
                    Param("top", "int", 5, "How many classes.", minimum=1)),
            run="my_plugin.commands:classify",      # run(values, context) -> result object
            render="my_plugin.commands:print_rows",  # render(result, values) -> exit code (the CLI's printing)
        )

    The older form, ``configure(parser)`` plus ``run(args) -> int``, still works
    (third-party plugins written before declared commands): the plugin builds
    its own argparse arguments and reads the ``argparse.Namespace``.

    Attributes:
        name: The subcommand, lowercase words joined by dashes (``fit-noise``).
        help: One line for ``neurofilters --help``.
        configure: Older form only: ``configure(parser)`` adds the command's
            arguments to an ``argparse.ArgumentParser`` (or a ``"module:function"``
            string). ``None`` for a declared command.
        run: Declared form: ``run(values, context) -> result``, where ``values``
            are the validated :class:`~.params.ParamValues` (every declared
            name) and ``context`` the :class:`~.commands.CommandContext` (model
            cache, output writer, seed, progress); it returns a result object
            (rows, paths written, a report) that Python receives and ``render``
            prints. Older form: ``run(args) -> int``, the exit code. Either may
            be a ``"module:function"`` string, imported only when the command
            runs. Raise :class:`ParameterError` or :class:`UsageError` for a bad
            argument (exit 2) and :class:`NeurofiltersError` for a failure the
            user can act on (exit 1).
        description: Longer text for the command's ``--help``.
        compute: Older form only: optional ``compute(args) -> result`` that
            ``neurofilters.run_command`` returns to Python.
        params: Declared form: the command's parameters, positional ones first
            in command-line order, then its options.
        subcommands: Declared form: actions of the command (``explore patches``,
            ``explore similar``), each a declared :class:`CommandSpec`; the
            command itself then declares no ``params`` and no ``run``.
        render: Declared form: ``render(result, values) -> int | None`` prints
            the result on the command line and returns the exit code (``None``:
            0); or a ``"module:function"`` string. ``None``: nothing is printed.
    """

    name: str
    help: str
    configure: Callable[..., Any] | str | None = None
    run: Callable[..., Any] | str | None = None
    description: str = ""
    compute: Callable[..., Any] | str | None = None
    params: tuple[Param, ...] = ()
    subcommands: tuple[CommandSpec, ...] = ()
    render: Callable[..., Any] | str | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not _COMMAND_NAME_RE.match(self.name):
            raise DeclarationError(
                f"Command names must be lowercase words joined by dashes (like 'fit-noise'). Received: name={self.name!r}"
            )
        if not isinstance(self.help, str) or not self.help:
            raise DeclarationError(f"Command {self.name!r} needs a help line.")
        for attribute in ("configure", "run", "compute", "render"):
            value = getattr(self, attribute)
            if not (value is None or callable(value) or isinstance(value, str)):
                raise DeclarationError(
                    f"Command {self.name!r}: {attribute} must be None, callable or 'module:function'. "
                    f"Received: {attribute}={value!r}"
                )
        object.__setattr__(self, "params", tuple(self.params))
        object.__setattr__(self, "subcommands", tuple(self.subcommands))
        if self.configure is not None:
            self._check_older_form()
        else:
            self._check_declared_form()

    def _check_older_form(self) -> None:
        if self.run is None:
            raise DeclarationError(f"Command {self.name!r}: configure needs run(args) beside it.")
        if self.params or self.subcommands or self.render is not None:
            raise DeclarationError(
                f"Command {self.name!r} mixes the two forms: configure(parser) with params, subcommands or render. "
                "Declare params (and run(values, context)), or keep configure and run(args)."
            )

    def _check_declared_form(self) -> None:
        if self.compute is not None:
            raise DeclarationError(f"Command {self.name!r}: compute belongs to the older form; run(values, context) returns the result.")
        if self.subcommands:
            if self.params or self.run is not None or self.render is not None:
                raise DeclarationError(
                    f"Command {self.name!r} has subcommands: the actions declare params, run and render, not the command."
                )
            names = [sub.name for sub in self.subcommands]
            if len(set(names)) != len(names) or not all(isinstance(sub, CommandSpec) and sub.declared for sub in self.subcommands):
                raise DeclarationError(f"Command {self.name!r}: subcommands must be declared CommandSpecs with distinct names. Received: {names}")
            return
        if self.run is None:
            raise DeclarationError(f"Command {self.name!r} needs run(values, context) (or configure and run(args), the older form).")
        if not all(isinstance(param, Param) for param in self.params):
            raise DeclarationError(f"Command {self.name!r}: every parameter must be a Param.")
        names = [param.name for param in self.params]
        if len(set(names)) != len(names):
            raise DeclarationError(f"Command {self.name!r} declares a parameter twice: {names}")
        if "progress" in names:
            raise DeclarationError(f"Command {self.name!r}: 'progress' is reserved (run_command's progress callback, context.progress_bar).")
        positional = [param.positional for param in self.params]
        if positional != sorted(positional, reverse=True):
            raise DeclarationError(f"Command {self.name!r}: declare the positional parameters first, in command-line order. Received: {names}")
        flags = [flag for param in self.params if not param.positional for flag in (param.flag, param.short) if flag]
        if len(set(flags)) != len(flags):
            raise DeclarationError(f"Command {self.name!r} declares a flag twice: {flags}")

    @property
    def declared(self) -> bool:
        """Whether the command is declared with ``params`` (``False``: the older ``configure``/``run(args)`` form)."""
        return self.configure is None

    def subcommand(self, name: str) -> CommandSpec | None:
        """The action ``name`` of a command with subcommands, or ``None``."""
        return next((sub for sub in self.subcommands if sub.name == name), None)

    def configurer(self) -> Callable[..., Any]:
        """The function that adds the command's arguments (older form; imported if declared as a string)."""
        if self.configure is None:
            raise DeclarationError(f"Command {self.name!r} is declared with params; it has no configure function.")
        return resolve_callable(self.configure)

    def runner(self) -> Callable[..., Any]:
        """The command's run function (imported if declared as a string)."""
        if self.run is None:
            raise DeclarationError(f"Command {self.name!r} has subcommands; run one of them: {[s.name for s in self.subcommands]}")
        return resolve_callable(self.run)

    def renderer(self) -> Callable[..., Any] | None:
        """The command's render function (imported if declared as a string), or ``None``."""
        return None if self.render is None else resolve_callable(self.render)

    def computer(self) -> Callable[..., Any] | None:
        """The command's compute function (older form; imported if declared as a string), or ``None``."""
        return None if self.compute is None else resolve_callable(self.compute)
