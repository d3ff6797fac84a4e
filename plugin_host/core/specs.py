"""Declarations of filters and models, as plugins return them from their hooks."""

from __future__ import annotations

import importlib
import re
from collections.abc import Callable, Mapping
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

    Attributes:
        name: The subcommand, lowercase words joined by dashes (``fit-noise``).
        help: One line for ``neurofilters --help``.
        configure: ``configure(parser)`` adds the command's arguments to an
            ``argparse.ArgumentParser`` (or a ``"module:function"`` string).
            It must stay light: no Keras import.
        run: ``run(args) -> int`` runs the command with the parsed arguments and
            returns the exit code (or a ``"module:function"`` string, imported
            only when the command runs). Raise :class:`ParameterError` or
            :class:`UsageError` for a bad argument (exit 2) and
            :class:`NeurofiltersError` for a failure the user can act on (exit 1).
        description: Longer text for the command's ``--help``.
        compute: Optional ``compute(args) -> result`` (or a ``"module:function"``
            string): the command's work without printing, returning a result
            object (rows, paths, a report) that ``run`` renders. When declared,
            ``neurofilters.run_command`` returns that object to Python; without
            it, Python gets the exit code of ``run``. It raises what ``run``
            raises for the same arguments.
    """

    name: str
    help: str
    configure: Callable[..., Any] | str
    run: Callable[..., Any] | str
    description: str = ""
    compute: Callable[..., Any] | str | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not _COMMAND_NAME_RE.match(self.name):
            raise DeclarationError(
                f"Command names must be lowercase words joined by dashes (like 'fit-noise'). Received: name={self.name!r}"
            )
        if not isinstance(self.help, str) or not self.help:
            raise DeclarationError(f"Command {self.name!r} needs a help line.")
        for attribute in ("configure", "run"):
            value = getattr(self, attribute)
            if not (callable(value) or isinstance(value, str)):
                raise DeclarationError(
                    f"Command {self.name!r}: {attribute} must be callable or 'module:function'. Received: {value!r}"
                )
        if not (self.compute is None or callable(self.compute) or isinstance(self.compute, str)):
            raise DeclarationError(
                f"Command {self.name!r}: compute must be None, callable or 'module:function'. Received: compute={self.compute!r}"
            )

    def configurer(self) -> Callable[..., Any]:
        """The function that adds the command's arguments (imported if declared as a string)."""
        return resolve_callable(self.configure)

    def runner(self) -> Callable[..., Any]:
        """The command's run function (imported if declared as a string)."""
        return resolve_callable(self.run)

    def computer(self) -> Callable[..., Any] | None:
        """The command's compute function (imported if declared as a string), or ``None``."""
        return None if self.compute is None else resolve_callable(self.compute)
