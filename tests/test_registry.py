"""The registry: built-ins, entry-point discovery, failure isolation, conflicts."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

import neurofilters.plugin_host as plugin_host
from neurofilters.plugin_host import FilterSpec, ModelSpec, RegistryError, apply_filter, build_registry

from plugin_factory import GOOD_PLUGIN, make_distribution


@pytest.fixture
def site(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A folder on sys.path that acts as site-packages, with autoload on."""
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delenv("NEUROFILTERS_DISABLE_PLUGIN_AUTOLOAD")
    yield tmp_path
    for name in list(sys.modules):
        if name.startswith("nfplug_"):
            del sys.modules[name]


def test_builtins_register_through_the_same_hooks() -> None:
    registry = build_registry()
    builtin_names = {info.name for info in registry.plugins}
    assert set(plugin_host.BUILTIN_PLUGINS) <= builtin_names
    assert registry.failures == []
    assert "deepdream" in registry.filters
    assert "lite0" in registry.models and "vgg16-hed" in registry.models
    assert all(isinstance(spec, FilterSpec) for spec in registry.filters.values())
    assert all(isinstance(spec, ModelSpec) for spec in registry.models.values())


def test_entry_point_plugin_is_discovered_and_runs(site: Path) -> None:
    make_distribution(site, "nf-good", {"nfplug_good": GOOD_PLUGIN.format(name="invert-test")})
    registry = build_registry()
    assert "invert-test" in registry.filters
    info = next(p for p in registry.plugins if p.name == "nfplug_good")
    assert (info.distribution, info.version, info.filters) == ("nf-good", "1.0", ["invert-test"])
    image = np.full((2, 3, 3), 0.25, dtype=np.float32)
    out = apply_filter(registry.get_filter("invert-test"), image)
    np.testing.assert_allclose(out, 0.75)


def test_autoload_can_be_disabled(site: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    make_distribution(site, "nf-good", {"nfplug_good": GOOD_PLUGIN.format(name="invert-test")})
    monkeypatch.setenv("NEUROFILTERS_DISABLE_PLUGIN_AUTOLOAD", "1")
    assert "invert-test" not in build_registry().filters
    assert "invert-test" in build_registry(autoload=True).filters


@pytest.mark.parametrize(
    ("source", "fragment"),
    [
        ("raise ImportError('needs libfoo')", "import failed: ImportError: needs libfoo"),
        (
            "from neurofilters.plugin_host import hookimpl\n@hookimpl\ndef register_filters():\n    raise RuntimeError('boom')\n",
            "register_filters() raised RuntimeError: boom",
        ),
        (
            "from neurofilters.plugin_host import hookimpl\n@hookimpl\ndef register_filters():\n    return ['not a spec']\n",
            "register_filters() returned str 'not a spec'; expected FilterSpec objects",
        ),
        (
            "from neurofilters.plugin_host import hookimpl\n@hookimpl\ndef register_models():\n    return [42]\n",
            "register_models() returned int 42; expected ModelSpec objects",
        ),
        (
            "from neurofilters.plugin_host import FilterSpec, hookimpl\n@hookimpl\ndef register_filters():\n"
            "    return [FilterSpec(name='Bad Name', title='t', summary='s', description='', category='c',"
            " params=(), run=print)]\n",
            "register_filters() raised DeclarationError",
        ),
    ],
)
def test_broken_plugin_is_reported_and_others_keep_working(site: Path, source: str, fragment: str) -> None:
    make_distribution(site, "nf-broken", {"nfplug_broken": source})
    make_distribution(site, "nf-good", {"nfplug_good": GOOD_PLUGIN.format(name="invert-test")})
    registry = build_registry()
    assert "invert-test" in registry.filters
    assert "deepdream" in registry.filters
    failure = next(f for f in registry.failures if f.plugin == "nfplug_broken")
    assert failure.distribution == "nf-broken"
    assert fragment in str(failure)
    assert str(failure).startswith('Error in plugin "nfplug_broken" (nf-broken)')


def test_same_filter_name_twice_names_both_distributions(site: Path) -> None:
    make_distribution(site, "nf-one", {"nfplug_one": GOOD_PLUGIN.format(name="twin")})
    make_distribution(site, "nf-two", {"nfplug_two": GOOD_PLUGIN.format(name="twin")})
    registry = build_registry()
    with pytest.raises(RegistryError) as info:
        registry.get_filter("twin")
    assert "nf-one" in str(info.value) and "nf-two" in str(info.value)
    assert "twin" not in registry.filters
    assert "deepdream" in registry.filters


def test_plugin_cannot_take_a_builtin_name(site: Path) -> None:
    make_distribution(site, "nf-squatter", {"nfplug_squat": GOOD_PLUGIN.format(name="deepdream")})
    registry = build_registry()
    with pytest.raises(RegistryError, match="neurofilters.*nf-squatter"):
        registry.get_filter("deepdream")


def test_unknown_names_suggest_close_matches() -> None:
    registry = build_registry()
    with pytest.raises(RegistryError, match=r"Received: 'deepdraem'\. Did you mean: deepdream\?"):
        registry.get_filter("deepdraem")
    with pytest.raises(RegistryError, match="Did you mean: lite1, lite0"):
        registry.get_model("lite9")


def test_model_aliases_resolve() -> None:
    registry = build_registry()
    assert registry.get_model("efficientnet-lite0").name == "lite0"
