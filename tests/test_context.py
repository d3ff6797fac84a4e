"""The filter context and the per-process model cache."""

from __future__ import annotations

import threading

import pytest

from neurofilters.plugin_host import FilterCancelled, FilterContext, ModelCache, ModelSpec


def _counting_spec(name: str, source: str, loads: list[str]) -> ModelSpec:
    return ModelSpec(name=name, title=name, description="d", load=lambda: loads.append(source) or object(), source=source)


def test_aliases_share_one_loaded_model_and_files_with_one_stem_do_not() -> None:
    loads: list[str] = []
    specs = {
        "lite0": _counting_spec("lite0", "embedded", loads),
        "efficientnet-lite0": _counting_spec("lite0", "embedded", loads),
        "a/net.keras": _counting_spec("net", "file a/net.keras", loads),
        "b/net.keras": _counting_spec("net", "file b/net.keras", loads),
    }
    cache = ModelCache(specs.__getitem__)
    assert cache.get("lite0") is cache.get("efficientnet-lite0")
    assert cache.get("a/net.keras") is not cache.get("b/net.keras")
    assert loads == ["embedded", "file a/net.keras", "file b/net.keras"]
    assert "efficientnet-lite0" in cache
    cache.clear()
    assert "lite0" not in cache


def test_progress_is_clamped_and_cancellation_raises() -> None:
    seen: list[tuple[float, str]] = []
    cancel = threading.Event()
    context = FilterContext(seed=3, progress=lambda f, m: seen.append((f, m)), cancel_event=cancel)
    context.progress(1.5, "over")
    context.progress(-1, "under")
    assert seen == [(1.0, "over"), (0.0, "under")]
    cancel.set()
    with pytest.raises(FilterCancelled):
        context.progress(0.5)


def test_rng_streams_are_reproducible_and_distinct() -> None:
    first, again, other = FilterContext(seed=5).rng(1), FilterContext(seed=5).rng(1), FilterContext(seed=5).rng(2)
    a, b, c = first.random(4), again.random(4), other.random(4)
    assert (a == b).all() and not (a == c).all()
