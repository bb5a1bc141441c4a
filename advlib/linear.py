r"""Linear models and their exact worst case: classifiers on images (chapter 1) and linear
regression under ℓ∞ and ℓ2 perturbations (chapter 2).

Defined in chapter 1; chapter 2 adds linear regression (the section "Defined in chapter 2" at
the end of this module).

A binary linear classifier scores an image ``x`` (any shape, values in ``[0, 1]``) with
``f(x) = <w, x> + b``; ``w`` has the shape of one image. **Labels are ±1** (``y ∈ {−1, +1}``),
so that the *margin* ``y · f(x)`` is positive exactly when the prediction is right. A margin of
exactly 0 counts as an error. :func:`binary_subset` turns a two-class slice of a data set into
``(x, y)`` with ±1 labels.

The threat model of the chapter: an attacker may add ``delta`` with ``‖delta‖∞ ≤ eps`` to each
image, and the perturbed image must stay a valid image, ``x + delta ∈ [0, 1]``. For a linear model
the worst such ``delta`` has a closed form (:func:`worst_case_linf`); :func:`random_linf` draws
noise of the same size that ignores the model, the baseline it is compared with.

Every function checks its input and raises ``ValueError`` with a plain message on a negative or
NaN ``eps``, images outside ``[0, 1]``, labels that are not ±1, or shapes that do not match.

Defined in chapter 2
--------------------
Linear regression ``f(x) = <theta, x> + b`` on real features ``x`` (a batch ``[N, d]``, no box:
e.g. standardised features) with real targets ``y`` (shape ``[N]``). The adversary adds ``delta``
with ``‖delta‖ ≤ eps`` to the **input**; the target stays. With the residual
``r = <theta, x> + b − y`` the inner maximisation of the squared error has a closed form
(Hölder's inequality, attained):

.. math:: \max_{\|\delta\|_\infty \le \epsilon} (r + \langle\theta, \delta\rangle)^2
          = (|r| + \epsilon\|\theta\|_1)^2, \qquad
          \max_{\|\delta\|_2 \le \epsilon} (r + \langle\theta, \delta\rangle)^2
          = (|r| + \epsilon\|\theta\|_2)^2 .

The intercept ``b`` multiplies no feature, so no perturbation reaches it and it is not in the
norm. :func:`robust_squared_loss` computes the worst case, :func:`worst_case_regression_delta`
returns the maximiser, :func:`robust_regression_path` and :func:`fit_robust_regression` minimise
the worst case over ``(theta, b)`` (full-batch Adam from a fixed start: deterministic), and
:func:`robust_regression_threshold` is the ``eps`` from which the robust fit is ``theta = 0``.
These functions raise ``ValueError`` on a negative, NaN or infinite ``eps``, an unknown norm,
non-finite values or shapes that do not match.
"""
from __future__ import annotations

import math
import numbers
from typing import Callable, Sequence

import torch
import torch.nn.functional as F

from ._checks import call_student as _call
from ._checks import check_eps as _check_eps
from ._checks import check_images as _check_images
from ._checks import tensor_answer
from .exercises import check

__all__ = [
    "binary_subset", "train_logistic", "scores", "margins", "predict", "accuracy",
    "worst_case_linf", "random_linf", "worst_case_l2", "accuracy_curve", "breaking_eps",
    "check_flip_eps", "check_worst_case", "check_random_noise", "check_worst_case_l2",
    "check_translate",
    # chapter 2: linear regression
    "REGRESSION_NORMS", "residuals", "dual_norm", "robust_squared_loss",
    "worst_case_regression_delta", "robust_regression_threshold", "robust_regression_path",
    "fit_robust_regression", "check_descent_step", "check_worst_case_regression",
    "check_robust_loss_l2", "check_last_survivor",
]


# --------------------------------------------------------------------------- input checks

def _check_labels(y, n: int) -> None:
    if not isinstance(y, torch.Tensor):
        raise ValueError(f"y must be a torch.Tensor of ±1 labels, got {type(y).__name__}")
    if y.dim() != 1 or y.shape[0] != n:
        raise ValueError(f"y must have shape [{n}] (one label per image), got {tuple(y.shape)}")
    if y.numel() and not ((y == 1) | (y == -1)).all():
        raise ValueError("labels must be +1 or -1 (use binary_subset to convert class indices)")


def _check_weights(w, x) -> None:
    if not isinstance(w, torch.Tensor):
        raise ValueError(f"w must be a torch.Tensor, got {type(w).__name__}")
    if tuple(w.shape) != tuple(x.shape[1:]):
        raise ValueError(
            f"w has shape {tuple(w.shape)} but one image has shape {tuple(x.shape[1:])}")
    if not torch.isfinite(w).all():
        raise ValueError("w contains NaN or infinite values")


def _check_all(w, x, y) -> None:
    _check_images(x)
    _check_weights(w, x)
    _check_labels(y, x.shape[0])


def _per_example(y: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """Labels as a float column that broadcasts over the image dimensions of ``x``."""
    return y.to(dtype=x.dtype, device=x.device).view(-1, *([1] * (x.dim() - 1)))


# --------------------------------------------------------------------------- the model

def binary_subset(x: torch.Tensor, labels: torch.Tensor, digits: Sequence[int]):
    """The images of two classes and their ±1 labels: ``-1`` for ``digits[0]``, ``+1`` for
    ``digits[1]``. Returns ``(x, y)`` with ``y`` a float tensor."""
    if len(digits) != 2 or digits[0] == digits[1]:
        raise ValueError(f"digits must be two different classes, got {digits!r}")
    if labels.dim() != 1 or labels.shape[0] != x.shape[0]:
        raise ValueError(f"labels must have shape [{x.shape[0]}], got {tuple(labels.shape)}")
    negative, positive = (int(d) for d in digits)
    keep = (labels == negative) | (labels == positive)
    if not (labels == negative).any() or not (labels == positive).any():
        raise ValueError(f"both classes {digits!r} must occur in the labels")
    y = torch.where(labels[keep] == positive, 1.0, -1.0).to(x.dtype)
    return x[keep], y


def train_logistic(x: torch.Tensor, y: torch.Tensor, *, epochs: int, lr: float = 0.05,
                   weight_decay: float = 1e-3):
    """Logistic regression by full-batch Adam on ``mean(log(1 + exp(-y·f(x)))) +
    weight_decay/2 · ‖w‖²``, starting from ``w = 0, b = 0``.

    Deterministic by construction: the start is fixed and every step uses the whole batch, so
    there is nothing random to seed. Starting from zero also keeps the weight of a pixel that is
    black in every training image at exactly 0 (its gradient is 0), so the model, and the
    attack, ignore the empty border of the digits.

    Returns ``(w, b)``: ``w`` with the shape of one image, ``b`` a 0-d tensor (both detached).
    """
    _check_images(x)
    _check_labels(y, x.shape[0])
    if not isinstance(epochs, int) or isinstance(epochs, bool) or epochs < 1:
        raise ValueError(f"epochs must be a positive integer, got {epochs!r}")
    if not (lr > 0 and weight_decay >= 0):
        raise ValueError(f"need lr > 0 and weight_decay ≥ 0, got lr={lr}, weight_decay={weight_decay}")
    features = x.reshape(x.shape[0], -1)
    target = y.to(features.dtype)
    w = torch.zeros(features.shape[1], dtype=features.dtype, device=features.device, requires_grad=True)
    b = torch.zeros((), dtype=features.dtype, device=features.device, requires_grad=True)
    opt = torch.optim.Adam([w, b], lr=lr)
    for _ in range(epochs):
        opt.zero_grad()
        loss = F.softplus(-target * (features @ w + b)).mean() + 0.5 * weight_decay * (w @ w)
        loss.backward()
        opt.step()
    return w.detach().reshape(x.shape[1:]), b.detach()


def scores(w: torch.Tensor, b, x: torch.Tensor) -> torch.Tensor:
    """``f(x) = <w, x> + b`` for each image: shape ``[N]``."""
    _check_images(x)
    _check_weights(w, x)
    return x.reshape(x.shape[0], -1) @ w.reshape(-1) + b


def margins(w: torch.Tensor, b, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """``y · f(x)`` for each image: positive when the prediction is right."""
    _check_all(w, x, y)
    return y.to(x.dtype) * scores(w, b, x)


def predict(w: torch.Tensor, b, x: torch.Tensor) -> torch.Tensor:
    """Predicted labels, ±1 (``+1`` when ``f(x) > 0``)."""
    return torch.where(scores(w, b, x) > 0, 1.0, -1.0)


def accuracy(w: torch.Tensor, b, x: torch.Tensor, y: torch.Tensor) -> float:
    """Fraction of images with a positive margin (a margin of exactly 0 counts as wrong)."""
    return (margins(w, b, x, y) > 0).to(torch.float64).mean().item()


# --------------------------------------------------------------------------- perturbations

def _box_step(x: torch.Tensor, eps: float, direction: torch.Tensor) -> torch.Tensor:
    """``eps · direction`` clipped per pixel to the box: ``delta_i ∈ [-x_i, 1 - x_i]``.

    Written as a clamp of ``delta`` itself (not ``clamp(x + …) - x``) so that, in floating
    point too, ``|delta| ≤ eps`` and ``x + delta ∈ [0, 1]`` hold exactly.
    """
    step = eps * direction
    return torch.minimum(torch.maximum(step, -x), 1 - x)


def worst_case_linf(w: torch.Tensor, x: torch.Tensor, y: torch.Tensor, eps: float) -> torch.Tensor:
    r"""The exact worst-case perturbation of a linear model in the ℓ∞ ball, inside the box.

    Returns ``delta`` (shape of ``x``) that solves, for every image separately,

    .. math:: \min_{\delta}\; y\,(\langle w, x+\delta\rangle + b)
              \quad\text{s.t.}\quad \|\delta\|_\infty \le \epsilon,\; x+\delta \in [0,1]^d,

    i.e. the perturbation that lowers the margin most, which is also the one that raises the
    logistic (or any margin-decreasing) loss most: ``delta = clip(-eps · y · sign(w))``, each
    pixel moved by ``eps`` against the margin and then clipped to the box.

    Why clipping per pixel is exactly optimal (not an approximation): the margin is
    ``m(x + delta) = m(x) + Σ_i y w_i delta_i``, a sum of terms that each involve one pixel,
    and the constraints ``|delta_i| ≤ eps`` and ``0 ≤ x_i + delta_i ≤ 1`` also involve one pixel
    each, so the feasible set is a product of intervals ``delta_i ∈ [max(-eps, -x_i),
    min(eps, 1 - x_i)]``. A separable linear function is minimised over a product of
    intervals by minimising every term on its own interval: ``y w_i delta_i`` is smallest at
    the lower end when ``y w_i > 0`` and at the upper end when ``y w_i < 0`` (anything in the
    interval when ``w_i = 0``; this function takes ``delta_i = 0``). Those ends are exactly
    ``-eps · y · sign(w_i)`` clipped to the interval. Without the box the worst margin is
    ``m(x) - eps · ‖w‖₁``; with it, it is ``m(x) - Σ_i |w_i| · (room pixel i has in the bad
    direction, at most eps)``.
    """
    _check_all(w, x, y)
    eps = _check_eps(eps)
    direction = -_per_example(y, x) * torch.sign(w).to(x.dtype)
    return _box_step(x, eps, direction)


def random_linf(x: torch.Tensor, eps: float, generator: torch.Generator) -> torch.Tensor:
    """Random sign noise of the same ℓ∞ size: each pixel moved by ``±eps`` (a fair coin per
    pixel, drawn from ``generator``), then clipped to the box like :func:`worst_case_linf`.
    It ignores the model and the label: the baseline a worst case is compared with."""
    _check_images(x)
    eps = _check_eps(eps)
    if not isinstance(generator, torch.Generator):
        raise ValueError("pass a seeded torch.Generator (e.g. advlib.set_seed(0)) for reproducible noise")
    return _box_step(x, eps, _random_signs(x, generator))


def _random_signs(x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    coins = torch.randint(0, 2, x.shape, generator=generator, device=generator.device)
    return (2 * coins - 1).to(dtype=x.dtype, device=x.device)


def worst_case_l2(w: torch.Tensor, y: torch.Tensor, eps: float) -> torch.Tensor:
    """The worst-case perturbation of a linear model in the ℓ2 ball of radius ``eps``, with no
    box constraint: ``delta = -eps · y · w / ‖w‖₂`` (Cauchy–Schwarz), which lowers every margin
    by exactly ``eps · ‖w‖₂``. Shape ``[N, *w.shape]``."""
    eps = _check_eps(eps)
    if not isinstance(w, torch.Tensor) or not torch.isfinite(w).all():
        raise ValueError("w must be a finite torch.Tensor")
    if not isinstance(y, torch.Tensor) or y.dim() != 1:
        raise ValueError("y must be a 1-D torch.Tensor of ±1 labels")
    _check_labels(y, y.shape[0])
    norm = torch.linalg.vector_norm(w)
    if norm == 0:
        return torch.zeros((y.shape[0], *w.shape), dtype=w.dtype, device=w.device)
    column = y.to(dtype=w.dtype, device=w.device).view(-1, *([1] * w.dim()))
    return -eps * column * (w / norm)


# --------------------------------------------------------------------------- curves

def accuracy_curve(w: torch.Tensor, b, x: torch.Tensor, y: torch.Tensor,
                   eps_grid: Sequence[float], kind: str = "worst",
                   generator: torch.Generator | None = None) -> list[float]:
    """Accuracy at each ``eps`` of ``eps_grid`` under ``kind="worst"`` (the exact ℓ∞ worst case)
    or ``kind="random"`` (random signs from ``generator``).

    For ``"random"`` one sign pattern per pixel is drawn and scaled by every ``eps`` (common
    random numbers), so the curve shows the effect of the size, not of a new draw. The
    worst-case curve is non-increasing in ``eps`` (the balls are nested); the random one need
    not be exactly, though it is flat in practice.
    """
    _check_all(w, x, y)
    grid = [_check_eps(eps) for eps in eps_grid]
    if kind == "worst":
        direction = -_per_example(y, x) * torch.sign(w).to(x.dtype)
    elif kind == "random":
        if not isinstance(generator, torch.Generator):
            raise ValueError("kind='random' needs a seeded torch.Generator")
        direction = _random_signs(x, generator)
    else:
        raise ValueError(f"kind must be 'worst' or 'random', got {kind!r}")
    return [accuracy(w, b, x + _box_step(x, eps, direction), y) for eps in grid]


def breaking_eps(eps_grid: Sequence[float], accuracies: Sequence[float],
                 threshold: float = 0.5) -> float | None:
    """The smallest ``eps`` on the grid whose accuracy is below ``threshold`` (None if none)."""
    if len(eps_grid) != len(accuracies):
        raise ValueError(f"eps_grid has {len(eps_grid)} points but accuracies has {len(accuracies)}")
    for eps, acc in zip(eps_grid, accuracies):
        if acc < threshold:
            return float(eps)
    return None


# --------------------------------------------------------------------------- exercise checks

def _tensor(answer, name: str, shape) -> torch.Tensor:
    return tensor_answer(answer, name, shape).to(torch.float64)


def _toy_problem(seed: int, n: int = 64, shape=(1, 6, 6)):
    """Small images with many pixels exactly at 0 and 1 (so the box matters), ±1 labels, weights
    with some exact zeros, in float64."""
    g = torch.Generator().manual_seed(seed)
    x = torch.rand((n, *shape), generator=g, dtype=torch.float64)
    x = torch.where(x < 0.3, 0.0, torch.where(x > 0.8, 1.0, x))
    y = torch.where(torch.rand(n, generator=g) < 0.5, -1.0, 1.0).to(torch.float64)
    w = torch.randn(shape, generator=g, dtype=torch.float64)
    w = torch.where(w.abs() < 0.2, 0.0, w)
    b = torch.randn((), generator=g, dtype=torch.float64)
    return w, b, x, y


def _flip_eps(w, b, x, y) -> torch.Tensor:
    return margins(w, b, x, y).clamp(min=0) / w.abs().sum()


def check_flip_eps(flip_eps: Callable) -> bool:
    """Exercise 1.1: ``flip_eps(w, b, x, y)`` returns, per image, the smallest ``eps`` at which
    the worst-case ℓ∞ perturbation (ignoring the box) makes the margin ≤ 0: ``max(m, 0) / ‖w‖₁``."""

    def assertions():
        for seed in range(3):
            w, b, x, y = _toy_problem(seed)
            got = _tensor(_call(flip_eps, w, b, x, y), "flip_eps", (x.shape[0],))
            want = _flip_eps(w, b, x, y)
            wrong = margins(w, b, x, y) <= 0
            assert (got[wrong] == 0).all(), \
                "an image the model already gets wrong needs no perturbation: its flip eps is 0"
            assert torch.allclose(got, want, rtol=1e-5, atol=1e-8), (
                "not the right values: the worst case lowers the margin by eps·‖w‖₁, so the "
                "margin reaches 0 at eps = m / ‖w‖₁")

    return check("1.1", assertions)


def check_worst_case(worst_case: Callable) -> bool:
    """Exercise 1.2: ``worst_case(w, x, y, eps)`` returns the worst-case ℓ∞ ``delta`` inside the
    box (compared with :func:`worst_case_linf`)."""

    def assertions():
        for seed in range(3):
            w, b, x, y = _toy_problem(seed)
            for eps in (0.0, 0.05, 0.3):
                delta = _tensor(_call(worst_case, w, x, y, eps), "worst_case", x.shape)
                assert delta.abs().max() <= eps + 1e-6, f"‖delta‖∞ exceeds eps = {eps}"
                adv = x + delta
                assert adv.min() >= -1e-6 and adv.max() <= 1 + 1e-6, \
                    "x + delta leaves [0, 1]: clip every pixel to the box"
                got = margins(w, b, adv.clamp(0, 1), y)
                want = margins(w, b, x + worst_case_linf(w, x, y, eps), y)
                assert torch.allclose(got, want, rtol=1e-5, atol=1e-5), (
                    f"at eps = {eps} your delta lowers the margin less than the worst case: "
                    "move each pixel by eps against y·w (sign of w, flipped by y)")

    return check("1.2", assertions)


def check_random_noise(random_noise: Callable) -> bool:
    """Exercise 1.3: ``random_noise(x, eps, generator)`` returns random-sign ℓ∞ noise of size
    ``eps`` (±eps per pixel, fair coin, clipped to the box), reproducible from the generator."""

    def assertions():
        g = torch.Generator().manual_seed(0)
        x = 0.2 + 0.6 * torch.rand((200, 1, 10, 10), generator=g, dtype=torch.float64)
        x[:, :, 0, :] = 0.0  # a black row and a white row: the box must clip them
        x[:, :, 1, :] = 1.0
        eps = 0.1
        first = _tensor(_call(random_noise, x, eps, torch.Generator().manual_seed(1)),
                        "random_noise", x.shape)
        again = _tensor(_call(random_noise, x, eps, torch.Generator().manual_seed(1)),
                        "random_noise", x.shape)
        other = _tensor(_call(random_noise, x, eps, torch.Generator().manual_seed(2)),
                        "random_noise", x.shape)
        assert first.abs().max() <= eps + 1e-6, "‖delta‖∞ exceeds eps"
        adv = x + first
        assert adv.min() >= -1e-6 and adv.max() <= 1 + 1e-6, \
            "x + delta leaves [0, 1]: clip every pixel to the box"
        inner = first[:, :, 2:, :]
        assert torch.allclose(inner.abs(), torch.full_like(inner, eps), rtol=1e-5, atol=1e-6), \
            "away from the box edges every pixel should move by exactly eps (random sign × eps)"
        share = (inner > 0).to(torch.float64).mean().item()
        assert 0.45 < share < 0.55, f"the signs should be a fair coin, but {share:.0%} are positive"
        assert torch.equal(first, again), "use the generator you are given, so that a seed reproduces the noise"
        assert not torch.equal(first, other), "different seeds gave the same noise: draw from the generator"

    return check("1.3", assertions)


def check_worst_case_l2(worst_case_l2_fn: Callable) -> bool:
    """Exercise 1.4: ``worst_case_l2_fn(w, y, eps)`` returns the ℓ2 worst case of a linear model,
    ``-eps · y · w / ‖w‖₂`` (no box), shape ``[N, *w.shape]``."""

    def assertions():
        for seed in range(3):
            w, b, x, y = _toy_problem(seed)
            for eps in (0.0, 0.5, 2.0):
                delta = _tensor(_call(worst_case_l2_fn, w, y, eps), "worst_case_l2", x.shape)
                norms = torch.linalg.vector_norm(delta.reshape(len(delta), -1), dim=1)
                assert torch.allclose(norms, torch.full_like(norms, eps), rtol=1e-5, atol=1e-6), \
                    f"every delta should have ℓ2 norm eps = {eps}"
                drop = -y * (delta.reshape(len(delta), -1) @ w.reshape(-1))
                want = eps * torch.linalg.vector_norm(w)
                assert torch.allclose(drop, want.expand_as(drop), rtol=1e-5, atol=1e-5), (
                    "the margin should drop by eps·‖w‖₂ for every image: point delta along "
                    "-y·w (Cauchy–Schwarz)")

    return check("1.4", assertions)


def _translate(x: torch.Tensor, dx: int, dy: int) -> torch.Tensor:
    """Images moved ``dx`` pixels right and ``dy`` pixels down, the uncovered border filled with 0."""
    out = torch.zeros_like(x)
    h, w = x.shape[-2:]
    if abs(dx) >= w or abs(dy) >= h:
        return out
    src_y, dst_y = (slice(0, h - dy), slice(dy, h)) if dy >= 0 else (slice(-dy, h), slice(0, h + dy))
    src_x, dst_x = (slice(0, w - dx), slice(dx, w)) if dx >= 0 else (slice(-dx, w), slice(0, w + dx))
    out[..., dst_y, dst_x] = x[..., src_y, src_x]
    return out


def check_translate(translate: Callable) -> bool:
    """Exercise 1.5: ``translate(x, dx, dy)`` moves images ``dx`` pixels right and ``dy`` down,
    filling the uncovered border with black (0), not wrapping around."""

    def assertions():
        g = torch.Generator().manual_seed(0)
        x = torch.rand((5, 1, 8, 8), generator=g)
        for dx, dy in ((0, 0), (2, 0), (0, 3), (-1, 2), (3, -2)):
            got = _call(translate, x.clone(), dx, dy)
            assert isinstance(got, torch.Tensor) and got.shape == x.shape, \
                f"translate should return a tensor of shape {tuple(x.shape)}"
            want = _translate(x, dx, dy)
            rolled = torch.roll(x, shifts=(dy, dx), dims=(-2, -1))
            if not torch.allclose(got, want) and torch.allclose(got, rolled):
                raise AssertionError("pixels wrap around the edge (torch.roll): fill the uncovered border with 0")
            assert torch.allclose(got, want), (
                f"(dx, dy) = ({dx}, {dy}) gives the wrong image: dx > 0 moves right, dy > 0 moves down")

    return check("1.5", assertions)


# =========================================================================== chapter 2
# Defined in chapter 2: linear regression under ℓ∞ and ℓ2 perturbations of the input.

REGRESSION_NORMS = ("linf", "l2")


def _check_norm(norm) -> str:
    if not isinstance(norm, str) or norm not in REGRESSION_NORMS:
        raise ValueError(f"norm must be one of {', '.join(map(repr, REGRESSION_NORMS))}, got {norm!r}")
    return norm


def _check_regression_eps(eps) -> float:
    value = eps.item() if isinstance(eps, torch.Tensor) and eps.numel() == 1 else eps
    if (isinstance(value, numbers.Real) and not isinstance(value, bool)
            and math.isinf(value) and value > 0):
        raise ValueError("eps must be finite: an unbounded perturbation makes every squared error infinite")
    return _check_eps(eps)


def _check_features(x) -> None:
    if not isinstance(x, torch.Tensor):
        raise ValueError(f"x must be a torch.Tensor of features [N, d], got {type(x).__name__}")
    if x.dim() != 2:
        raise ValueError(f"x must have shape [N, d] (one row of d features per example), "
                         f"got {tuple(x.shape)}")
    if not x.is_floating_point():
        raise ValueError(f"x must hold floating-point features, got dtype {x.dtype}")
    if not torch.isfinite(x).all():
        raise ValueError("x contains NaN or infinite values")


def _check_targets(y, n: int) -> None:
    if not isinstance(y, torch.Tensor):
        raise ValueError(f"y must be a torch.Tensor of targets, got {type(y).__name__}")
    if y.dim() != 1 or y.shape[0] != n:
        raise ValueError(f"y must have shape [{n}] (one target per row of x), got {tuple(y.shape)}")
    if not torch.isfinite(y).all():
        raise ValueError("y contains NaN or infinite values")


def _check_theta(theta, d: int) -> None:
    if not isinstance(theta, torch.Tensor):
        raise ValueError(f"theta must be a torch.Tensor of shape [{d}], got {type(theta).__name__}")
    if theta.dim() != 1 or theta.shape[0] != d:
        raise ValueError(f"theta has shape {tuple(theta.shape)} but x has {d} features: "
                         f"it must have shape [{d}]")
    if not torch.isfinite(theta).all():
        raise ValueError("theta contains NaN or infinite values")


def _check_bias(b):
    if isinstance(b, torch.Tensor):
        if b.numel() != 1:
            raise ValueError(f"b must be a single number, got a tensor of shape {tuple(b.shape)}")
        if not torch.isfinite(b).all():
            raise ValueError("b is NaN or infinite")
        return b.reshape(())
    if isinstance(b, bool) or not isinstance(b, numbers.Real) or not math.isfinite(b):
        raise ValueError(f"b must be a finite real number, got {b!r}")
    return float(b)


def _check_regression(theta, b, x, y):
    _check_features(x)
    _check_theta(theta, x.shape[1])
    _check_targets(y, x.shape[0])
    return _check_bias(b)


def residuals(theta: torch.Tensor, b, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """``r = <theta, x> + b − y`` for each example: shape ``[N]``, in the dtype of ``x``."""
    b = _check_regression(theta, b, x, y)
    return x @ theta.to(x.dtype) + b - y.to(x.dtype)


def dual_norm(theta: torch.Tensor, norm: str = "linf") -> torch.Tensor:
    """The norm of ``theta`` that an attack in ``norm`` makes the model pay: ``‖theta‖₁`` for an
    ℓ∞ attack, ``‖theta‖₂`` for an ℓ2 attack (the dual norm). A 0-d tensor (differentiable)."""
    _check_norm(norm)
    if not isinstance(theta, torch.Tensor) or theta.dim() != 1:
        raise ValueError("theta must be a 1-D torch.Tensor")
    return theta.abs().sum() if norm == "linf" else torch.linalg.vector_norm(theta)


def _reduce(values: torch.Tensor, reduction: str) -> torch.Tensor:
    if reduction == "mean":
        return values.mean()
    if reduction == "sum":
        return values.sum()
    if reduction == "none":
        return values
    raise ValueError(f"reduction must be 'mean', 'sum' or 'none', got {reduction!r}")


def robust_squared_loss(theta: torch.Tensor, b, x: torch.Tensor, y: torch.Tensor, eps: float,
                        norm: str = "linf", reduction: str = "mean") -> torch.Tensor:
    r"""The worst-case squared error of linear regression, in closed form:

    .. math:: \max_{\|\delta_i\| \le \epsilon} \big(\langle\theta, x_i+\delta_i\rangle + b - y_i\big)^2
              = \big(|r_i| + \epsilon\,\|\theta\|_*\big)^2,

    with ``‖·‖_*`` the dual norm (``‖theta‖₁`` for ``norm="linf"``, ``‖theta‖₂`` for ``"l2"``).
    Why: ``r + <theta, delta>`` ranges over ``[r − eps‖theta‖_*, r + eps‖theta‖_*]`` (Hölder,
    with equality at :func:`worst_case_regression_delta`), and the square is largest at the end
    farther from 0. ``eps = 0`` gives the plain squared error. ``reduction``: ``"mean"`` (the
    worst-case MSE), ``"sum"`` or ``"none"`` (shape ``[N]``). Differentiable in ``theta`` and ``b``.
    """
    _check_norm(norm)
    eps = _check_regression_eps(eps)
    r = residuals(theta, b, x, y)
    return _reduce((r.abs() + eps * dual_norm(theta.to(x.dtype), norm)) ** 2, reduction)


def worst_case_regression_delta(theta: torch.Tensor, b, x: torch.Tensor, y: torch.Tensor,
                                eps: float, norm: str = "linf") -> torch.Tensor:
    """The perturbation that attains :func:`robust_squared_loss`: shape ``[N, d]``, detached.

    It pushes the prediction further from the target: ``s = sign(r)`` (``+1`` where ``r = 0``),
    then ``delta = eps · s · sign(theta)`` for ℓ∞ (a corner of the cube; 0 where
    ``theta_j = 0``) and ``delta = eps · s · theta / ‖theta‖₂`` for ℓ2 (0 when ``theta = 0``).
    No box: the features are real numbers. The target is never perturbed.
    """
    _check_norm(norm)
    eps = _check_regression_eps(eps)
    r = residuals(theta, b, x, y).detach()
    t = theta.detach().to(x.dtype)
    s = torch.where(r >= 0, 1.0, -1.0).to(x.dtype).unsqueeze(1)
    if norm == "linf":
        direction = torch.sign(t)
    else:
        size = torch.linalg.vector_norm(t)
        direction = t / size if size > 0 else torch.zeros_like(t)
    return (eps * s * direction.unsqueeze(0)).detach()


def robust_regression_threshold(x: torch.Tensor, y: torch.Tensor, norm: str = "linf") -> float:
    r"""The smallest ``eps`` from which the robust fit is ``theta = 0`` (and ``b = mean(y)``):

    .. math:: \bar\epsilon = \frac{\|X^\top (y - \bar y)\|_{\star\star}}{\|y - \bar y\|_1},

    with ``‖·‖_{★★}`` the norm dual to the penalty: ``‖·‖∞`` for an ℓ∞ attack (penalty ℓ1), ``‖·‖₂``
    for an ℓ2 attack. At ``theta = 0, b = ȳ`` the slope of the worst-case loss in a direction
    ``v`` is ``2 (−<v, Xᵀ(y − ȳ)> + eps ‖v‖ ‖y − ȳ‖₁)``, which is ≥ 0 in every direction exactly
    when ``eps ≥ eps_bar`` (Hölder again). Like the ``lambda_max`` of the lasso. Returns 0 for a
    constant target.
    """
    _check_norm(norm)
    _check_features(x)
    _check_targets(y, x.shape[0])
    centred = y.to(x.dtype) - y.to(x.dtype).mean()
    spread = centred.abs().sum()
    if spread == 0:
        return 0.0
    pull = x.T @ centred
    top = pull.abs().max() if norm == "linf" else torch.linalg.vector_norm(pull)
    return (top / spread).item()


def robust_regression_path(x: torch.Tensor, y: torch.Tensor, eps_grid: Sequence[float],
                           norm: str = "linf", *, epochs: int, lr: float = 0.05,
                           lr_final: float = 1e-4):
    """Minimise the worst-case MSE :func:`robust_squared_loss` over ``(theta, b)`` for every
    ``eps`` of ``eps_grid`` at once. Returns ``(theta, b)``: shapes ``[E, d]`` and ``[E]``.

    Full-batch Adam from ``theta = 0, b = mean(y)``, the step size decaying geometrically from
    ``lr`` to ``lr_final`` so that coefficients whose optimum is 0 (the objective has kinks there,
    like the lasso) settle within about ``lr_final`` of it. The objective is convex. The fits for
    different ``eps`` do not interact (Adam acts coordinate by coordinate and the total loss is a
    sum), so one batched run equals ``E`` separate ones. Deterministic: fixed start, full batch.
    ``eps = 0`` is ordinary least squares, which has no kink and is solved exactly instead
    (``torch.linalg.lstsq``; Adam converges slowly on correlated features). Use standardised
    features and targets so that one ``lr`` suits every coefficient. The problem is tiny, so
    the loop runs on one CPU thread (restored afterwards): thread start-up would cost more than
    the arithmetic.
    """
    _check_norm(norm)
    _check_features(x)
    _check_targets(y, x.shape[0])
    grid = [_check_regression_eps(eps) for eps in eps_grid]
    if not grid:
        raise ValueError("eps_grid is empty")
    if not isinstance(epochs, int) or isinstance(epochs, bool) or epochs < 1:
        raise ValueError(f"epochs must be a positive integer, got {epochs!r}")
    if not (lr > 0 and 0 < lr_final <= lr):
        raise ValueError(f"need 0 < lr_final ≤ lr, got lr={lr}, lr_final={lr_final}")
    target = y.to(x.dtype)
    eps = torch.tensor(grid, dtype=x.dtype, device=x.device)
    theta = torch.zeros((len(grid), x.shape[1]), dtype=x.dtype, device=x.device, requires_grad=True)
    b = torch.full((len(grid),), target.mean().item(), dtype=x.dtype, device=x.device,
                   requires_grad=True)
    opt = torch.optim.Adam([theta, b], lr=lr)
    decay = torch.optim.lr_scheduler.ExponentialLR(opt, gamma=(lr_final / lr) ** (1 / epochs))
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        for _ in range(epochs):
            opt.zero_grad()
            r = x @ theta.T + b - target.unsqueeze(1)  # [N, E]
            penalty = (theta.abs().sum(1) if norm == "linf"
                       else torch.linalg.vector_norm(theta, dim=1))
            loss = ((r.abs() + eps * penalty) ** 2).mean(0).sum()
            loss.backward()
            opt.step()
            decay.step()
    finally:
        torch.set_num_threads(threads)
    theta, b = theta.detach(), b.detach()
    _snap_to_zero(x, target, eps, norm, theta, b, limit=100 * lr_final)
    plain = eps == 0
    if plain.any():  # ordinary least squares, exactly
        design = torch.cat([x, torch.ones_like(x[:, :1])], dim=1).cpu()
        solution = torch.linalg.lstsq(design, target.cpu().unsqueeze(1), driver="gelsd")
        solution = solution.solution[:, 0].to(x.device)
        theta[plain], b[plain] = solution[:-1], solution[-1]
    return theta, b


def _snap_to_zero(x, y, eps, norm, theta, b, limit: float) -> None:
    """Adam leaves a coefficient whose optimum is 0 (a kink) oscillating within a few step sizes
    of it. Set such small coefficients (``|theta_j| ≤ limit``: all at once, else one by one,
    smallest first) to exactly 0 wherever that does not increase the fit's objective; in place.
    Only ever improves a fit."""
    def objective(k, t):
        r = x @ t + b[k] - y
        return ((r.abs() + eps[k] * dual_norm(t, norm)) ** 2).mean()

    for k in range(theta.shape[0]):
        best = objective(k, theta[k])
        if theta[k].abs().max() <= limit and objective(k, torch.zeros_like(theta[k])) <= best:
            theta[k] = 0.0  # under ℓ2 the kink is at theta = 0 as a whole
            continue
        for j in torch.argsort(theta[k].abs()).tolist():
            if theta[k, j] == 0 or theta[k, j].abs() > limit:
                continue
            trial = theta[k].clone()
            trial[j] = 0.0
            value = objective(k, trial)
            if value <= best:
                theta[k], best = trial, value


def fit_robust_regression(x: torch.Tensor, y: torch.Tensor, eps: float, norm: str = "linf", *,
                          epochs: int, lr: float = 0.05, lr_final: float = 1e-4):
    """Adversarially trained linear regression: :func:`robust_regression_path` for one ``eps``.
    Returns ``(theta, b)``: shapes ``[d]`` and ``[]``."""
    theta, b = robust_regression_path(x, y, [eps], norm, epochs=epochs, lr=lr, lr_final=lr_final)
    return theta[0], b[0]


# --------------------------------------------------------------------------- chapter 2 checks

def _regression_problem(seed: int, n: int = 40, d: int = 5, scales: bool = False):
    """Random features and targets in float64 (optionally with features of different scales),
    a parameter vector with one exact zero, and an intercept."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randn((n, d), generator=g, dtype=torch.float64)
    if scales:
        x = x * torch.linspace(0.5, 3.0, d, dtype=torch.float64)[torch.randperm(d, generator=g)]
    theta = torch.randn(d, generator=g, dtype=torch.float64)
    theta[int(torch.randint(0, d, (1,), generator=g))] = 0.0
    b = torch.randn((), generator=g, dtype=torch.float64)
    y = x @ torch.randn(d, generator=g, dtype=torch.float64) + torch.randn(n, generator=g, dtype=torch.float64)
    return theta, b, x, y


def _ascent_max_l2(theta, b, x, y, eps, steps: int = 200) -> torch.Tensor:
    """The worst-case squared error in the ℓ2 ball found numerically (projected gradient ascent
    on ``delta`` from a small random start), per example, with no use of the closed form."""
    if eps == 0:
        return (x @ theta + b - y) ** 2
    g = torch.Generator().manual_seed(0)
    delta = 1e-3 * eps * torch.randn(x.shape, generator=g, dtype=x.dtype)
    for _ in range(steps):
        delta.requires_grad_(True)
        loss = ((x + delta) @ theta + b - y) ** 2
        (grad,) = torch.autograd.grad(loss.sum(), delta)
        with torch.no_grad():
            step = grad / grad.norm(dim=1, keepdim=True).clamp(min=1e-12)
            delta = delta + 0.5 * eps * step
            delta = delta * (eps / delta.norm(dim=1, keepdim=True).clamp(min=eps))
    with torch.no_grad():
        return ((x + delta) @ theta + b - y) ** 2


def check_descent_step(descent_step: Callable) -> bool:
    """Exercise 2.1: ``descent_step(theta, x, y, alpha)`` returns the parameters after one
    gradient **descent** step on ``L = ½ Σ (<theta, x_i> − y_i)²`` (no intercept):
    ``theta − alpha · Xᵀ(X theta − y)``."""

    def assertions():
        for seed in range(3):
            theta, _, x, y = _regression_problem(seed)
            alpha = 0.3 / torch.linalg.matrix_norm(x, ord=2).item() ** 2
            grad = x.T @ (x @ theta - y)
            got = _tensor(_call(descent_step, theta.clone(), x, y, alpha), "descent_step", theta.shape)
            if torch.allclose(got, theta + alpha * grad, rtol=1e-6, atol=1e-9):
                raise AssertionError("that is gradient ascent: it climbs the loss. Parameters "
                                     "move against the gradient, theta - alpha * grad")
            assert torch.allclose(got, theta - alpha * grad, rtol=1e-6, atol=1e-9), (
                "not theta - alpha * grad with grad = X^T (X theta - y), the gradient of "
                "1/2 sum (x_i . theta - y_i)^2")
            before = 0.5 * ((x @ theta - y) ** 2).sum()
            after = 0.5 * ((x @ got - y) ** 2).sum()
            assert after < before, "the loss did not go down"

    return check("2.1", assertions)


def check_worst_case_regression(worst_delta: Callable) -> bool:
    """Exercise 2.2: ``worst_delta(theta, b, x, y, eps)`` returns, per example, an ℓ∞
    perturbation ``delta`` (shape ``[N, d]``, ``‖delta_i‖∞ ≤ eps``) that maximises the squared
    error ``(<theta, x_i + delta_i> + b − y_i)²``."""

    def assertions():
        for seed in range(3):
            theta, b, x, y = _regression_problem(seed)
            for eps in (0.0, 0.1, 0.7):
                delta = _tensor(_call(worst_delta, theta, b, x, y, eps), "worst_delta", x.shape)
                assert delta.abs().max() <= eps + 1e-9, f"‖delta‖∞ exceeds eps = {eps}"
                got = ((x + delta) @ theta + b - y) ** 2
                want = robust_squared_loss(theta, b, x, y, eps, "linf", reduction="none")
                if eps > 0 and (got < ((x @ theta + b - y) ** 2) - 1e-9).any():
                    raise AssertionError(
                        f"at eps = {eps} your delta lowers the error of some examples: push the "
                        "prediction away from the target, in the direction of the residual's sign")
                assert torch.allclose(got, want, rtol=1e-6, atol=1e-9), (
                    f"at eps = {eps} your delta does not reach the worst case (|r| + eps ‖theta‖₁)²: "
                    "move every feature by eps, along sign(r) · sign(theta_j)")

    return check("2.2", assertions)


def check_robust_loss_l2(robust_loss_l2: Callable) -> bool:
    """Exercise 2.3: ``robust_loss_l2(theta, b, x, y, eps)`` returns, per example (shape
    ``[N]``), the worst-case squared error over ``‖delta‖₂ ≤ eps``; compared with a numerical
    maximisation (projected gradient ascent on ``delta``)."""

    def assertions():
        for seed in range(3):
            theta, b, x, y = _regression_problem(seed)
            for eps in (0.0, 0.2, 1.0):
                got = _tensor(_call(robust_loss_l2, theta, b, x, y, eps), "robust_loss_l2",
                              (x.shape[0],))
                numerical = _ascent_max_l2(theta, b, x, y, eps)
                linf = robust_squared_loss(theta, b, x, y, eps, "linf", reduction="none")
                if eps > 0 and torch.allclose(got, linf, rtol=1e-6):
                    raise AssertionError("that is the ℓ∞ case (‖theta‖₁): in the ℓ2 ball the "
                                         "largest <theta, delta> is eps · ‖theta‖₂")
                assert (got >= numerical * (1 - 1e-6) - 1e-9).all(), (
                    f"at eps = {eps} gradient ascent on delta found a larger squared error than "
                    "yours: your value is not the maximum")
                assert torch.allclose(got, numerical, rtol=1e-5, atol=1e-8), (
                    f"at eps = {eps} your value is larger than any squared error a delta with "
                    "‖delta‖₂ ≤ eps can reach: check the cross term 2 eps |r| ‖theta‖₂")

    return check("2.3", assertions)


def check_last_survivor(last_survivor: Callable) -> bool:
    """Exercise 2.4: ``last_survivor(x, y)`` returns ``(j, eps_bar)`` for ℓ∞ adversarial training:
    the index of the coefficient that is the last to reach 0 as ``eps`` grows, and the ``eps``
    from which every coefficient is 0 (:func:`robust_regression_threshold`)."""

    def assertions():
        for seed in range(4):
            _, _, x, y = _regression_problem(seed, n=60, d=6, scales=True)
            answer = _call(last_survivor, x, y)
            assert isinstance(answer, tuple) and len(answer) == 2, \
                "return a pair (j, eps_bar)"
            j, eps_bar = answer
            j = int(j.item()) if isinstance(j, torch.Tensor) else j
            eps_bar = float(eps_bar.item()) if isinstance(eps_bar, torch.Tensor) else eps_bar
            assert isinstance(j, int) and isinstance(eps_bar, float), \
                "j should be an int and eps_bar a float"
            centred = y - y.mean()
            pull = x.T @ centred
            want_j = int(pull.abs().argmax())
            corr_j = int((pull / x.std(0)).abs().argmax())
            if j != want_j and j == corr_j and corr_j != want_j:
                raise AssertionError(
                    "that is the feature most correlated with y; the ε-ball is in the units of "
                    "the features, so what counts is |x_jᵀ(y − ȳ)| itself")
            assert j == want_j, ("not the last survivor: at theta = 0 the coefficient that gains "
                                 "most per unit of ‖theta‖₁ is the one with the largest |x_jᵀ(y − ȳ)|")
            want = robust_regression_threshold(x, y, "linf")
            if math.isclose(eps_bar, pull.abs().max().item() / centred.norm().item(), rel_tol=1e-6):
                raise AssertionError("divide by ‖y − ȳ‖₁ (the sum of |r_i| at theta = 0), not ‖y − ȳ‖₂")
            assert math.isclose(eps_bar, want, rel_tol=1e-6), (
                "eps_bar is off: at theta = 0 the slope towards feature j is "
                "-|x_jᵀ(y − ȳ)| + eps · ‖y − ȳ‖₁")

    return check("2.4", assertions)
