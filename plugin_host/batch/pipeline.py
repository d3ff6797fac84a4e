"""Pipelines (several filters in a row) and parameter files.

A pipeline file (TOML; YAML when PyYAML is installed; JSON) looks like::

    name = "dream-soft"        # optional, the {filter} field of output names
    seed = 7                   # optional base seed (the CLI's --seed wins)

    [[steps]]
    filter = "deepdream"
    params = { steps = 4, octaves = 2 }

    [[steps]]
    filter = "blur"

A parameter file (``--params``) holds one filter's values, flat or under
``[params]``. The GIMP plug-in can read the same files as presets.
"""

from __future__ import annotations

import json
import re
import tomllib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..core.errors import ParameterError
from ..core.params import format_value, parse_seed, shown_value, validate_params
from ..core.specs import FilterSpec

__all__ = ["Step", "Pipeline", "load_mapping_file", "load_pipeline", "parse_pipeline", "single_step"]


@dataclass(frozen=True)
class Step:
    """One filter with its validated parameter values."""

    spec: FilterSpec
    values: dict[str, Any]

    def describe(self) -> dict[str, Any]:
        """The step as plain data (filter name and parameters as the user would type them)."""
        return {
            "filter": self.spec.name,
            "params": {p.name: format_value(p, self.values[p.name]) for p in self.spec.params},
        }

    def hash_data(self) -> dict[str, Any]:
        """The step as the parameter hash sees it: the validated values themselves.

        (:meth:`describe`'s text can round, e.g. colours to ``#rrggbb``; the
        hash must tell apart every pair of values that can give different outputs.)
        """
        data: dict[str, Any] = {"filter": self.spec.name, "params": {p.name: self.values[p.name] for p in self.spec.params}}
        # A value set explicitly to its default can differ from leaving it out (a preset fills
        # only what was not given): such names are part of the hash. Without them the hash is
        # what it always was, so journals of earlier runs stay valid.
        given = getattr(self.values, "given", None) or frozenset()
        explicit = sorted(p.name for p in self.spec.params if p.name in given and self.values[p.name] == p.default)
        if explicit:
            data["given_defaults"] = explicit
        return data


@dataclass(frozen=True)
class Pipeline:
    """Filters applied one after the other to every image."""

    steps: tuple[Step, ...]
    name: str
    seed: int | None = None
    source: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    def describe(self) -> list[dict[str, Any]]:
        """Every step as plain data, parameters as the user would type them (for reports)."""
        return [step.describe() for step in self.steps]

    def hash_data(self) -> list[dict[str, Any]]:
        """Every step with its validated values (what the parameter hash covers)."""
        return [step.hash_data() for step in self.steps]


def load_mapping_file(path: str | Path) -> dict[str, Any]:
    """Read a TOML, YAML or JSON file holding a mapping.

    Raises:
        ParameterError: Missing file, unknown suffix, syntax error, YAML
            without PyYAML, or a top level that is not a mapping.
    """
    path = Path(path)
    suffix = path.suffix.lower()
    try:
        raw = path.read_bytes()
    except OSError as error:
        raise ParameterError(f"Cannot read {path}: {error.strerror or error}. Received: {path}", value=str(path)) from None
    try:
        if suffix == ".toml":
            data: Any = tomllib.loads(raw.decode("utf-8"))
        elif suffix in (".yaml", ".yml"):
            try:
                import yaml  # type: ignore[import-untyped]
            except ImportError:
                raise ParameterError(
                    f"Reading YAML needs PyYAML, which is not installed. Received: {path}; "
                    "run 'pip install pyyaml', or write the file as TOML.",
                    value=str(path),
                ) from None
            data = yaml.safe_load(raw.decode("utf-8"))
        elif suffix == ".json":
            data = json.loads(raw.decode("utf-8"))
        else:
            raise ParameterError(
                f"Unknown settings file type. Received: {path}; use .toml, .yaml/.yml or .json.", value=str(path)
            )
    except ParameterError:
        raise
    except Exception as error:  # tomllib/json/yaml syntax errors have various types
        raise ParameterError(f"Syntax error in {path}: {error}", value=str(path)) from None
    if not isinstance(data, dict):
        raise ParameterError(f"{path} must hold a table/mapping at the top. Received: {type(data).__name__}", value=str(path))
    return data


def _validate(spec: FilterSpec, values: Mapping[str, Any], where: str) -> dict[str, Any]:
    try:
        return validate_params(spec.params, values)
    except ParameterError as error:
        raise ParameterError(f"{where}: {error}", param=error.param, value=error.value) from None


def single_step(spec: FilterSpec, values: Mapping[str, Any], *, params_file: str | Path | None = None) -> Pipeline:
    """A one-filter pipeline; ``values`` (from the command line) override the file's."""
    merged: dict[str, Any] = {}
    source = ""
    if params_file is not None:
        data = load_mapping_file(params_file)
        if isinstance(data.get("params"), dict):
            extra_keys = set(data) - {"params", "filter"}
            if extra_keys:
                raise ParameterError(f"{params_file}: unexpected keys {sorted(extra_keys)} beside [params]", value=str(params_file))
            data = data["params"]
        merged.update(data)
        source = str(params_file)
    merged.update(values)
    where = f"parameters from {params_file}" if params_file else f"filter {spec.name!r}"
    return Pipeline(steps=(Step(spec, _validate(spec, merged, where)),), name=spec.name, source=source)


def parse_pipeline(data: Mapping[str, Any], get_filter: Any, *, source: str = "<pipeline>") -> Pipeline:
    """Build a pipeline from parsed file data.

    Args:
        data: The file's top-level mapping.
        get_filter: ``get_filter(name) -> FilterSpec`` (``registry.get_filter``).
        source: File name for error messages.

    Raises:
        ParameterError: Unknown keys, no steps, bad values.
        RegistryError: An unknown filter name.
    """
    allowed = {"name", "seed", "steps", "description"}
    unknown = set(data) - allowed
    if unknown:
        raise ParameterError(f"{source}: unknown top-level keys {sorted(unknown)}; allowed: {sorted(allowed)}", value=source)
    raw_steps = data.get("steps")
    if not isinstance(raw_steps, Sequence) or isinstance(raw_steps, str) or not raw_steps:
        raise ParameterError(
            f"{source}: needs a non-empty list of steps ([[steps]] tables with filter = \"NAME\"). Received: steps={shown_value(raw_steps)}",
            value=source,
        )
    steps = []
    for number, raw in enumerate(raw_steps, start=1):
        if not isinstance(raw, Mapping) or not isinstance(raw.get("filter"), str):
            raise ParameterError(f"{source}: step {number} needs filter = \"NAME\". Received: {shown_value(raw)}", value=source)
        extra = set(raw) - {"filter", "params"}
        if extra:
            raise ParameterError(f"{source}: step {number} has unknown keys {sorted(extra)}; allowed: filter, params", value=source)
        params = raw.get("params", {})
        if not isinstance(params, Mapping):
            raise ParameterError(f"{source}: step {number} params must be a table. Received: {shown_value(params)}", value=source)
        spec = get_filter(raw["filter"])
        steps.append(Step(spec, _validate(spec, params, f"{source} step {number} ({spec.name})")))
    seed = data.get("seed")
    if seed is not None:
        try:
            seed = parse_seed(seed)
        except ParameterError as error:
            raise ParameterError(f"{source}: {error}", param="seed", value=seed) from None
    name = data.get("name") or "+".join(step.spec.name for step in steps)
    if not isinstance(name, str) or not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._+-]*", name):
        raise ParameterError(
            f"{source}: name must be letters, digits, '.', '_', '+' or '-' (it goes into file names). Received: name={shown_value(name)}",
            value=source,
        )
    return Pipeline(steps=tuple(steps), name=name, seed=seed, source=source)


def load_pipeline(path: str | Path, get_filter: Any) -> Pipeline:
    """Read and validate a pipeline file (see the module docstring for the format)."""
    return parse_pipeline(load_mapping_file(path), get_filter, source=str(path))
