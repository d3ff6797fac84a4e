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
    # declared with a choice Param: the filters' wording (the flag without quotes)
    assert "--format must be one of text, csv, json, markdown. Received: --format xml" in capsys.readouterr().err


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


def _small_vgg():  # noqa: ANN202 - a ZooModel
    """A VGG-shaped classifier small enough for every machine: convolutions of any size, a separate head at 16 px."""
    import keras

    from neurofilters.filters.zoo.model import ZooModel

    keras.utils.set_random_seed(0)
    inputs = keras.Input((None, None, 3))
    x = keras.layers.Conv2D(8, 3, padding="same", activation="relu", name="block1_conv1")(inputs)
    x = keras.layers.MaxPooling2D(4, name="block1_pool")(x)
    head = keras.Sequential([keras.Input((4, 4, 8)), keras.layers.Flatten(name="flatten"),
                             keras.layers.Dense(12, activation="relu", name="fc1"), keras.layers.Dense(6, activation="relu", name="fc2"),
                             keras.layers.Dense(5, name="predictions")], name="head")
    return ZooModel(name="small-vgg", kind="classifier", keras_model=keras.Model(inputs, x), preprocess=lambda images: images,
                    min_size=16, input_size=16, labels=[f"class {i}" for i in range(5)], classifier_head=head, head_input_size=16)


def test_a_separate_head_is_listed_with_its_learnables_and_counted() -> None:
    """VGG's fully connected head lives outside the backbone's graph: its rows follow the backbone's, and the totals count both."""
    from neurofilters.filters.zoo.commands import layer_table, render_layers

    model = _small_vgg()
    table = layer_table(model)
    expected = model.keras_model.count_params() + model._classifier_head.count_params()
    assert table.total == expected == 224 + 0 + (128 * 12 + 12) + (12 * 6 + 6) + (6 * 5 + 5)
    assert sum(row.count for row in table.rows) == expected
    assert [row.name for row in table.rows[-4:]] == ["flatten", "fc1", "fc2", "predictions"]
    assert table["fc1"].type == "Dense" and table["fc1"].activations == (12,) and table["fc1"].count == 128 * 12 + 12
    assert table["fc1"].learnables_text == "Weights 128×12, Bias 12"
    assert table["flatten"].learnables_text == "–" and table["flatten"].activations == (128,)
    assert table["predictions"].learnables_text == "Weights 6×5, Bias 5"
    document = json.loads(render_layers(table, "json"))
    assert document["total"] == expected and document["layers"][-1]["name"] == "predictions"
    text = render_layers(table)  # the short table lists the head too (its units are saliency and hallucinate targets)
    assert re.search(r"fc2\s+-\s+Dense\s+6\s+fully connected head", text)
    assert f"Total learnables: {expected:,}" in " ".join(text.split())


@pytest.mark.slow
def test_vgg16_with_its_head_totals_count_params_of_backbone_and_head() -> None:
    """The real VGG16 architecture (random weights: Keras' ImageNet file needs a download): fc1, fc2, predictions listed."""
    from neurofilters.filters.zoo.applications import load_application
    from neurofilters.filters.zoo.commands import layer_table

    model = load_application("vgg16", weights=None)
    table = layer_table(model)
    assert table.total == model.keras_model.count_params() + model._classifier_head.count_params() == 138_357_544
    assert table["fc1"].learnables_text == "Weights 25088×4096, Bias 4096" and table["fc1"].count == 102_764_544
    assert table["predictions"].activations == (1000,)
    assert table.rows[-1].name == "predictions"
