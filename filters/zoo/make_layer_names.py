"""Writes ``layer_names.json``: every layer, alias and channel count of the embedded models (``python -m neurofilters.filters.zoo.make_layer_names``).

The command line checks ``--layers``, ``--layer`` and ``--channel`` against this table before TensorFlow
is imported (:mod:`.layer_names`); ``tests/test_zoo_layer_names.py`` fails when it no longer matches the
models, so rerun this after changing a model's layers or aliases.
"""

from __future__ import annotations

import json
from pathlib import Path

#: The models whose weights come with the installed packages (the ones a first run uses).
EMBEDDED = ("lite0", "lite1", "vgg16-hed")
TABLE = Path(__file__).with_name("layer_names.json")


def table_of(name: str) -> dict[str, object]:
    """The layers (raw names, in order, with their channel counts) and aliases of the zoo's model ``name``."""
    import neurofilters

    model = neurofilters.load_model(name)
    layers = {info.name: int(info.output_shape[-1]) if info.output_shape and info.output_shape[-1] else 0 for info in model.layer_table()}
    return {"layers": layers, "aliases": model.aliases}


def main() -> None:
    """Rebuild the table from the loaded models."""
    TABLE.write_text(json.dumps({name: table_of(name) for name in EMBEDDED}, indent=1, sort_keys=True) + "\n", encoding="utf-8")
    print(f"wrote {TABLE}")


if __name__ == "__main__":
    main()
