"""Presets declared on ``FilterSpec`` and resolved by the host (a value the user gave beats the preset)."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import neurofilters
import neurofilters.plugin_host as plugin_host
from plugin_factory import make_distribution
from neurofilters.plugin_host import DeclarationError, FilterSpec, ModelCache, Param, validate_params
from neurofilters.plugin_host.core.call import apply_filter, apply_filter_batch, resolve_presets

PARAMS = (
    Param("preset", "choice", "none", "Named settings.", choices=("none", "warm")),
    Param("amount", "float", 0.5, "How much.", minimum=0.0, maximum=1.0),
    Param("colour", "choice", "red", "Which channel.", choices=("red", "blue")),
)
WARM = {"amount": 0.25, "colour": "blue"}


def _fill(image: np.ndarray, params: dict[str, Any], context: Any) -> np.ndarray:
    out = np.zeros_like(image)
    out[:, :, 0 if params["colour"] == "red" else 2] = params["amount"]
    return out


def _spec(**changes: Any) -> FilterSpec:
    fields: dict[str, Any] = dict(
        name="tint-preset", title="Tint", summary="Fill a channel.", description="", category="Test",
        params=PARAMS, run=_fill, presets={"none": {}, "warm": WARM},
    )
    fields.update(changes)
    return FilterSpec(**fields)


# --------------------------------------------------------------------------- declaration
@pytest.mark.parametrize(
    ("changes", "words"),
    [
        ({"presets": {"none": {}, "warm": {"amount": 2.0}}}, ("'tint-preset'", "'warm'", "'amount'", "2.0")),
        ({"presets": {"none": {}, "warm": {"colour": "green"}}}, ("'tint-preset'", "'warm'", "'colour'", "green")),
        ({"presets": {"none": {}, "warm": {"amuont": 0.1}}}, ("'tint-preset'", "'warm'", "'amuont'", "Declared:")),
        ({"presets": {"none": {}, "warm": {"preset": "none"}}}, ("'tint-preset'", "'warm'", "'preset'")),
        ({"presets": {"none": {}, "warm": {}, "cold": {}}}, ("'tint-preset'", "exactly the preset names", "cold")),
        ({"preset_param": "colour"}, ("'tint-preset'", "choices of 'colour'")),
        ({"preset_param": "amount"}, ("'tint-preset'", "'amount'", "'choice' parameter")),
        ({"presets": {}, "model_presets": {"lite0": "warm"}}, ("'tint-preset'", "model_presets needs presets")),
        ({"model_presets": {"lite0": "warm"}}, ("'tint-preset'", "'auto' preset")),
    ],
)
def test_a_bad_preset_is_refused_at_declaration(changes: dict[str, Any], words: tuple[str, ...]) -> None:
    with pytest.raises(DeclarationError) as raised:
        _spec(**changes)
    for word in words:
        assert word in str(raised.value), (word, str(raised.value))


def test_model_presets_must_name_a_preset_and_need_a_model_parameter() -> None:
    params = (Param("preset", "choice", "auto", "Named settings.", choices=("auto", "warm")), *PARAMS[1:])
    presets = {"auto": {}, "warm": WARM}
    with pytest.raises(DeclarationError, match="needs a parameter of kind 'model'"):
        _spec(params=params, presets=presets, model_presets={"lite0": "warm"})
    with_model = (*params, Param("model", "model", "lite0", "Network."))
    with pytest.raises(DeclarationError, match=r"model_presets\['lite0'\]: 'cold' is not a preset"):
        _spec(params=with_model, presets=presets, model_presets={"lite0": "cold"})
    spec = _spec(params=with_model, presets=presets, model_presets={"vgg16-hed": "warm"})
    assert spec.preset_name(validate_params(spec.params, {})) is None  # lite0: no tuned preset
    assert spec.preset_name(validate_params(spec.params, {"model": "vgg16-hed"})) == "warm"
    assert spec.preset_name(validate_params(spec.params, {"model": "vgg16-hed", "preset": "warm"})) == "warm"


def test_preset_values_are_validated_once_at_declaration() -> None:
    """The deepdream declaration keeps its presets' values in their validated form."""
    from neurofilters.filters.deepdream.plugin import PRESETS, deepdream_spec

    spec = deepdream_spec()
    assert set(spec.presets) == set(PRESETS) and spec.model_presets == {"vgg16-hed": "vgg16-classic"}
    assert spec.presets["tf-tutorial"]["layers"] == (("mixed3", 1.0), ("mixed5", 1.0))
    assert spec.presets["vgg16-classic"]["chroma"] == 0.15


# --------------------------------------------------------------------------- resolution
def test_resolve_presets_gives_the_users_values_priority() -> None:
    spec = _spec()
    assert resolve_presets(spec, validate_params(PARAMS, {"preset": "warm"})) | {"preset": "x"} == {
        "preset": "x", **WARM
    }
    # a given value equal to the default still beats the preset
    mine = resolve_presets(spec, validate_params(PARAMS, {"preset": "warm", "amount": 0.5}))
    assert (mine["amount"], mine["colour"]) == (0.5, "blue")
    # given unknown (a plain dict): a value differing from its default counts as given
    assert resolve_presets(spec, {"preset": "warm", "amount": 0.5, "colour": "red"}) == {"preset": "warm", **WARM}
    assert resolve_presets(spec, {"preset": "warm", "amount": 0.75, "colour": "red"})["amount"] == 0.75
    # an explicit given overrides what the values say
    assert resolve_presets(spec, validate_params(PARAMS, {"preset": "warm"}), given={"colour"})["colour"] == "red"
    # no preset declared: values pass through unchanged
    plain = _spec(presets={})
    values = validate_params(PARAMS, {"preset": "warm"})
    assert resolve_presets(plain, values) == dict(values)


def test_the_host_resolves_presets_before_a_filter_runs_one_and_batched() -> None:
    seen: list[tuple[dict[str, Any], frozenset[str] | None]] = []

    def run(image: np.ndarray, params: dict[str, Any], context: Any) -> np.ndarray:
        seen.append((dict(params), context.given))
        return _fill(image, params, context)

    def batch_run(images: list, params: dict[str, Any], contexts: list) -> list:
        return [run(image, params, context) for image, context in zip(images, contexts)]

    spec = _spec(run=run, batch_run=batch_run)
    grey = np.full((4, 5, 3), 0.5, np.float32)
    out = apply_filter(spec, grey, {"preset": "warm"})
    assert np.all(out[:, :, 2] == 0.25) and np.all(out[:, :, 0] == 0)
    assert seen[-1] == ({"preset": "warm", **WARM}, frozenset({"preset"}))  # context.given stays for third parties
    out = apply_filter(spec, grey, {"preset": "warm", "colour": "red"})
    assert np.all(out[:, :, 0] == 0.25) and np.all(out[:, :, 2] == 0)
    values = validate_params(PARAMS, {"preset": "warm", "amount": 0.5})
    outs = apply_filter_batch(spec, [grey, grey], values, seeds=[1, 2], models=ModelCache())
    assert all(np.all(o[:, :, 2] == 0.5) for o in outs)
    assert seen[-1] == ({"preset": "warm", "amount": 0.5, "colour": "blue"}, frozenset({"preset", "amount"}))


THIRD_PARTY = '''
from neurofilters.plugin_host import FilterSpec, Param, hookimpl

SEEN = []

def run(image, params, context):
    SEEN.append((dict(params), context.given))
    out = image * 0.0
    out[:, :, 0 if params["colour"] == "red" else 2] = params["amount"]
    return out

@hookimpl
def register_filters():
    return [FilterSpec(
        name="tp-tint", title="Tint", summary="Fill a channel.", description="", category="Test",
        params=(
            Param("preset", "choice", "none", "Named settings.", choices=("none", "warm")),
            Param("amount", "float", 0.5, "How much.", minimum=0.0, maximum=1.0),
            Param("colour", "choice", "red", "Which channel.", choices=("red", "blue")),
        ),
        run=run,
        presets={"none": {}, "warm": {"amount": 0.25, "colour": "blue"}},
    )]
'''


def test_a_third_party_filter_gets_its_preset_unless_given(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Through ``neurofilters.apply``, a plugin discovered by its entry point, as a user installs it."""
    site = make_distribution(tmp_path / "site", "tp-tint-dist", {"tp_tint": THIRD_PARTY})
    monkeypatch.syspath_prepend(str(site))
    monkeypatch.setenv("NEUROFILTERS_DISABLE_PLUGIN_AUTOLOAD", "")
    plugin_host.reset_registry()
    try:
        image = np.full((6, 8, 3), 0.5, np.float32)
        warm = neurofilters.apply("tp-tint", image, preset="warm")
        assert np.allclose(warm.pixels[:, :, 2], 0.25) and np.allclose(warm.pixels[:, :, 0], 0.0)
        mine = neurofilters.apply("tp-tint", image, preset="warm", amount=0.5)  # the default, given: it wins
        assert np.allclose(mine.pixels[:, :, 2], 0.5)
        plain = neurofilters.apply("tp-tint", image)
        assert np.allclose(plain.pixels[:, :, 0], 0.5) and np.allclose(plain.pixels[:, :, 2], 0.0)
        seen = sys.modules["tp_tint"].SEEN
        assert seen[0] == ({"preset": "warm", "amount": 0.25, "colour": "blue"}, frozenset({"preset"}))
        assert seen[1] == ({"preset": "warm", "amount": 0.5, "colour": "blue"}, frozenset({"preset", "amount"}))
    finally:
        monkeypatch.undo()
        plugin_host.reset_registry()
        sys.modules.pop("tp_tint", None)
