"""The GIMP dialog's plan: sections from the declarations, widgets, mnemonics, and what counts as given.

These are the plug-in's GIMP-free functions (``gimp_plugin/plan.py``), run on the real manifest of
the built-in filters; the real dialog is exercised in GIMP by
``tests/gimp/test_gimp_real.py``.
"""

from __future__ import annotations

import pytest

import neurofilters.plugin_host as plugin_host
from neurofilters.gimp_plugin import plan as plugin_plan
from neurofilters.plugin_host.gimp.worker import describe_filters


@pytest.fixture(scope="module")
def deepdream() -> dict:
    plugin_host.reset_registry()
    return next(item for item in describe_filters()["filters"] if item["name"] == "deepdream")


def test_sections_follow_group_and_advanced(deepdream):
    sections = plugin_plan.dialog_sections(deepdream)
    spec = plugin_host.get_registry().get_filter("deepdream")
    essential = [p["name"] for p in sections["essential"]]
    assert essential == [p.name for p in spec.params if not p.group and not p.advanced]
    assert len(essential) <= 8  # a few essential controls, not 30
    for title, params in sections["groups"]:
        assert params and all(p["group"] == title and not p["advanced"] for p in params)
    advanced = [p["name"] for _, params in sections["advanced"] for p in params]
    assert sorted(advanced) == sorted(p.name for p in spec.params if p.advanced)
    assert {"relu6", "precision", "tile_size", "memory_mb"} <= set(advanced)
    placed = essential + [p["name"] for _, params in sections["groups"] for p in params] + advanced
    assert sorted(placed) == sorted(p.name for p in spec.params)  # every parameter exactly once


def test_widgets_sliders_and_increments(deepdream):
    params = {p["name"]: p for p in deepdream["params"]}
    kinds = {name: plugin_plan.widget_kind(param) for name, param in params.items()}
    assert kinds["chroma"] == kinds["step_size"] == kinds["steps"] == "slider"
    assert kinds["memory_mb"] == kinds["channel"] == "spin"  # a huge or open range: a spin button
    assert kinds["layers"] == "layers" and kinds["guide"] == "drawable" and kinds["detail"] == "check"
    for param in params.values():
        if param["kind"] in ("int", "float"):
            step, page, digits = plugin_plan.increments(param)
            assert 0 < step <= page, param["name"]
            if param["minimum"] is not None and param["maximum"] is not None:
                assert page <= param["maximum"] - param["minimum"], param["name"]
            default = float(param["default"])
            assert abs(round(default, digits) - default) < 1e-9, (param["name"], digits)  # the default shows exactly


def test_mnemonics_are_unique_and_avoid_the_dialog_buttons(deepdream):
    labels = [p["label"] or p["name"] for p in deepdream["params"]] + ["Seed", "Output", plugin_plan.ADVANCED_TITLE]
    marked = plugin_plan.mnemonic_labels(labels)
    keys = []
    for original, label in zip(labels, marked):
        assert label.replace("__", "\0").replace("_", "", 1).replace("\0", "_") == original  # only a mark added
        index = label.replace("__", "\0\0").find("_")
        if index >= 0:
            keys.append(label[index + 1].lower())
    assert len(keys) == len(set(keys))
    assert not set(keys) & set(plugin_plan.RESERVED_MNEMONICS)
    assert len(keys) >= 18  # the 20 free letters (and digits) go to the first labels: the essential ones in the dialog
    assert plugin_plan.mnemonic_labels(["x_y", "Rr"]) == ["_x__y", "Rr"]


def test_given_is_what_differs_from_the_default_or_was_touched(deepdream):
    values = {p["name"]: p["default_text"] if p["kind"] in ("layers", "layer") else p["default"] for p in deepdream["params"]}
    values = {**values, "guide": "", "mask": ""}
    assert plugin_plan.given_names(deepdream, values) == []
    changed = {**values, "chroma": 0.5, "model": "vgg16-hed", "guide": "", "layers": "block5_expand_act:1"}
    assert plugin_plan.given_names(deepdream, changed) == ["model", "layers", "chroma"]
    # Touched in the dialog and set back to the default: still the user's explicit choice.
    assert plugin_plan.given_names(deepdream, values, touched={"chroma"}) == ["chroma"]
    # A layer chosen for an image parameter is given (its value travels as pixels, the text stays empty).
    assert plugin_plan.given_names(deepdream, values, touched={"guide"}) == ["guide"]
