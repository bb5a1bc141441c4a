"""Unit tests of advlib.linear (chapter 1): the closed-form ℓ∞ worst case of a linear model is
feasible and truly optimal, noise is weaker, curves behave, bad input fails loudly, and the
exercise checks tell right from wrong."""
from __future__ import annotations

import itertools
import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import advlib
from advlib import linear

# --------------------------------------------------------------------------- helpers


def problem(seed: int, n: int = 32, shape=(1, 5, 5), dtype=torch.float64, box_share: float = 0.4):
    """Random images with many pixels exactly at 0 or 1, ±1 labels, weights with exact zeros."""
    g = torch.Generator().manual_seed(seed)
    x = torch.rand((n, *shape), generator=g, dtype=dtype)
    edge = torch.rand((n, *shape), generator=g) < box_share
    x = torch.where(edge, (x > 0.5).to(dtype), x)
    y = torch.where(torch.rand(n, generator=g) < 0.5, -1.0, 1.0).to(dtype)
    w = torch.randn(shape, generator=g, dtype=dtype)
    w = torch.where(w.abs() < 0.1, torch.zeros((), dtype=dtype), w)
    b = torch.randn((), generator=g, dtype=dtype)
    return w, b, x, y


def feasible_interval(x, eps):
    return torch.clamp(-x, min=-eps), torch.clamp(1 - x, max=eps)


@st.composite
def tiny_problems(draw):
    """One image of d ≤ 8 pixels (values often exactly 0 or 1), weights, label, eps."""
    d = draw(st.integers(1, 8))
    pixel = st.one_of(st.just(0.0), st.just(1.0), st.floats(0, 1, allow_nan=False))
    x = torch.tensor([draw(pixel) for _ in range(d)], dtype=torch.float64).view(1, d)
    w = torch.tensor([draw(st.one_of(st.just(0.0), st.floats(-5, 5, allow_nan=False)))
                      for _ in range(d)], dtype=torch.float64)
    y = torch.tensor([draw(st.sampled_from([-1.0, 1.0]))], dtype=torch.float64)
    eps = draw(st.one_of(st.just(0.0), st.floats(0, 1, allow_nan=False)))
    b = draw(st.floats(-3, 3, allow_nan=False))
    return w, b, x, y, eps


# --------------------------------------------------------------------------- the worst case

@settings(max_examples=300, deadline=None)
@given(tiny_problems())
def test_worst_case_is_feasible_exactly(case):
    w, b, x, y, eps = case
    for dtype in (torch.float64, torch.float32):
        xx, ww, yy = x.to(dtype), w.to(dtype), y.to(dtype)
        delta = linear.worst_case_linf(ww, xx, yy, eps)
        assert delta.shape == xx.shape and delta.dtype == dtype
        assert (delta.abs() <= torch.tensor(eps, dtype=dtype)).all()
        adv = xx + delta
        assert adv.min() >= 0 and adv.max() <= 1  # exactly, no tolerance


@settings(max_examples=300, deadline=None)
@given(tiny_problems())
def test_closed_form_equals_brute_force_over_all_vertices(case):
    """A linear function on a box is minimised at a vertex: try all 2^d of them."""
    w, b, x, y, eps = case
    lo, hi = feasible_interval(x[0], eps)
    best = math.inf
    for choice in itertools.product((0, 1), repeat=x.shape[1]):
        delta = torch.where(torch.tensor(choice, dtype=torch.bool), hi, lo)
        best = min(best, linear.margins(w, b, (x + delta).clamp(0, 1), y).item())
    closed = linear.margins(w, b, x + linear.worst_case_linf(w, x, y, eps), y).item()
    assert closed == pytest.approx(best, abs=1e-9)


def test_no_random_feasible_perturbation_lowers_the_margin_more():
    w, b, x, y = problem(0, n=16, shape=(1, 8, 8))
    eps = 0.15
    worst = linear.margins(w, b, x + linear.worst_case_linf(w, x, y, eps), y)
    lo, hi = feasible_interval(x, eps)
    g = torch.Generator().manual_seed(1)
    for _ in range(200):  # 200 × 16 random points of the feasible set, corners included
        u = torch.rand(x.shape, generator=g, dtype=x.dtype)
        u = torch.where(torch.rand(x.shape, generator=g) < 0.3, u.round(), u)
        delta = lo + u * (hi - lo)
        assert (delta.abs() <= eps + 1e-12).all()
        margin = linear.margins(w, b, (x + delta).clamp(0, 1), y)
        assert (margin >= worst - 1e-9).all()


def test_without_the_box_the_margin_drops_by_eps_times_l1_norm():
    w, b, x, y = problem(1, box_share=0.0)
    x = 0.25 + 0.5 * x  # all pixels at least 0.25 from the edges
    eps = 0.2
    drop = linear.margins(w, b, x, y) - linear.margins(w, b, x + linear.worst_case_linf(w, x, y, eps), y)
    assert torch.allclose(drop, eps * w.abs().sum().expand_as(drop))


def test_box_limits_the_attack_on_black_pixels():
    """A black pixel cannot get darker: where the attack wants to go down, it stays at 0."""
    w = torch.ones(1, 2, 2)
    x = torch.zeros(3, 1, 2, 2)
    y = torch.ones(3)
    delta = linear.worst_case_linf(w, x, y, 0.3)
    assert torch.equal(delta, torch.zeros_like(x))
    delta = linear.worst_case_linf(w, x, -y, 0.3)
    assert torch.allclose(delta, torch.full_like(x, 0.3))


def test_zero_weight_pixels_are_left_alone_and_eps_zero_is_identity():
    w, b, x, y = problem(2)
    delta = linear.worst_case_linf(w, x, y, 0.3)
    assert (delta[:, w == 0] == 0).all()
    assert torch.equal(linear.worst_case_linf(w, x, y, 0.0), torch.zeros_like(x))


def test_worst_case_margin_never_above_random_noise_margin():
    w, b, x, y = problem(3, n=200)
    for eps in (0.01, 0.1, 0.3):
        worst = linear.margins(w, b, x + linear.worst_case_linf(w, x, y, eps), y)
        noisy = linear.margins(w, b, x + linear.random_linf(x, eps, torch.Generator().manual_seed(4)), y)
        assert (worst <= noisy + 1e-12).all()
        assert (worst < noisy).float().mean() > 0.9  # and strictly lower almost everywhere


# --------------------------------------------------------------------------- random noise

def test_random_noise_is_sign_noise_in_the_box_and_reproducible():
    g = torch.Generator().manual_seed(0)
    x = torch.rand((50, 1, 12, 12), generator=g)
    x[:, :, 0] = 0.0
    x[:, :, 1] = 1.0
    eps = 0.1
    delta = linear.random_linf(x, eps, torch.Generator().manual_seed(1))
    assert (delta.abs() <= eps).all()
    assert ((x + delta) >= 0).all() and ((x + delta) <= 1).all()
    interior = (x >= eps) & (x <= 1 - eps)
    assert torch.allclose(delta[interior].abs(), torch.full_like(delta[interior], eps))
    assert 0.45 < (delta[interior] > 0).float().mean() < 0.55
    assert (delta[:, :, 0] >= 0).all() and (delta[:, :, 1] <= 0).all()
    assert torch.equal(delta, linear.random_linf(x, eps, torch.Generator().manual_seed(1)))
    assert not torch.equal(delta, linear.random_linf(x, eps, torch.Generator().manual_seed(2)))


# --------------------------------------------------------------------------- ℓ2 worst case

def test_l2_worst_case_has_norm_eps_and_beats_random_directions():
    w, b, x, y = problem(5, box_share=0.0)
    eps = 0.7
    delta = linear.worst_case_l2(w, y, eps)
    assert delta.shape == x.shape
    norms = torch.linalg.vector_norm(delta.reshape(len(x), -1), dim=1)
    assert torch.allclose(norms, torch.full_like(norms, eps))
    raw = lambda d: y * ((x + d).reshape(len(x), -1) @ w.reshape(-1) + b)  # noqa: E731 (no box)
    assert torch.allclose(raw(torch.zeros_like(x)) - raw(delta),
                          (eps * torch.linalg.vector_norm(w)).expand(len(x)))
    g = torch.Generator().manual_seed(6)
    for _ in range(100):
        d = torch.randn(x.shape, generator=g, dtype=x.dtype)
        d = eps * d / torch.linalg.vector_norm(d.reshape(len(x), -1), dim=1).view(-1, 1, 1, 1)
        assert (raw(d) >= raw(delta) - 1e-9).all()


# --------------------------------------------------------------------------- training and curves

def separable(seed=0, n=200):
    """Two blob classes of 4×4 images: bright top half (+1) or bright bottom half (−1)."""
    g = torch.Generator().manual_seed(seed)
    x = 0.3 * torch.rand((n, 1, 4, 4), generator=g)
    y = torch.where(torch.arange(n) % 2 == 0, 1.0, -1.0)
    x[y > 0, :, :2] += 0.6
    x[y < 0, :, 2:] += 0.6
    return x, y


def test_training_learns_and_is_deterministic():
    x, y = separable()
    x[:, :, :, 0] = 0.0  # a column that is black in every training image
    w1, b1 = linear.train_logistic(x, y, epochs=50)
    w2, b2 = linear.train_logistic(x, y, epochs=50)
    assert torch.equal(w1, w2) and torch.equal(b1, b2)
    assert (w1[:, :, 0] == 0).all()  # never lit, never weighted: the attack leaves it alone
    assert (w1[:, :, 1:] != 0).all()
    w_more, _ = linear.train_logistic(x, y, epochs=200)
    loss = lambda w, b: torch.nn.functional.softplus(-y * linear.scores(w, b, x)).mean()  # noqa: E731
    assert loss(w_more, _) < loss(w1, b1) < math.log(2)  # training lowers the loss from w = 0
    assert w1.shape == x.shape[1:] and b1.dim() == 0
    assert linear.accuracy(w1, b1, x, y) == 1.0
    assert w1[:, :2].mean() > 0 > w1[:, 2:].mean()  # weights point from class −1 to class +1
    assert torch.equal(linear.predict(w1, b1, x), y)


def test_accuracy_curves():
    x, y = separable(1, n=400)
    w, b = linear.train_logistic(x, y, epochs=100)
    grid = [0.0, 0.02, 0.05, 0.1, 0.2, 0.3, 0.5, 1.0]
    worst = linear.accuracy_curve(w, b, x, y, grid, "worst")
    noise = linear.accuracy_curve(w, b, x, y, grid, "random", torch.Generator().manual_seed(0))
    assert worst[0] == noise[0] == linear.accuracy(w, b, x, y) == 1.0
    assert all(a >= b_ for a, b_ in zip(worst, worst[1:])), worst
    assert all(wc <= rn for wc, rn in zip(worst, noise))
    assert worst[-1] == 0.0  # eps = 1 can paint any image
    assert linear.breaking_eps(grid, worst) is not None


@settings(max_examples=50, deadline=None)
@given(st.lists(st.floats(0, 1, allow_nan=False), min_size=1, max_size=12), st.integers(0, 1000))
def test_worst_case_accuracy_never_increases_with_eps(grid, seed):
    w, b, x, y = problem(seed, n=64)
    grid = sorted(grid)
    curve = linear.accuracy_curve(w, b, x, y, grid, "worst")
    assert all(a >= b_ for a, b_ in zip(curve, curve[1:]))


def test_breaking_eps():
    assert linear.breaking_eps([0, 0.1, 0.2], [0.9, 0.6, 0.4]) == 0.2
    assert linear.breaking_eps([0, 0.1, 0.2], [0.9, 0.5, 0.4]) == 0.2  # strictly below
    assert linear.breaking_eps([0, 0.1], [0.9, 0.8]) is None
    with pytest.raises(ValueError):
        linear.breaking_eps([0, 0.1], [0.9])


def test_binary_subset_maps_labels_to_plus_minus_one():
    x = torch.rand(6, 1, 2, 2)
    labels = torch.tensor([3, 7, 1, 7, 3, 0])
    xs, ys = linear.binary_subset(x, labels, (3, 7))
    assert torch.equal(ys, torch.tensor([-1.0, 1.0, 1.0, -1.0]))
    assert torch.equal(xs, x[[0, 1, 3, 4]])


# --------------------------------------------------------------------------- bad input

@pytest.mark.parametrize("eps, message", [(-0.1, "≥ 0"), (float("nan"), "NaN"),
                                          (float("inf"), "finite"), ("0.1", "real number"),
                                          (True, "real number")])
def test_bad_eps(eps, message):
    w, b, x, y = problem(0)
    with pytest.raises(ValueError, match=message):
        linear.worst_case_linf(w, x, y, eps)
    with pytest.raises(ValueError, match=message):
        linear.random_linf(x, eps, torch.Generator())
    with pytest.raises(ValueError, match=message):
        linear.worst_case_l2(w, y, eps)
    with pytest.raises(ValueError, match=message):
        linear.accuracy_curve(w, b, x, y, [0.0, eps])


def test_bad_images_labels_and_shapes():
    w, b, x, y = problem(0)
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        linear.worst_case_linf(w, x * 255, y, 0.1)
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        linear.worst_case_linf(w, x - 0.5, y, 0.1)
    nan = x.clone()
    nan[0, 0, 0, 0] = float("nan")
    with pytest.raises(ValueError, match="NaN"):
        linear.random_linf(nan, 0.1, torch.Generator())
    with pytest.raises(ValueError, match="floating-point"):
        linear.worst_case_linf(w, (x * 255).to(torch.uint8), y, 0.1)
    with pytest.raises(ValueError, match="shape"):
        linear.worst_case_linf(w.reshape(-1), x, y, 0.1)
    with pytest.raises(ValueError, match="shape"):
        linear.worst_case_linf(w, x, y[:-1], 0.1)
    with pytest.raises(ValueError, match="batch"):
        linear.worst_case_linf(w.reshape(-1)[:1], x[0, 0, 0, :1], y[:1], 0.1)
    with pytest.raises(ValueError, match=r"\+1 or -1"):
        linear.worst_case_linf(w, x, (y > 0).double(), 0.1)  # 0/1 labels
    with pytest.raises(ValueError, match="Generator"):
        linear.random_linf(x, 0.1, 0)
    with pytest.raises(ValueError, match="Generator"):
        linear.accuracy_curve(w, b, x, y, [0.1], "random")
    with pytest.raises(ValueError, match="kind"):
        linear.accuracy_curve(w, b, x, y, [0.1], "gaussian")
    with pytest.raises(ValueError, match="epochs"):
        linear.train_logistic(x, y, epochs=0)
    with pytest.raises(ValueError, match="two different"):
        linear.binary_subset(x, torch.zeros(len(x), dtype=torch.long), (3, 3))
    with pytest.raises(ValueError, match="both classes"):
        linear.binary_subset(x, torch.zeros(len(x), dtype=torch.long), (0, 1))


# --------------------------------------------------------------------------- exercise checks

def right_flip_eps(w, b, x, y):
    return linear.margins(w, b, x, y).clamp(min=0) / w.abs().sum()


def right_worst_case(w, x, y, eps):
    return (x - eps * y.view(-1, 1, 1, 1) * torch.sign(w)).clamp(0, 1) - x


def right_random_noise(x, eps, generator):
    signs = torch.randint(0, 2, x.shape, generator=generator) * 2 - 1
    return (x + eps * signs).clamp(0, 1) - x


def right_l2(w, y, eps):
    return -eps * y.view(-1, *[1] * w.dim()) * w / w.norm()


def right_translate(x, dx, dy):
    out = torch.zeros_like(x)
    h, w = x.shape[-2:]
    out[..., max(dy, 0):h + min(dy, 0), max(dx, 0):w + min(dx, 0)] = \
        x[..., max(-dy, 0):h - max(dy, 0), max(-dx, 0):w - max(dx, 0)]
    return out


def stub(*args):
    raise NotImplementedError("Exercise 1.N: your code here")


CASES = [  # check, right answer, wrong answers (each with a word its message must contain)
    (linear.check_flip_eps, "1.1", right_flip_eps, [
        (lambda w, b, x, y: linear.margins(w, b, x, y) / w.abs().sum(), "already"),
        (lambda w, b, x, y: linear.margins(w, b, x, y).clamp(min=0) / w.norm(), "‖w‖₁"),
    ]),
    (linear.check_worst_case, "1.2", right_worst_case, [
        (lambda w, x, y, eps: -eps * y.view(-1, 1, 1, 1) * torch.sign(w).expand_as(x), "clip"),
        (lambda w, x, y, eps: right_worst_case(w, x, -y, eps), "against"),
        (lambda w, x, y, eps: right_worst_case(w, x, y, eps / 2), "against"),
    ]),
    (linear.check_random_noise, "1.3", right_random_noise, [
        (lambda x, eps, g: (x + eps * (2 * torch.rand(x.shape, generator=g, dtype=x.dtype) - 1))
         .clamp(0, 1) - x, "exactly eps"),
        (lambda x, eps, g: right_random_noise(x, eps, torch.Generator().manual_seed(0)), "seeds"),
        (lambda x, eps, g: eps * (torch.randint(0, 2, x.shape, generator=g) * 2 - 1), "clip"),
    ]),
    (linear.check_worst_case_l2, "1.4", right_l2, [
        (lambda w, y, eps: -eps * y.view(-1, *[1] * w.dim()) * w / w.abs().sum(), "norm"),
        (lambda w, y, eps: right_l2(w, -y, eps), "margin"),
    ]),
    (linear.check_translate, "1.5", right_translate, [
        (lambda x, dx, dy: torch.roll(x, shifts=(dy, dx), dims=(-2, -1)), "wrap"),
        (lambda x, dx, dy: right_translate(x, dy, dx), "wrong image"),
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
    assert linear.check_worst_case(lambda w, x, y, eps: 1 / 0) is False
    assert "ZeroDivisionError" in capsys.readouterr().out


def test_a_zero_margin_counts_as_an_error():
    x = torch.rand(4, 1, 2, 2)
    y = torch.tensor([1.0, -1.0, 1.0, -1.0])
    assert linear.accuracy(torch.zeros(1, 2, 2), 0.0, x, y) == 0.0
