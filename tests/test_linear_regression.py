"""Unit tests of advlib.linear, chapter 2 (linear regression under ℓ∞ and ℓ2 perturbations):
the closed-form worst case equals an independent numerical maximum and is attained by a feasible
perturbation, ε = 0 is the plain loss, the robust fit minimises its own objective and shrinks its
coefficients to exactly zero at the predicted threshold, bad input fails loudly, and the exercise
checks tell right from wrong."""
from __future__ import annotations

import itertools
import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import advlib
from advlib import linear

NORMS = ("linf", "l2")
f64 = torch.float64

# --------------------------------------------------------------------------- helpers


@st.composite
def small_problems(draw, max_d: int = 6):
    """A few examples with d ≤ 6 features; parameters with exact zeros sometimes; eps ≥ 0."""
    d = draw(st.integers(1, max_d))
    n = draw(st.integers(1, 4))
    number = st.floats(-3, 3, allow_nan=False, allow_infinity=False)
    x = torch.tensor([[draw(number) for _ in range(d)] for _ in range(n)], dtype=f64)
    y = torch.tensor([draw(number) for _ in range(n)], dtype=f64)
    theta = torch.tensor([draw(st.one_of(st.just(0.0), number)) for _ in range(d)], dtype=f64)
    b = draw(number)
    eps = draw(st.one_of(st.just(0.0), st.floats(1e-6, 2)))
    return theta, b, x, y, eps


def prediction_error(theta, b, x, y):
    return (x @ theta + b - y) ** 2


def corner_max(theta, b, x, y, eps):
    """ℓ∞: a convex function of delta is maximised at a vertex of the cube; try all 2^d."""
    best = torch.full((x.shape[0],), -math.inf, dtype=f64)
    for signs in itertools.product((-1.0, 1.0), repeat=x.shape[1]):
        delta = eps * torch.tensor(signs, dtype=f64)
        best = torch.maximum(best, prediction_error(theta, b, x + delta, y))
    return best


def ascent_max_l2(theta, b, x, y, eps, steps=120):
    """ℓ2: projected gradient ascent on delta with a shrinking step, from several starts
    (written here independently of advlib). On the sphere (r + <theta, delta>)² also has a
    local maximum at the wrong end, so one start is tiny (its first step follows sign(r)) and
    the others are random points of the sphere."""
    g = torch.Generator().manual_seed(1)
    best = prediction_error(theta, b, x, y)
    if eps == 0:
        return best
    for start in range(4):
        delta = torch.randn(x.shape, generator=g, dtype=f64)
        delta = eps * delta / delta.norm(dim=1, keepdim=True) * (1e-6 if start == 0 else 1)
        for step in range(steps):
            delta.requires_grad_(True)
            (grad,) = torch.autograd.grad(prediction_error(theta, b, x + delta, y).sum(), delta)
            with torch.no_grad():
                delta = delta + eps * (0.9 ** step) * grad / grad.norm(dim=1, keepdim=True).clamp(min=1e-300)
                delta = delta * (eps / delta.norm(dim=1, keepdim=True).clamp(min=eps))
        best = torch.maximum(best, prediction_error(theta, b, x + delta.detach(), y))
    return best


def standardised_problem(seed: int, n: int = 80, d: int = 5, collinear: bool = True):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, d, generator=g, dtype=f64)
    if collinear:
        x[:, 1] = x[:, 0] + 0.3 * x[:, 1]
    y = x @ torch.randn(d, generator=g, dtype=f64) + torch.randn(n, generator=g, dtype=f64)
    x = (x - x.mean(0)) / x.std(0)
    y = (y - y.mean()) / y.std()
    return x, y


def worst_mse(theta, b, x, y, eps, norm):
    return linear.robust_squared_loss(theta, b, x, y, eps, norm).item()


# --------------------------------------------------------------------------- the closed form


@settings(max_examples=200, deadline=None)
@given(small_problems())
def test_linf_closed_form_equals_the_best_corner(case):
    theta, b, x, y, eps = case
    closed = linear.robust_squared_loss(theta, b, x, y, eps, "linf", reduction="none")
    assert torch.allclose(closed, corner_max(theta, b, x, y, eps), rtol=1e-10, atol=1e-10)


@settings(max_examples=60, deadline=None)
@given(small_problems(max_d=4))
def test_l2_closed_form_equals_projected_ascent(case):
    theta, b, x, y, eps = case
    closed = linear.robust_squared_loss(theta, b, x, y, eps, "l2", reduction="none")
    numerical = ascent_max_l2(theta, b, x, y, eps)
    assert (numerical <= closed * (1 + 1e-9) + 1e-9).all()  # an upper bound ...
    assert torch.allclose(closed, numerical, rtol=1e-6, atol=1e-8)  # ... that is reached


def test_no_random_feasible_perturbation_beats_the_closed_form():
    g = torch.Generator().manual_seed(0)
    theta, x, y = torch.randn(7, dtype=f64), torch.randn(50, 7, dtype=f64), torch.randn(50, dtype=f64)
    for norm, eps in itertools.product(NORMS, (0.1, 1.0)):
        closed = linear.robust_squared_loss(theta, 0.3, x, y, eps, norm, reduction="none")
        for _ in range(200):
            delta = torch.rand(x.shape, generator=g, dtype=f64) * 2 - 1
            if norm == "linf":
                delta = eps * delta
            else:
                delta = eps * delta / delta.norm(dim=1, keepdim=True) * torch.rand(1, generator=g, dtype=f64)
            assert (prediction_error(theta, 0.3, x + delta, y) <= closed + 1e-12).all()


@settings(max_examples=200, deadline=None)
@given(small_problems(), st.sampled_from(NORMS))
def test_the_maximiser_is_feasible_and_attains_the_worst_case(case, norm):
    theta, b, x, y, eps = case
    delta = linear.worst_case_regression_delta(theta, b, x, y, eps, norm)
    assert delta.shape == x.shape and not delta.requires_grad
    size = delta.abs().amax(1) if norm == "linf" else delta.norm(dim=1)
    assert (size <= eps * (1 + 1e-12)).all()
    attained = prediction_error(theta, b, x + delta, y)
    closed = linear.robust_squared_loss(theta, b, x, y, eps, norm, reduction="none")
    assert torch.allclose(attained, closed, rtol=1e-10, atol=1e-10)


def test_worked_example_numbers():
    """x = [1, 2], y = 2, theta = [0.5, 0.5], eps = 0.1: the chapter's numbers."""
    theta, x, y = torch.tensor([0.5, 0.5], dtype=f64), torch.tensor([[1.0, 2.0]], dtype=f64), \
        torch.tensor([2.0], dtype=f64)
    assert linear.residuals(theta, 0.0, x, y).item() == pytest.approx(-0.5)
    delta = linear.worst_case_regression_delta(theta, 0.0, x, y, 0.1, "linf")
    assert delta.tolist() == [[-0.1, -0.1]]
    assert linear.robust_squared_loss(theta, 0.0, x, y, 0.1, "linf").item() == pytest.approx(0.36)
    l2 = linear.worst_case_regression_delta(theta, 0.0, x, y, 0.1, "l2")
    assert torch.allclose(l2, torch.tensor([[-0.1, -0.1]], dtype=f64) / math.sqrt(2))


@settings(max_examples=100, deadline=None)
@given(small_problems(), st.sampled_from(NORMS))
def test_eps_zero_is_the_plain_squared_error(case, norm):
    theta, b, x, y, _ = case
    plain = prediction_error(theta, b, x, y)
    assert torch.equal(linear.robust_squared_loss(theta, b, x, y, 0.0, norm, reduction="none"), plain)
    assert torch.equal(linear.worst_case_regression_delta(theta, b, x, y, 0.0, norm),
                       torch.zeros_like(x))


@settings(max_examples=100, deadline=None)
@given(small_problems(), st.sampled_from(NORMS))
def test_monotone_and_convex_in_eps(case, norm):
    """The balls are nested (non-decreasing in eps), and sqrt(loss) = |r| + eps‖theta‖ is affine in
    eps (so the loss is convex in eps)."""
    theta, b, x, y, _ = case
    grid = [0.0, 0.25, 0.5, 0.75, 1.0]
    values = torch.stack([linear.robust_squared_loss(theta, b, x, y, e, norm, reduction="none")
                          for e in grid])
    assert (values[1:] >= values[:-1]).all()
    assert (values[2:] - 2 * values[1:-1] + values[:-2] >= -1e-9).all()


@settings(max_examples=100, deadline=None)
@given(small_problems(), small_problems(), st.sampled_from(NORMS), st.floats(0, 1))
def test_convex_in_the_parameters(first, second, norm, t):
    theta1, b1, x, y, eps = first
    theta2 = second[0][: theta1.shape[0]]
    if theta2.shape != theta1.shape:
        theta2 = torch.zeros_like(theta1)
    b2 = second[1]
    mix = linear.robust_squared_loss(t * theta1 + (1 - t) * theta2, t * b1 + (1 - t) * b2, x, y, eps, norm)
    ends = t * linear.robust_squared_loss(theta1, b1, x, y, eps, norm) \
        + (1 - t) * linear.robust_squared_loss(theta2, b2, x, y, eps, norm)
    assert mix <= ends + 1e-9 * (1 + abs(ends))


def test_reductions_and_dual_norms():
    theta = torch.tensor([3.0, -4.0], dtype=f64)
    x, y = torch.tensor([[1.0, 1.0], [0.0, 2.0]], dtype=f64), torch.tensor([0.0, 0.0], dtype=f64)
    assert linear.dual_norm(theta, "linf").item() == 7.0 and linear.dual_norm(theta, "l2").item() == 5.0
    per = linear.robust_squared_loss(theta, 1.0, x, y, 0.5, "l2", reduction="none")
    assert per.tolist() == [(0 + 2.5) ** 2, (7 + 2.5) ** 2]  # r = [0, -7]; r = 0 still pays eps‖θ‖
    assert linear.robust_squared_loss(theta, 1.0, x, y, 0.5, "l2", reduction="sum") == per.sum()
    assert linear.robust_squared_loss(theta, 1.0, x, y, 0.5, "l2") == per.mean()


def test_danskin_gradient_is_the_gradient_at_the_maximiser():
    """Where the worst case is unique (r ≠ 0, no theta_j = 0), autograd through the closed form
    equals the gradient of the plain loss at the fixed maximiser, and central finite differences."""
    g = torch.Generator().manual_seed(3)
    x, y = torch.randn(20, 4, generator=g, dtype=f64), torch.randn(20, generator=g, dtype=f64)
    for norm in NORMS:
        theta = torch.tensor([0.7, -1.2, 0.4, 2.0], dtype=f64, requires_grad=True)
        robust = linear.robust_squared_loss(theta, 0.1, x, y, 0.3, norm)
        (through_max,) = torch.autograd.grad(robust, theta)
        delta = linear.worst_case_regression_delta(theta, 0.1, x, y, 0.3, norm)
        (at_maximiser,) = torch.autograd.grad(prediction_error(theta, 0.1, x + delta, y).mean(), theta)
        assert torch.allclose(through_max, at_maximiser, rtol=1e-10)
        h, base = 1e-6, theta.detach()
        finite = torch.tensor([
            (worst_mse(base + h * e, 0.1, x, y, 0.3, norm) - worst_mse(base - h * e, 0.1, x, y, 0.3, norm))
            / (2 * h) for e in torch.eye(4, dtype=f64)], dtype=f64)
        assert torch.allclose(finite, at_maximiser, rtol=1e-6, atol=1e-8)


# --------------------------------------------------------------------------- fitting


@pytest.fixture(scope="module")
def paths():
    """Robust fits on a standardised problem with two correlated features, both norms."""
    x, y = standardised_problem(0)
    out = {}
    for norm in NORMS:
        bar = linear.robust_regression_threshold(x, y, norm)
        grid = [bar * k / 10 for k in range(13)]  # up to 1.2 · eps_bar
        theta, b = linear.robust_regression_path(x, y, grid, norm, epochs=2000)
        out[norm] = (x, y, bar, grid, theta, b)
    return out


@pytest.mark.parametrize("norm", NORMS)
def test_eps_zero_is_least_squares(paths, norm):
    x, y, _, _, theta, b = paths[norm]
    residual = x @ theta[0] + b[0] - y
    # normal equations: the residual is orthogonal to every feature and to the constant
    assert x.T @ residual == pytest.approx(torch.zeros(x.shape[1], dtype=f64), abs=1e-9)
    assert residual.sum().item() == pytest.approx(0, abs=1e-9)


@pytest.mark.parametrize("norm", NORMS)
def test_each_fit_minimises_its_own_worst_case(paths, norm):
    """No other fit on the path (nor least squares, nor theta = 0) has a lower worst-case
    training MSE at a fit's eps: a check of the optimiser, up to 1e-5 relative."""
    x, y, _, grid, theta, b = paths[norm]
    for i, eps in enumerate(grid):
        own = worst_mse(theta[i], b[i], x, y, eps, norm)
        others = [worst_mse(theta[j], b[j], x, y, eps, norm) for j in range(len(grid))]
        assert own <= min(others) * (1 + 1e-5) + 1e-9, (eps, own, min(others))
        # a small step in any coordinate direction does not help either
        for e in torch.eye(x.shape[1], dtype=f64):
            for step in (1e-3, -1e-3):
                assert own <= worst_mse(theta[i] + step * e, b[i], x, y, eps, norm) * (1 + 1e-6)


@pytest.mark.parametrize("norm", NORMS)
def test_optimal_worst_case_grows_with_eps(paths, norm):
    x, y, _, grid, theta, b = paths[norm]
    values = [worst_mse(theta[i], b[i], x, y, eps, norm) for i, eps in enumerate(grid)]
    assert all(v2 >= v1 - 1e-7 for v1, v2 in zip(values, values[1:])), values
    assert values[-1] == pytest.approx(((y - y.mean()) ** 2).mean().item(), rel=1e-5)


@pytest.mark.parametrize("norm", NORMS)
def test_coefficients_reach_zero_exactly_at_the_threshold(paths, norm):
    """theta = 0 from eps_bar on (up to the optimiser's last step size), and not before."""
    x, y, bar, grid, theta, b = paths[norm]
    size = theta.abs().sum(1)
    beyond = [i for i, eps in enumerate(grid) if eps >= bar]
    before = [i for i, eps in enumerate(grid) if 0 < eps <= 0.9 * bar]
    assert len(beyond) == 3 and before
    assert size[beyond].max() < 2e-3
    assert size[before].min() > 10 * 2e-3
    assert torch.allclose(b[beyond], torch.full((3,), y.mean().item(), dtype=f64), atol=1e-3)
    # and the threshold is where theta = 0 stops being optimal: slightly below it a small
    # coefficient on the best feature lowers the worst case, at it no direction does
    best = int((x.T @ (y - y.mean())).abs().argmax())
    direction = torch.zeros(x.shape[1], dtype=f64)
    direction[best] = torch.sign((x.T @ (y - y.mean()))[best])
    if norm == "l2":
        direction = x.T @ (y - y.mean())
        direction = direction / direction.norm()
    zero = torch.zeros(x.shape[1], dtype=f64)
    for eps, helps in ((0.97 * bar, True), (1.0 * bar, False)):
        moved = worst_mse(1e-4 * direction, y.mean().item(), x, y, eps, norm)
        assert (moved < worst_mse(zero, y.mean().item(), x, y, eps, norm)) is helps


@pytest.mark.parametrize("norm", NORMS)
def test_the_last_coefficient_standing(paths, norm):
    """Just below eps_bar (ℓ∞) one coefficient is left: the feature with the largest
    |x_jᵀ(y − ȳ)|. Under ℓ2 all coefficients shrink together, in the direction Xᵀ(y − ȳ)."""
    x, y, bar, grid, theta, _ = paths[norm]
    near = grid.index(next(eps for eps in grid if eps >= 0.9 * bar))
    pull = x.T @ (y - y.mean())
    if norm == "linf":
        assert int(theta[near].abs().argmax()) == int(pull.abs().argmax())
        others = theta[near].abs().sort(descending=True).values[1:]
        assert others.max() < 0.1 * theta[near].abs().max()
    else:
        cosine = torch.nn.functional.cosine_similarity(theta[near], pull, dim=0)
        assert cosine > 0.9


def test_exchange_inequality_along_the_path(paths):
    """What optimality implies for any two fits eps1 < eps2 (add F_eps1(θ1) ≤ F_eps1(θ2) and
    F_eps2(θ2) ≤ F_eps2(θ1)): with n = ‖θ‖ and m = mean|r|,
    2 (n1 m1 − n2 m2) + (eps1 + eps2)(n1² − n2²) ≥ 0. It holds for every pair."""
    for norm in NORMS:
        x, y, _, grid, theta, b = paths[norm]
        n = [linear.dual_norm(t, norm).item() for t in theta]
        m = [linear.residuals(theta[i], b[i], x, y).abs().mean().item() for i in range(len(grid))]
        for i, j in itertools.combinations(range(len(grid)), 2):
            lhs = 2 * (n[i] * m[i] - n[j] * m[j]) + (grid[i] + grid[j]) * (n[i] ** 2 - n[j] ** 2)
            assert lhs >= -1e-4, (norm, grid[i], grid[j], lhs)


@pytest.mark.parametrize("seed", range(4))
def test_coefficient_norm_shrinks_along_the_path(seed):
    """‖θ(eps)‖₁ (ℓ∞ attack) and ‖θ(eps)‖₂ (ℓ2 attack) never grow with eps on these problems.
    This is observed (here and in chapter 2 on real data), not a theorem we prove; the provable
    facts are the tests above. Tolerance: the optimiser's last step size."""
    x, y = standardised_problem(seed, n=60, d=6, collinear=seed % 2 == 0)
    for norm in NORMS:
        bar = linear.robust_regression_threshold(x, y, norm)
        grid = [bar * k / 12 for k in range(14)]
        theta, _ = linear.robust_regression_path(x, y, grid, norm, epochs=1500)
        size = [linear.dual_norm(t, norm).item() for t in theta]
        assert all(s2 <= s1 + 2e-3 for s1, s2 in zip(size, size[1:])), (norm, size)
        assert size[0] > 0.5 and size[-1] < 2e-3


def test_fits_are_deterministic_and_the_path_equals_separate_fits():
    x, y = standardised_problem(5, n=40, d=3)
    first = linear.robust_regression_path(x, y, [0.0, 0.1, 0.3], "linf", epochs=400)
    again = linear.robust_regression_path(x, y, [0.0, 0.1, 0.3], "linf", epochs=400)
    assert torch.equal(first[0], again[0]) and torch.equal(first[1], again[1])
    theta, b = linear.fit_robust_regression(x, y, 0.1, "linf", epochs=400)
    assert theta.shape == (3,) and b.shape == ()
    assert torch.allclose(theta, first[0][1], atol=1e-10) and torch.allclose(b, first[1][1], atol=1e-10)
    threads = torch.get_num_threads()
    linear.robust_regression_path(x, y, [0.2], "l2", epochs=5)
    assert torch.get_num_threads() == threads


def test_threshold_formula_and_a_constant_target():
    x = torch.tensor([[1.0, 0.0], [0.0, 2.0], [1.0, 1.0]], dtype=f64)
    y = torch.tensor([1.0, 2.0, 3.0], dtype=f64)  # y − ȳ = [−1, 0, 1]; Xᵀ(y − ȳ) = [0, 1]
    assert linear.robust_regression_threshold(x, y, "linf") == pytest.approx(1 / 2)
    assert linear.robust_regression_threshold(x, y, "l2") == pytest.approx(1 / 2)
    assert linear.robust_regression_threshold(x, torch.ones(3, dtype=f64), "linf") == 0.0


# --------------------------------------------------------------------------- bad input


def valid():
    return torch.ones(3, dtype=f64), 0.0, torch.ones(4, 3, dtype=f64), torch.zeros(4, dtype=f64)


@pytest.mark.parametrize("eps, message", [(-0.1, "≥ 0"), (float("nan"), "NaN"), (math.inf, "finite"),
                                          ("0.1", "real number"), (True, "real number"),
                                          (torch.ones(2), "single number")])
def test_bad_eps(eps, message):
    theta, b, x, y = valid()
    for call in (lambda: linear.robust_squared_loss(theta, b, x, y, eps),
                 lambda: linear.worst_case_regression_delta(theta, b, x, y, eps, "l2"),
                 lambda: linear.robust_regression_path(x, y, [0.0, eps], epochs=1),
                 lambda: linear.fit_robust_regression(x, y, eps, epochs=1)):
        with pytest.raises(ValueError, match=message):
            call()


def test_bad_norms_shapes_and_values():
    theta, b, x, y = valid()
    for norm in ("l1", "Linf", None, "inf"):
        with pytest.raises(ValueError, match="norm must be one of"):
            linear.robust_squared_loss(theta, b, x, y, 0.1, norm)
        with pytest.raises(ValueError, match="norm must be one of"):
            linear.robust_regression_threshold(x, y, norm)
    with pytest.raises(ValueError, match=r"shape \[3\]"):
        linear.robust_squared_loss(torch.ones(2, dtype=f64), b, x, y, 0.1)
    with pytest.raises(ValueError, match=r"\[N, d\]"):
        linear.robust_squared_loss(theta, b, x[0], y, 0.1)
    with pytest.raises(ValueError, match=r"shape \[4\]"):
        linear.worst_case_regression_delta(theta, b, x, y[:3], 0.1)
    with pytest.raises(ValueError, match=r"shape \[4\]"):
        linear.robust_regression_path(x, y.view(4, 1), [0.1], epochs=1)
    with pytest.raises(ValueError, match="NaN"):
        linear.robust_squared_loss(theta, b, x, torch.tensor([0.0, math.nan, 0.0, 0.0], dtype=f64), 0.1)
    with pytest.raises(ValueError, match="NaN"):
        linear.robust_squared_loss(theta * math.inf, b, x, y, 0.1)
    with pytest.raises(ValueError, match="b must be"):
        linear.robust_squared_loss(theta, math.nan, x, y, 0.1)
    with pytest.raises(ValueError, match="b must be"):
        linear.robust_squared_loss(theta, torch.ones(2), x, y, 0.1)
    with pytest.raises(ValueError, match="floating-point"):
        linear.robust_squared_loss(theta, b, torch.ones(4, 3, dtype=torch.long), y, 0.1)
    with pytest.raises(ValueError, match="reduction"):
        linear.robust_squared_loss(theta, b, x, y, 0.1, reduction="max")
    with pytest.raises(ValueError, match="epochs"):
        linear.robust_regression_path(x, y, [0.1], epochs=0)
    with pytest.raises(ValueError, match="lr"):
        linear.robust_regression_path(x, y, [0.1], epochs=1, lr=-1.0)
    with pytest.raises(ValueError, match="empty"):
        linear.robust_regression_path(x, y, [], epochs=1)


# --------------------------------------------------------------------------- exercise checks


def right_descent_step(theta, x, y, alpha):
    return theta - alpha * x.T @ (x @ theta - y)


def right_worst_delta(theta, b, x, y, eps):
    r = x @ theta + b - y
    return eps * torch.where(r >= 0, 1.0, -1.0).to(x.dtype).unsqueeze(1) * torch.sign(theta)


def right_robust_loss_l2(theta, b, x, y, eps):
    return ((x @ theta + b - y).abs() + eps * theta.norm()) ** 2


def right_last_survivor(x, y):
    pull = x.T @ (y - y.mean())
    return int(pull.abs().argmax()), (pull.abs().max() / (y - y.mean()).abs().sum()).item()


def stub(*args):
    raise NotImplementedError("Exercise 2.N: your code here")


CASES = [  # check, right answer, wrong answers (each with a word its message must contain)
    (linear.check_descent_step, "2.1", right_descent_step, [
        (lambda theta, x, y, alpha: theta + alpha * x.T @ (x @ theta - y), "ascent"),
        (lambda theta, x, y, alpha: theta - alpha * x.T @ (x @ theta - y) / len(y), "gradient"),
        (lambda theta, x, y, alpha: theta - alpha * (x @ theta - y).sum() * torch.ones_like(theta), "gradient"),
    ]),
    (linear.check_worst_case_regression, "2.2", right_worst_delta, [
        (lambda theta, b, x, y, eps: -right_worst_delta(theta, b, x, y, eps), "lowers"),
        (lambda theta, b, x, y, eps: eps * torch.sign(theta).expand_as(x), "lowers"),
        (lambda theta, b, x, y, eps: right_worst_delta(theta, b, x, y, eps) / 2, "worst case"),
        (lambda theta, b, x, y, eps: 2 * right_worst_delta(theta, b, x, y, eps), "exceeds"),
    ]),
    (linear.check_robust_loss_l2, "2.3", right_robust_loss_l2, [
        (lambda theta, b, x, y, eps: ((x @ theta + b - y).abs() + eps * theta.abs().sum()) ** 2, "ℓ∞"),
        (lambda theta, b, x, y, eps: (x @ theta + b - y) ** 2 + (eps * theta.norm()) ** 2, "larger"),
        (lambda theta, b, x, y, eps: ((x @ theta + b - y).abs() + 2 * eps * theta.norm()) ** 2, "larger than any"),
        (lambda theta, b, x, y, eps: ((x @ theta + b - y).abs() + eps * theta.norm()).sum() ** 2, "shape"),
    ]),
    (linear.check_last_survivor, "2.4", right_last_survivor, [
        (lambda x, y: (int((x.T @ (y - y.mean()) / x.std(0)).abs().argmax()),
                       right_last_survivor(x, y)[1]), "correlated"),
        (lambda x, y: (right_last_survivor(x, y)[0],
                       ((x.T @ (y - y.mean())).abs().max() / (y - y.mean()).norm()).item()), "‖y − ȳ‖₂"),
        (lambda x, y: (right_last_survivor(x, y)[0], 2 * right_last_survivor(x, y)[1]), "off"),
        (lambda x, y: right_last_survivor(x, y)[0], "pair"),
    ]),
]


@pytest.mark.parametrize("check, exercise, right, wrongs", CASES, ids=[c[1] for c in CASES])
def test_exercise_checks(check, exercise, right, wrongs, capsys, monkeypatch):
    monkeypatch.delenv("ADVLIB_EXERCISES", raising=False)
    key = "exercise_" + exercise.replace(".", "_")
    advlib.records._session.pop(key, None)
    assert check(stub) is False
    assert "not done yet" in capsys.readouterr().out
    for wrong, hint in wrongs:
        assert check(wrong) is False
        out = capsys.readouterr().out
        assert f"✗ Exercise {exercise}" in out and hint in out, out
    assert key not in advlib.recorded()
    assert check(right) is True
    assert f"✓ Exercise {exercise}" in capsys.readouterr().out
    assert advlib.recorded()[key] is True


@pytest.mark.parametrize("check, exercise, right, wrongs", CASES, ids=[c[1] for c in CASES])
def test_exercise_checks_raise_in_strict_mode(check, exercise, right, wrongs, monkeypatch):
    monkeypatch.setenv("ADVLIB_EXERCISES", "strict")
    with pytest.raises(NotImplementedError):
        check(stub)
    with pytest.raises(AssertionError):
        check(wrongs[0][0])
    assert check(right) is True


def test_a_crashing_answer_is_reported_as_wrong(capsys, monkeypatch):
    monkeypatch.delenv("ADVLIB_EXERCISES", raising=False)
    assert linear.check_robust_loss_l2(lambda *args: 1 / 0) is False
    assert "ZeroDivisionError" in capsys.readouterr().out
