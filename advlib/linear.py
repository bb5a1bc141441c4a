r"""Linear classifiers on images and their exact worst case under an ℓ∞ budget.

Defined in chapter 1; chapter 2 adds linear regression.

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
"""
from __future__ import annotations

import math
import numbers
from typing import Callable, Sequence

import torch
import torch.nn.functional as F

from .exercises import check

__all__ = [
    "binary_subset", "train_logistic", "scores", "margins", "predict", "accuracy",
    "worst_case_linf", "random_linf", "worst_case_l2", "accuracy_curve", "breaking_eps",
    "check_flip_eps", "check_worst_case", "check_random_noise", "check_worst_case_l2",
    "check_translate",
]


# --------------------------------------------------------------------------- input checks

def _check_eps(eps) -> float:
    if isinstance(eps, torch.Tensor):
        if eps.numel() != 1:
            raise ValueError(f"eps must be a single number, got a tensor of shape {tuple(eps.shape)}")
        eps = eps.item()
    if isinstance(eps, bool) or not isinstance(eps, numbers.Real):
        raise ValueError(f"eps must be a real number, got {eps!r}")
    eps = float(eps)
    if math.isnan(eps):
        raise ValueError("eps is NaN: the size of the perturbation must be a number ≥ 0")
    if eps < 0:
        raise ValueError(f"eps must be ≥ 0 (it is the radius of a ball), got {eps}")
    if math.isinf(eps):
        raise ValueError("eps must be finite (eps = 1 already allows any image in [0, 1])")
    return eps


def _check_images(x) -> None:
    if not isinstance(x, torch.Tensor):
        raise ValueError(f"x must be a torch.Tensor of images, got {type(x).__name__}")
    if x.dim() < 2:
        raise ValueError(f"x must be a batch [N, ...] of images, got shape {tuple(x.shape)}")
    if not x.is_floating_point():
        raise ValueError(f"x must hold floating-point pixels in [0, 1], got dtype {x.dtype}")
    if x.numel() and (torch.isnan(x).any() or x.min() < 0 or x.max() > 1):
        raise ValueError("x must hold pixel values in [0, 1] (no NaN): scale images by 1/255 first")


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

def _call(fn: Callable, *args):
    """Call a student's function: an unfinished stub propagates, any other error is a wrong answer."""
    try:
        return fn(*args)
    except NotImplementedError:
        raise
    except Exception as error:  # noqa: BLE001 - reported to the student, not swallowed
        raise AssertionError(f"your function raised {type(error).__name__}: {error}") from error


def _tensor(answer, name: str, shape) -> torch.Tensor:
    assert isinstance(answer, torch.Tensor), f"{name} should return a torch.Tensor, got {type(answer).__name__}"
    assert tuple(answer.shape) == tuple(shape), f"{name} should return shape {tuple(shape)}, got {tuple(answer.shape)}"
    assert torch.isfinite(answer).all(), f"{name} returned NaN or infinite values"
    return answer.detach().to(torch.float64)


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
