"""The texture filters' bounded L-BFGS, cross-checked against SciPy's L-BFGS-B on problems with known minima."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.optimize import Bounds, minimize

from neurofilters.filters.texture.lbfgs import minimize_box


def _quadratic(size: int, seed: int):
    """A badly conditioned convex quadratic whose unconstrained minimum lies partly outside [0, 1]."""
    rng = np.random.default_rng(seed)
    scale = 10.0 ** rng.uniform(-1, 3, size)
    centre = rng.uniform(-0.5, 1.5, size)

    def fun(x: np.ndarray) -> tuple[float, np.ndarray]:
        difference = x - centre
        return float(np.sum(scale * difference**2)), 2 * scale * difference

    return fun, np.clip(centre, 0.0, 1.0)


def _rosenbrock(x: np.ndarray) -> tuple[float, np.ndarray]:
    """The chained Rosenbrock function (minimum 0 at all ones, the box's upper corner) and its gradient."""
    a, b = x[:-1], x[1:]
    loss = float(np.sum(100.0 * (b - a * a) ** 2 + (1 - a) ** 2))
    gradient = np.zeros_like(x)
    gradient[:-1] = -400.0 * a * (b - a * a) - 2 * (1 - a)
    gradient[1:] += 200.0 * (b - a * a)
    return loss, gradient


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_box_quadratic_reaches_the_clipped_minimum_as_scipy_does(seed: int) -> None:
    fun, answer = _quadratic(500, seed)
    start = np.full(500, 0.5)
    ours = minimize_box(fun, start, max_iterations=500)
    theirs = minimize(fun, start, jac=True, method="L-BFGS-B", bounds=Bounds(0.0, 1.0), options={"maxiter": 500, "maxcor": 20})
    assert np.all((ours.x >= 0.0) & (ours.x <= 1.0))
    assert np.abs(ours.x - answer).max() < 1e-3
    assert ours.loss <= theirs.fun * (1 + 1e-6)  # SciPy stops at its default tolerance 0.001-0.01 from the answer
    assert np.mean((answer == 0) | (answer == 1)) > 0.3  # the bounds are active for a good share of the variables


def test_rosenbrock_in_a_box_about_as_fast_as_scipy() -> None:
    """Measured 2026-12-07: ours 116 iterations to 1e-3, SciPy 60 (unbounded: 123 and 96); both end below 1e-8."""
    start = np.random.default_rng(0).uniform(0.0, 1.0, 50)
    theirs_curve: list[float] = []
    minimize(_rosenbrock, start, jac=True, method="L-BFGS-B", bounds=Bounds(0.0, 1.0), callback=lambda x: theirs_curve.append(_rosenbrock(x)[0]),
             options={"maxiter": 300, "maxcor": 20, "ftol": 0.0, "gtol": 0.0})
    ours_curve: list[float] = []
    ours = minimize_box(_rosenbrock, start, max_iterations=300, callback=lambda _, loss: ours_curve.append(loss))
    assert ours.loss < 1e-8
    assert len(ours_curve) == ours.iterations
    assert all(later <= earlier for earlier, later in zip(ours_curve, ours_curve[1:]))  # every accepted step lowers the loss
    reached = next(i for i, loss in enumerate(ours_curve) if loss < 1e-3)
    reached_scipy = next(i for i, loss in enumerate(theirs_curve) if loss < 1e-3)
    assert reached <= 2 * reached_scipy + 10, (reached, reached_scipy)


def test_same_input_same_bytes() -> None:
    fun, _ = _quadratic(300, 3)
    start = np.random.default_rng(3).uniform(0, 1, 300)
    first = minimize_box(fun, start, max_iterations=30)
    second = minimize_box(fun, start, max_iterations=30)
    assert first.x.tobytes() == second.x.tobytes() and first.loss == second.loss


def test_callback_and_evaluation_limit_stop_the_run() -> None:
    start = np.full(20, 0.2)
    stopped = minimize_box(_rosenbrock, start, max_iterations=100, callback=lambda iteration, _: iteration == 3)
    assert (stopped.iterations, stopped.stopped) == (3, "callback")
    calls = []

    def counted(x: np.ndarray) -> tuple[float, np.ndarray]:
        calls.append(1)
        return _rosenbrock(x)

    limited = minimize_box(counted, start, max_iterations=100, max_evaluations=7)
    assert len(calls) == limited.evaluations <= 7 and limited.stopped == "evaluations"
    assert limited.loss < _rosenbrock(start)[0]


def test_a_step_into_nan_is_shortened_not_taken() -> None:
    """A loss that is NaN beyond x = 0.6 (as a network's can overflow): the run stays where the loss is finite."""

    def fun(x: np.ndarray) -> tuple[float, np.ndarray]:
        if np.any(x > 0.6):
            return float("nan"), np.full_like(x, np.nan)
        return float(np.sum((x - 0.7) ** 2)), 2 * (x - 0.7)

    result = minimize_box(fun, np.full(10, 0.1), max_iterations=20)
    assert np.isfinite(result.loss) and np.all(result.x <= 0.6)
    assert result.loss < fun(np.full(10, 0.1))[0] / 10


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"lower": 1.0, "upper": 0.0}, "lower=1.0 and upper=0.0"),
    ({"history": 0}, "got 0"),
    ({"max_iterations": -1}, "got -1"),
])
def test_bad_settings_are_refused_naming_the_value(kwargs: dict, message: str) -> None:
    settings = {"max_iterations": 5, **kwargs}
    with pytest.raises(ValueError, match=message):
        minimize_box(_rosenbrock, np.zeros(4), **settings)
