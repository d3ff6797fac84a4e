"""Layer names and aliases of the embedded models, known without a deep-learning framework (``layer_names.json``).

The command line checks ``--layers`` and ``--layer`` with these tables before TensorFlow is imported,
so a typo fails in milliseconds with the nearest names, as a class name does. The tables are written
by :mod:`.make_layer_names` from the loaded models and checked against them by the tests. Names are
resolved as :meth:`~.model.ZooModel.resolve_layer` resolves them (aliases first, case-insensitively).
"""

from __future__ import annotations

import difflib
import functools
import json
from pathlib import Path
from typing import Any

from neurofilters.plugin_host import ParameterError

__all__ = ["check_layers", "layer_checker", "table"]

#: Words that are no layer name: the model's own choice.
_AUTO = "auto"


@functools.lru_cache(maxsize=1)
def _tables() -> dict[str, Any]:
    return json.loads(Path(__file__).with_name("layer_names.json").read_text(encoding="utf-8"))


def table(model: str) -> dict[str, Any]:
    """``{"layers": {raw: channels}, "aliases": {alias: raw}}`` of an embedded model.

    Raises:
        KeyError: ``model`` has no table.
    """
    return _tables()[model]


def _known(model: str, name: str) -> bool:
    entry = table(model)
    folded = name.lower()
    return (name in entry["aliases"] or name in entry["layers"]
            or any(alias.lower() == folded for alias in entry["aliases"]) or any(raw.lower() == folded for raw in entry["layers"]))


def check_layers(model: str, value: Any, *, param: str = "layers") -> None:
    """Refuse a layer name that ``model`` does not have, before the model loads.

    Args:
        model: An embedded model's name (``lite0``, ``lite1``, ``vgg16-hed``).
        value: A ``layer`` value (a name) or a validated ``layers`` value (``(name, weight)`` pairs); ``auto`` passes.
        param: The parameter's name, for the message (the command line shows its flag).

    Raises:
        ParameterError: An unknown name, with the nearest ones and where to see them all.
    """
    names = [value] if isinstance(value, str) else [pair[0] for pair in value or () if isinstance(pair, (tuple, list))]
    entry = table(model)
    for raw in names:
        name = str(raw).strip()
        if not name or name.lower() == _AUTO or _known(model, name):
            continue
        close = difflib.get_close_matches(name, [*entry["aliases"], *entry["layers"]], n=3, cutoff=0.6)
        hint = f" Did you mean: {', '.join(close)}?" if close else ""
        shown = name if len(name) <= 80 else name[:60] + f"… ({len(name)} characters)"
        raise ParameterError(
            f'"{param}" must name layers of model {model!r}. Received: {param}={shown!r}.{hint} '
            f"Run 'neurofilters layers {model}' to see them all.",
            param=param,
            value=name,
        )


def layer_checker(model: str) -> Any:
    """``check(value, param=...)`` for one embedded model (what its ``ModelSpec.layer_names`` holds)."""
    return functools.partial(check_layers, model)
