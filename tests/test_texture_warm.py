"""A warm worker's repeated texture and style calls: the compiled network and the statistics are reused,
the result is byte for byte that of a cold call, and the L-BFGS-B driver takes SciPy's own iterates."""

from __future__ import annotations

import numpy as np
import pytest


def test_unit_box_lbfgsb_takes_the_iterates_of_scipys_minimize() -> None:
    """Same points evaluated, in the same order, as ``minimize(..., method="L-BFGS-B", bounds=Bounds(0, 1))``;
    a callback raising StopIteration stops both after the same iteration."""
    from scipy.optimize import Bounds, minimize

    from neurofilters.filters.texture.engine import _setulb, lbfgsb_unit_box

    if _setulb() is None:
        pytest.skip("this SciPy's setulb is not the known one: optimise falls back to minimize")
    rng = np.random.default_rng(3)
    n = 240
    a = rng.standard_normal((n, n)) / np.sqrt(n)
    centre = rng.uniform(-0.5, 1.5, n)  # partly outside the box: some bounds are active

    def run(driver: str, stop_after: int | None) -> list[np.ndarray]:
        points: list[np.ndarray] = []
        iterations = [0]

        def fun(x: np.ndarray) -> tuple[float, np.ndarray]:
            points.append(x.copy())
            r = a @ (x - centre)
            return float(r @ r + 0.1 * np.sum(np.sin(3 * x))), 2 * a.T @ r + 0.3 * np.cos(3 * x)

        def callback(_: object) -> None:
            iterations[0] += 1
            if stop_after is not None and iterations[0] >= stop_after:
                raise StopIteration

        x0 = rng_start.copy()
        if driver == "scipy":
            minimize(fun, x0, jac=True, method="L-BFGS-B", bounds=Bounds(0.0, 1.0), callback=callback,
                     options={"maxiter": 25, "maxfun": 42, "maxcor": 20, "ftol": 0.0, "gtol": 0.0})
        else:
            assert lbfgsb_unit_box(fun, x0, 25, 42, 20, callback)
        return points

    rng_start = rng.uniform(0, 1, n)
    for stop_after in (None, 4):
        ours, theirs = run("ours", stop_after), run("scipy", stop_after)
        assert len(ours) == len(theirs) > 3
        for mine, scipys in zip(ours, theirs):
            np.testing.assert_array_equal(mine, scipys)


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
