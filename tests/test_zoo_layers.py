"""``neurofilters layers``: the analyzeNetwork table (types, native-size shapes, learnables, totals) in four formats."""

from __future__ import annotations

import csv
import importlib.util
import io
import json
import re
import shutil
from pathlib import Path

import pytest

import neurofilters.plugin_host as plugin_host
from neurofilters.plugin_host.cli.main import main

#: The zoo models that load offline on every machine, with their native input sides.
OFFLINE_MODELS = {"lite0": 224, "lite1": 240, "vgg16-hed": 224}


def _model(name: str):  # noqa: ANN202 - a ZooModel
    return plugin_host.FilterContext().load_model(name)


def _json_table(name: str, capsys: pytest.CaptureFixture[str]) -> dict:
    assert main(["layers", name, "--format", "json"]) == 0
    return json.loads(capsys.readouterr().out)


@pytest.mark.parametrize("name", sorted(OFFLINE_MODELS))
def test_totals_equal_count_params_at_the_native_size(name: str, capsys: pytest.CaptureFixture[str]) -> None:
    document = _json_table(name, capsys)
    network = _model(name).keras_model
    assert document["total"] == network.count_params()
    assert sum(row["count"] for row in document["layers"]) == network.count_params()
    assert document["trainable"] + document["non_trainable"] == network.count_params()
    side = OFFLINE_MODELS[name]
    assert document["input_size"] == side
    assert document["layers"][0]["type"] == "Input" and document["layers"][0]["activations"] == [side, side, 3]
    assert len(document["layers"]) == 1 + sum(1 for layer in network.layers if type(layer).__name__ != "InputLayer")
    assert main(["layers", name]) == 0
    assert f"Total learnables: {network.count_params():,}" in " ".join(capsys.readouterr().out.split())


def test_lite0_rows_say_type_shape_and_learnables(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["layers", "lite0", "--format", "csv"]) == 0
    rows = {row["name"]: row for row in csv.DictReader(io.StringIO(capsys.readouterr().out))}
    assert rows["stem_conv"]["type"] == "Conv2D" and rows["stem_conv"]["activations"] == "112×112×32"
    assert rows["stem_conv"]["learnables"] == "Weights 3×3×3×32" and rows["stem_conv"]["count"] == "864"
    assert rows["logits"]["learnables"] == "Weights 1280×1000, Bias 1000" and rows["logits"]["count"] == "1281000"
    assert rows["stem_bn"]["learnables"] == "Scale 32, Offset 32, Mean 32, Variance 32"
    # a layer without weights has none (not the stage's)
    assert rows["block5_expand_act"]["learnables"] == "–" and rows["block5_expand_act"]["count"] == "0"
    assert rows["input"]["type"] == "Input" and rows["total"]["count"] == "4694024"


def test_markdown_and_text_formats(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["layers", "vgg16-hed", "--format", "markdown"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == "| name | type | activations | learnables | count |"
    assert "| `block1_conv1` | Conv2D | 224×224×64 | Weights 3×3×3×64, Bias 64 | 1,792 |" in lines
    assert "| `block1_pool` | MaxPooling2D | 112×112×64 | – | – |" in lines
    assert lines[-1] == "| **total** | | | | **14,714,688** |"
    assert main(["layers", "vgg16-hed", "--all"]) == 0
    text = capsys.readouterr().out
    assert re.search(r"block1_pool\s+MaxPooling2D\s+112×112×64\s+–\s+–", text)


def test_a_bad_format_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["layers", "lite0", "--format", "xml"]) == 2
    assert '"--format" must be one of text, csv, json, markdown. Received: --format xml' in capsys.readouterr().err


def test_graph_draws_or_says_what_is_missing(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    target = tmp_path / "lite0.svg"
    code = main(["layers", "lite0", "--graph", str(target)])
    if importlib.util.find_spec("pydot") is not None and shutil.which("dot") is not None:
        assert code == 0 and target.read_bytes().lstrip().startswith((b"<?xml", b"<svg"))
    else:
        assert code == 1 and not target.exists()
        message = capsys.readouterr().err.strip().splitlines()
        assert len(message) == 1 and "--graph needs" in message[0] and "pip install pydot" in message[0]


def test_graph_never_overwrites(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    target = tmp_path / "mine.svg"
    target.write_text("keep")
    assert main(["layers", "lite0", "--graph", str(target)]) == 2
    assert target.read_text() == "keep" and "never overwritten" in capsys.readouterr().err


def test_the_atlas_header_counts_each_weight_once() -> None:
    from neurofilters.filters.explorer.atlas import _page

    model = _model("lite0")
    page = _page(model, model.layer_table(224), [], {}, {}, 0)
    assert f"{model.keras_model.count_params():,} learnables" in page  # 4,694,024, not the 8,613,736 of stage totals
