"""A warm worker's repeated texture and style calls: the compiled network and the statistics are reused,
the result is byte for byte that of a cold call."""

from __future__ import annotations

import numpy as np
import pytest


def test_memo_is_bounded_read_only_and_least_recently_used_first() -> None:
    from neurofilters.filters.texture.engine import Memo, fingerprint

    memo = Memo(max_bytes=3 * 800)
    made: list[str] = []

    def maker(name: str) -> object:
        return lambda: made.append(name) or [np.zeros(100)]  # 800 bytes

    for name in "abc":
        memo.get(name, maker(name))
    memo.get("a", maker("a"))  # a hit: "a" is now the newest
    memo.get("d", maker("d"))  # evicts "b", the least recently used
    memo.get("b", maker("b"))
    assert made == ["a", "b", "c", "d", "b"] and memo.nbytes <= 3 * 800
    big = memo.get("big", lambda: [np.zeros(400)])  # more than the whole store: returned, not kept
    assert big[0].flags.writeable and memo.nbytes == 3 * 800
    memo.get("b", maker("b"))
    assert made[-1] == "b" and len(made) == 5  # nothing was evicted for it
    with pytest.raises(ValueError):
        memo.get("d", maker("d"))[0][0] = 1.0
    image = np.zeros((4, 5, 3), np.float32)
    changed = image.copy()
    changed[0, 0, 0] = 1e-7
    assert fingerprint(image) == fingerprint(image.copy()) != fingerprint(changed)
    assert fingerprint(image) != fingerprint(image.reshape(5, 4, 3))


@pytest.mark.parametrize("name", ["texture", "style-transfer"])
def test_warm_calls_reuse_the_network_and_give_the_cold_bytes(name: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """The second call in a process traces nothing and analyses the sample again for nothing; its bytes are
    those of the first call and of a call with the caches off."""
    import neurofilters
    from neurofilters.filters.texture import synthesis

    rng = np.random.default_rng(0)
    image = rng.random((40, 56, 3)).astype(np.float32)
    other = rng.random((48, 48, 3)).astype(np.float32)
    values = {"steps": 2, "octaves": 1, "precision": "float32", ("source" if name == "texture" else "style"): other}

    synthesis.clear_engine_cache()
    first = neurofilters.apply(name, image, seed=0, **values).pixels
    [entry] = synthesis._NETWORKS.values()
    traces, misses = entry.network.traces, entry.memo.misses
    second = neurofilters.apply(name, image, seed=0, **values).pixels
    assert entry.network.traces == traces  # no new trace
    assert entry.memo.misses == misses and entry.memo.hits > 0  # the statistics were not computed again
    monkeypatch.setenv("NEUROFILTERS_TEXTURE_CACHE", "0")
    cold = neurofilters.apply(name, image, seed=0, **values).pixels
    assert first.tobytes() == second.tobytes() == cold.tobytes()
    synthesis.clear_engine_cache()
