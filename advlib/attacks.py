r"""Adversarial attacks on image classifiers: FGSM, PGD (ℓ∞ and ℓ2), random noise and a
zeroth-order black-box attack (ZOO).

Defined in chapter 3; every later chapter attacks its models with these functions.

Conventions (the same in every function):

* Inputs ``x`` are a batch ``[N, ...]`` of images with values in ``[0, 1]``; ``y`` holds ``N``
  class indices. Models return **logits**; any normalisation lives inside the model.
* An attack returns the adversarial examples ``x + delta`` as a new, detached tensor, with
  ``‖delta‖ ≤ eps`` in the attack's norm and ``x + delta`` clamped to ``[0, 1]``.
  ``eps = 0`` returns the input unchanged.
* Attacks put the model in eval mode while they run and restore every submodule's previous
  mode afterwards. They work inside ``torch.no_grad()`` (gradients are switched on inside), never
  touch the parameters' ``.grad`` and never change the model.
* Loss ``"ce"`` is the cross-entropy; ``"cw"`` is the Carlini-Wagner margin
  ``max_{j≠y} z_j − z_y``. Untargeted attacks *increase* the loss of the true label ``y``;
  with ``targeted=True`` ``y`` holds the **target** labels and the attack *decreases* the loss
  towards them.
* A ``torch.Generator`` makes every random choice (random starts, noise, coordinates)
  reproducible.
* Bad arguments raise ``ValueError`` with a plain message: a negative or NaN ``eps``, ``alpha ≤ 0``,
  ``steps < 1``, ``restarts < 1``, pixels outside ``[0, 1]``, labels that do not match the batch,
  an unknown norm or loss.

PGD follows Madry et al. (2018) step for step, and with ``random_start=False`` it produces the
same adversarial examples as torchattacks' ``PGD``/``PGDL2``, foolbox's ``LinfPGD``/``L2PGD`` and
(where clamping to ``[0, 1]`` does not bind in ℓ2) ART's ``ProjectedGradientDescent``; the
tests check this. For every ℓ2 step the gradient is normalised per example, the iterate is
projected onto the ε-ball, then clamped to ``[0, 1]``.

A *transfer* (black-box, surrogate) attack needs no function of its own: run :func:`pgd` on a
surrogate model you trained yourself, then evaluate the target model on the result, e.g.
``accuracy(target, pgd(surrogate, x, y, eps, alpha, steps), y)``.

:func:`zoo` is the query-only attack: it sees nothing but the model's outputs and estimates the
gradient by symmetric finite differences (:func:`zo_gradient`), counting every query.
"""
from __future__ import annotations

import contextlib
import math
import numbers
from typing import Callable, NamedTuple

import torch
import torch.nn.functional as F

from ._checks import call_student, check_images, tensor_answer
from ._checks import check_eps as _check_eps

__all__ = ["fgsm", "pgd", "random_noise", "zoo", "zo_gradient", "attack_loss",
           "NORMS", "LOSSES"]

NORMS = ("linf", "l2")
LOSSES = ("ce", "cw")


# --------------------------------------------------------------------------- argument checks

def _check_positive(name: str, value) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not value > 0 \
            or math.isinf(value):
        raise ValueError(f"{name} must be a finite number > 0, got {value!r}")
    return float(value)


def _check_count(name: str, value, minimum: int = 1) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < minimum:
        raise ValueError(f"{name} must be an integer ≥ {minimum}, got {value!r}")
    return int(value)


def _check_choice(name: str, value, choices) -> str:
    if value not in choices:
        raise ValueError(f"unknown {name} {value!r}: choose one of {', '.join(map(repr, choices))}")
    return value


def _check_inputs(x, y=None) -> None:
    check_images(x)
    if y is None:
        return
    if not isinstance(y, torch.Tensor):
        raise ValueError(f"y must be a torch.Tensor of class indices, got {type(y).__name__}")
    if y.dim() != 1 or y.shape[0] != x.shape[0]:
        raise ValueError(f"y must have shape [{x.shape[0]}] (one label per input), "
                         f"got {tuple(y.shape)}")
    if y.is_floating_point() or y.is_complex() or y.dtype == torch.bool:
        raise ValueError(f"y must hold integer class indices, got dtype {y.dtype}")
    if y.numel() and y.min() < 0:
        raise ValueError("labels must be class indices ≥ 0")


def _check_logits(logits, y) -> None:
    if not isinstance(logits, torch.Tensor) or logits.dim() != 2 or logits.shape[0] != y.shape[0]:
        shape = tuple(logits.shape) if isinstance(logits, torch.Tensor) else type(logits).__name__
        raise ValueError(f"the model must return logits of shape [N, classes], got {shape}")
    if y.numel() and y.max() >= logits.shape[1]:
        raise ValueError(f"label {int(y.max())} is out of range for a model with "
                         f"{logits.shape[1]} classes")


# --------------------------------------------------------------------------- helpers

@contextlib.contextmanager
def eval_mode(model):
    """Put ``model`` in eval mode inside the ``with`` block and restore the exact previous mode
    of every submodule afterwards (a model partly in train mode stays so)."""
    modules = list(model.modules()) if hasattr(model, "modules") else []
    saved = [(m, m.training) for m in modules]
    try:
        for m in modules:
            m.training = False
        yield model
    finally:
        for m, mode in saved:
            m.training = mode


@contextlib.contextmanager
def _grad_on():
    """Gradients on, even inside ``torch.no_grad()`` or ``torch.inference_mode()``."""
    with torch.inference_mode(False), torch.enable_grad():
        yield


def attack_loss(logits: torch.Tensor, y: torch.Tensor, loss: str = "ce") -> torch.Tensor:
    """Per-example loss of ``logits`` for labels ``y``: cross-entropy (``"ce"``) or the
    Carlini-Wagner margin ``max_{j≠y} z_j − z_y`` (``"cw"``, positive when ``y`` is not the top
    class). Shape ``[N]``."""
    if loss == "ce":
        return F.cross_entropy(logits, y, reduction="none")
    if loss == "cw":
        true = logits.gather(1, y[:, None]).squeeze(1)
        others = logits.masked_fill(F.one_hot(y, logits.shape[1]).bool(), float("-inf"))
        return others.max(dim=1).values - true
    raise ValueError(f"unknown loss {loss!r}: choose one of {', '.join(map(repr, LOSSES))}")


def _objective(logits, y, loss, targeted):
    """What the attacker maximises: the loss of ``y``, or minus the loss of the target."""
    value = attack_loss(logits, y, loss)
    return -value if targeted else value


def _fooled(logits, y, targeted):
    """Untargeted: the prediction is not ``y``. Targeted: the prediction is the target ``y``."""
    pred = logits.argmax(dim=1)
    return pred == y if targeted else pred != y


def _flat_norm(t: torch.Tensor) -> torch.Tensor:
    return t.reshape(t.shape[0], -1).norm(p=2, dim=1).view(-1, *([1] * (t.dim() - 1)))


def _rand(shape, like: torch.Tensor, generator, kind: str) -> torch.Tensor:
    """Uniform [0, 1) or standard normal numbers drawn on the generator's device, then moved."""
    dev = generator.device if generator is not None else like.device
    draw = torch.rand if kind == "uniform" else torch.randn
    return draw(shape, generator=generator, device=dev, dtype=like.dtype).to(like.device)


def _random_start(x: torch.Tensor, eps: float, norm: str, generator) -> torch.Tensor:
    """``delta`` uniform in the ε-ball: ℓ∞ uniform in ``[-eps, eps]`` per pixel; ℓ2 a uniform
    direction times ``eps · U^(1/d)`` (uniform in the ball of dimension ``d``)."""
    if norm == "linf":
        return (2 * _rand(x.shape, x, generator, "uniform") - 1) * eps
    direction = _rand(x.shape, x, generator, "normal")
    direction = direction / _flat_norm(direction).clamp_min(1e-12)
    d = x[0].numel()
    radius = _rand((x.shape[0],), x, generator, "uniform").pow(1.0 / d) * eps
    return direction * radius.view(-1, *([1] * (x.dim() - 1)))


def _project(x_adv, x, eps, norm):
    """Project ``x_adv`` onto the ε-ball around ``x``, then clamp to ``[0, 1]``."""
    delta = x_adv - x
    if norm == "linf":
        delta = torch.clamp(delta, min=-eps, max=eps)
    else:
        delta = delta * torch.clamp(eps / _flat_norm(delta).clamp_min(1e-12), max=1.0)
    return torch.clamp(x + delta, min=0, max=1)


def _step(grad, alpha, norm):
    if norm == "linf":
        return alpha * grad.sign()
    return alpha * grad / _flat_norm(grad).clamp_min(1e-12)


# --------------------------------------------------------------------------- white-box attacks

def fgsm(model, x, y, eps, *, loss: str = "ce", targeted: bool = False, clip: bool = True):
    r"""Fast gradient sign method (Goodfellow et al., 2015): one step of size ``eps`` along the
    sign of the input gradient, ``x + eps · sign(∇ₓ L(f(x), y))`` (minus for a targeted
    attack), clamped to ``[0, 1]`` unless ``clip=False`` (for teaching: shows the pixels that
    leave the valid range).
    """
    eps = _check_eps(eps)
    _check_choice("loss", loss, LOSSES)
    _check_inputs(x, y)
    if eps == 0 or x.shape[0] == 0:
        return x.detach().clone()
    with eval_mode(model), _grad_on():
        x0 = x.detach().clone().requires_grad_(True)  # cloned with inference mode off
        logits = model(x0)
        _check_logits(logits, y)
        objective = _objective(logits, y, loss, targeted)
        (grad,) = torch.autograd.grad(objective.sum(), x0)
    x_adv = x.detach() + eps * grad.sign()
    return torch.clamp(x_adv, 0, 1).detach() if clip else x_adv.detach()


class PGDResult(NamedTuple):
    """What :func:`_pgd` found. ``x_adv``: the returned examples; ``fooled``: per example, whether
    any iterate of any restart fooled the model; ``grad_evals``: per-example gradient
    computations (forward + backward) spent; ``forward_evals``: extra forward-only passes."""

    x_adv: torch.Tensor
    fooled: torch.Tensor
    grad_evals: int
    forward_evals: int


def _pgd(model, x, y, eps, alpha, steps, *, norm="linf", restarts=1, random_start=True,
         loss="ce", targeted=False, generator=None, early_stop=False,
         track=True) -> PGDResult:
    """PGD with its bookkeeping; :func:`pgd` documents the arguments.

    Per example, the iterates where the gradient is computed are checked for free (their logits
    are at hand), and so is the final iterate (one forward pass, skipped when ``track=False``
    with a single restart). ``fooled`` is therefore "some PGD iterate was
    misclassified", the same with and without ``early_stop``.
    """
    with torch.inference_mode(False):  # also works when called inside torch.inference_mode()
        return _pgd_body(model, x, y, eps, alpha, steps, norm, restarts, random_start, loss,
                         targeted, generator, early_stop, track)


def _pgd_body(model, x, y, eps, alpha, steps, norm, restarts, random_start, loss, targeted,
              generator, early_stop, track) -> PGDResult:
    eps = _check_eps(eps)
    alpha = _check_positive("alpha", alpha)
    steps = _check_count("steps", steps)
    restarts = _check_count("restarts", restarts)
    _check_choice("norm", norm, NORMS)
    _check_choice("loss", loss, LOSSES)
    _check_inputs(x, y)
    if restarts > 1 and not random_start:
        raise ValueError("restarts > 1 needs random_start=True (without a random start every "
                         "restart would repeat the same run)")
    n = x.shape[0]
    x = x.detach().clone()  # a normal tensor even when x was made in inference mode
    y = y.detach().to(x.device).clone()
    fooled = torch.zeros(n, dtype=torch.bool, device=x.device)
    if eps == 0 or n == 0:
        if n and track:
            with eval_mode(model), torch.no_grad():
                logits = model(x)
                _check_logits(logits, y)
                fooled = _fooled(logits, y, targeted)
            return PGDResult(x.clone(), fooled, 0, n)
        return PGDResult(x.clone(), fooled, 0, 0)

    best = x.clone()
    best_obj = torch.full((n,), float("-inf"), dtype=x.dtype, device=x.device)
    best_fooled = torch.zeros(n, dtype=torch.bool, device=x.device)  # at the returned point
    grad_evals = forward_evals = 0
    need_final = track or restarts > 1  # one restart: the last iterate is returned as it is
    with eval_mode(model):
        for _ in range(restarts):
            # Noise for every example on every restart, so the generator's stream (and each
            # example's start) does not depend on which examples early stopping removed.
            noise = _random_start(x, eps, norm, generator) if random_start else None
            ids = (~fooled).nonzero().squeeze(1) if early_stop else torch.arange(n, device=x.device)
            if ids.numel() == 0:
                continue
            x0, yy = x[ids], y[ids]
            xa = torch.clamp(x0 + noise[ids], 0, 1) if random_start else x0.clone()
            for _ in range(steps):
                with _grad_on():
                    xa.requires_grad_(True)
                    logits = model(xa)
                    _check_logits(logits, yy)
                    objective = _objective(logits, yy, loss, targeted)
                    (grad,) = torch.autograd.grad(objective.sum(), xa)
                grad_evals += xa.shape[0]
                xa = xa.detach()
                now = _fooled(logits.detach(), yy, targeted)
                if early_stop and now.any():
                    # Keep the first iterate that fooled the model; stop updating it.
                    hit = ids[now]
                    best[hit], best_obj[hit], best_fooled[hit] = xa[now], objective.detach()[now], True
                    fooled[hit] = True
                    keep = ~now
                    ids, x0, yy, xa, grad = ids[keep], x0[keep], yy[keep], xa[keep], grad[keep]
                    if ids.numel() == 0:
                        break
                else:
                    fooled[ids] |= now
                xa = _project(xa + _step(grad, alpha, norm), x0, eps, norm)
            if ids.numel() == 0:
                continue
            if not need_final:
                best[ids] = xa
                continue
            with torch.no_grad():
                logits = model(xa)
                _check_logits(logits, yy)
                objective = _objective(logits, yy, loss, targeted)
                now = _fooled(logits, yy, targeted)
            forward_evals += xa.shape[0]
            fooled[ids] |= now
            # Worst case over restarts: a fooling point first, then the highest loss.
            better = (now & ~best_fooled[ids]) | ((now == best_fooled[ids]) & (objective > best_obj[ids]))
            upd = ids[better]
            best[upd], best_obj[upd], best_fooled[upd] = xa[better], objective[better], now[better]
    return PGDResult(best.detach(), fooled, grad_evals, forward_evals)


def pgd(model, x, y, eps, alpha, steps, *, norm: str = "linf", restarts: int = 1,
        random_start: bool = True, loss: str = "ce", targeted: bool = False,
        generator: torch.Generator | None = None, early_stop: bool = False):
    r"""Projected gradient descent (Madry et al., 2018) in the ℓ∞ or ℓ2 ball of radius ``eps``.

    Each of the ``steps`` iterations moves ``alpha`` along the sign of the gradient (ℓ∞) or
    along the gradient normalised per example (ℓ2), projects back onto the ε-ball around ``x``
    and clamps to ``[0, 1]``. With ``random_start`` the run starts at a uniformly random point of
    the ball (ℓ∞: uniform in ``[-eps, eps]`` per pixel; ℓ2: uniform in the ball), drawn from
    ``generator`` when given. ``restarts`` runs PGD several times from new random starts and
    keeps, per example, the worst case: a misclassified result first, else the highest loss.

    ``early_stop=True`` stops updating an example as soon as an iterate is misclassified
    (targeted: classified as the target) and returns that iterate; later restarts only run on
    examples not fooled yet. An example that was fooled once cannot count as robust again, so
    for *evaluation* this only saves work (see :func:`advlib.evaluation.robust_accuracy`). Without
    it every example runs all steps and the last iterate is returned, as in Madry et al.'s
    adversarial training and in torchattacks, ART and foolbox.

    Returns the adversarial examples ``x + delta`` (detached).
    """
    return _pgd(model, x, y, eps, alpha, steps, norm=norm, restarts=restarts,
                random_start=random_start, loss=loss, targeted=targeted, generator=generator,
                early_stop=early_stop, track=False).x_adv


def random_noise(x, eps, *, norm: str = "linf", generator: torch.Generator | None = None):
    r"""The baseline every attack is compared with: a random perturbation of the same size.

    ℓ∞: every pixel moves by ``±eps`` with a random sign. ℓ2: a uniformly random direction
    scaled to length ``eps``. The result is clamped to ``[0, 1]``.
    """
    eps = _check_eps(eps)
    _check_choice("norm", norm, NORMS)
    _check_inputs(x)
    x = x.detach()
    if eps == 0 or x.shape[0] == 0:
        return x.clone()
    if norm == "linf":
        delta = eps * torch.where(_rand(x.shape, x, generator, "uniform") < 0.5, -1.0, 1.0).to(x.dtype)
    else:
        direction = _rand(x.shape, x, generator, "normal")
        delta = eps * direction / _flat_norm(direction).clamp_min(1e-12)
    return torch.clamp(x + delta, 0, 1)


# --------------------------------------------------------------------------- black box

def zo_gradient(loss_of_x: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor, *,
                h: float = 1e-4, coords=None, generator: torch.Generator | None = None,
                max_rows: int = 8192) -> torch.Tensor:
    r"""Zeroth-order gradient estimate by coordinate-wise symmetric finite differences (ZOO,
    Chen et al. 2017): ``ĝ_i = (L(x + h e_i) − L(x − h e_i)) / 2h``.

    ``loss_of_x`` sees only inputs and returns losses: it is called with batches whose length is
    a multiple of ``len(x)``, made of copies of ``x`` stacked block after block (row ``r``
    belongs to example ``r % len(x)``), and must return one loss per row, e.g.
    ``lambda z: F.cross_entropy(model(z), y.repeat(len(z) // len(y)), reduction="none")``.

    ``coords``: ``None`` estimates every coordinate (``2·d`` queries per example); an integer
    ``k`` picks ``k`` coordinates per example at random (from ``generator``); a LongTensor
    ``[len(x), k]`` names them. Other coordinates of the estimate are 0. Uses ``2·k`` queries
    per example, counted in batches of at most ``max_rows`` rows.
    """
    h = _check_positive("h", h)
    if not isinstance(x, torch.Tensor) or x.dim() < 2 or not x.is_floating_point():
        raise ValueError("x must be a floating-point batch [N, ...]")
    n, d = x.shape[0], x[0].numel()
    idx = _coordinates(coords, n, d, x, generator)
    k = idx.shape[1]
    flat = x.detach().reshape(n, d)
    grad = torch.zeros_like(flat)
    per_call = max(1, max_rows // (2 * n))
    with torch.no_grad():
        for start in range(0, k, per_call):
            cols = idx[:, start:start + per_call]  # [n, m]
            m = cols.shape[1]
            rows = flat.unsqueeze(0).repeat(2 * m, 1, 1)  # [2m, n, d]: +h block then −h block
            bump = torch.zeros(m, n, d, dtype=x.dtype, device=x.device)
            bump.scatter_(2, cols.t().unsqueeze(2), h)
            rows[:m] += bump
            rows[m:] -= bump
            losses = loss_of_x(rows.reshape(2 * m * n, *x.shape[1:]))
            losses = losses.reshape(2, m, n).to(x.dtype)
            estimate = (losses[0] - losses[1]) / (2 * h)  # [m, n]
            grad.scatter_(1, cols, estimate.t())
    return grad.reshape(x.shape)


def _coordinates(coords, n, d, x, generator):
    if coords is None:
        return torch.arange(d, device=x.device).expand(n, d)
    if isinstance(coords, torch.Tensor):
        if coords.dim() != 2 or coords.shape[0] != n or coords.is_floating_point():
            raise ValueError(f"coords must be a LongTensor [{n}, k] of coordinate indices")
        if coords.numel() and (coords.min() < 0 or coords.max() >= d):
            raise ValueError(f"coordinate indices must lie in [0, {d})")
        return coords.to(x.device, torch.long)
    k = _check_count("coords", coords)
    if k > d:
        raise ValueError(f"coords={k} is more than the {d} coordinates of an input")
    scores = _rand((n, d), x, generator, "uniform")
    return scores.argsort(dim=1)[:, :k]


def zoo(model, x, y, eps, *, norm: str = "linf", queries: int = 20_000, h: float = 1e-4,
        coords_per_step: int = 128, alpha: float | None = None, loss: str = "cw",
        targeted: bool = False, generator: torch.Generator | None = None,
        early_stop: bool = True, return_queries: bool = False):
    r"""Zeroth-order black-box attack in the spirit of ZOO (Chen et al., AISec 2017): it uses
    only the model's outputs (logits or scores), never its gradients.

    Each iteration queries the current point once and ``x ± h·e_i`` for ``coords_per_step``
    random coordinates ``i`` (``2·coords_per_step + 1`` queries, 257 for the default 128, as in
    ZOO), estimates those coordinates of the gradient of ``loss`` (:func:`zo_gradient`) and takes a
    step of size ``alpha`` (default ``eps / 4``) on them: along the sign (ℓ∞) or the normalised
    estimate (ℓ2), then projects onto the ε-ball and clamps to ``[0, 1]``. The per-example budget
    ``queries`` is enforced: the last iteration uses fewer coordinates when fewer queries are
    left, and an example stops when not even one coordinate fits. With ``early_stop`` (default)
    an example stops as soon as the queried current point fools the model.

    Returns the adversarial examples, or ``(x_adv, queries_used)`` with ``return_queries=True``
    (``queries_used``: a LongTensor, model evaluations spent on each example).
    """
    eps = _check_eps(eps)
    _check_choice("norm", norm, NORMS)
    _check_choice("loss", loss, LOSSES)
    budget = _check_count("queries", queries)
    coords_per_step = _check_count("coords_per_step", coords_per_step)
    h = _check_positive("h", h)
    alpha = eps / 4 if alpha is None else _check_positive("alpha", alpha)
    _check_inputs(x, y)
    n, d = x.shape[0], x[0].numel()
    x = x.detach()
    y = y.detach().to(x.device)
    used = torch.zeros(n, dtype=torch.long, device=x.device)
    if eps == 0 or n == 0:
        return (x.clone(), used) if return_queries else x.clone()
    x_adv = x.clone()
    active = torch.arange(n, device=x.device)
    with eval_mode(model), torch.no_grad():
        while active.numel():
            left = budget - used[active[0]].item()  # every active example has spent the same
            k = min(coords_per_step, d, (left - 1) // 2)
            if k < 1:
                break
            xa, ya = x_adv[active], y[active]
            logits = model(xa)
            _check_logits(logits, ya)
            used[active] += 1
            if early_stop:
                keep = ~_fooled(logits, ya, targeted)
                active, xa, ya = active[keep], xa[keep], ya[keep]
                if active.numel() == 0:
                    break

            def loss_of_x(z, ya=ya):
                return _objective(model(z), ya.repeat(z.shape[0] // ya.shape[0]), loss, targeted)

            grad = zo_gradient(loss_of_x, xa, h=h, coords=k, generator=generator)
            used[active] += 2 * k
            x_adv[active] = _project(xa + _step(grad, alpha, norm), x[active], eps, norm)
    x_adv = x_adv.detach()
    return (x_adv, used) if return_queries else x_adv


# --------------------------------------------------------------------------- exercise checks

_answer, _tensor_answer = call_student, tensor_answer


def _toy_classifier(seed: int = 0, dropout: float = 0.0):
    """A small, seeded classifier of 8×8 images (10 classes); the global RNG is left alone."""
    from torch import nn

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        layers = [nn.Flatten(), nn.Linear(64, 32), nn.ReLU()]
        layers += [nn.Dropout(dropout)] if dropout else []
        layers += [nn.Linear(32, 10)]
        model = nn.Sequential(*layers)
    with torch.no_grad():  # logits of a trained model's size, not of a fresh initialisation
        model[-1].weight.mul_(10)
        model[-1].bias.mul_(10)
    return model.eval()


def _toy_images(seed: int = 0, n: int = 64):
    """Images in [0, 1] with many pixels exactly 0 or 1 (so the box matters), and labels."""
    g = torch.Generator().manual_seed(seed)
    x = torch.rand((n, 1, 8, 8), generator=g)
    x = torch.where(x < 0.25, 0.0, torch.where(x > 0.85, 1.0, x))
    y = torch.randint(0, 10, (n,), generator=g)
    return x, y


def check_fgsm(my_fgsm: Callable) -> bool:
    """Exercise 3.1: ``my_fgsm(model, x, y, eps)`` returns the untargeted cross-entropy FGSM
    examples, ``clip(x + eps · sign(∇ₓ L), 0, 1)``, compared with :func:`fgsm`."""
    from .exercises import check

    def assertions():
        for seed in range(2):
            model = _toy_classifier(seed)
            x, y = _toy_images(seed)
            for eps in (0.0, 0.05, 0.2):
                got = _tensor_answer(_answer(my_fgsm, model, x.clone(), y.clone(), eps),
                                     "my_fgsm", x.shape)
                assert got.min() >= -1e-6 and got.max() <= 1 + 1e-6, \
                    "x_adv leaves [0, 1]: clamp the adversarial image to the valid pixel range"
                assert (got - x).abs().max() <= eps + 1e-6, f"‖x_adv − x‖∞ exceeds eps = {eps}"
                want = fgsm(model, x, y, eps)
                if torch.allclose(got, want, atol=1e-6):
                    continue
                downhill = fgsm(model, x, y, eps, targeted=True)
                assert not torch.allclose(got, downhill, atol=1e-6), (
                    "you stepped *down* the loss: an untargeted attack adds eps · sign(grad) to "
                    "increase the loss of the true label")
                raise AssertionError(
                    f"at eps = {eps} your images differ from FGSM's by up to "
                    f"{(got - want).abs().max().item():.3g}: move every pixel by eps along the "
                    "sign of the input gradient of the cross-entropy, then clamp to [0, 1]")

    return check("3.1", assertions)


def check_pgd_l2_step(my_step: Callable) -> bool:
    """Exercise 3.2: ``my_step(x_adv, x, grad, alpha, eps)`` returns the next ℓ2 PGD iterate:
    ``x_adv + alpha · grad / ‖grad‖₂`` (per example), projected onto the ℓ2 ball of radius ``eps``
    around ``x`` and clamped to ``[0, 1]``."""
    from .exercises import check

    def assertions():
        g = torch.Generator().manual_seed(3)
        x, _ = _toy_images(3, n=32)
        delta = torch.randn(x.shape, generator=g)
        delta = delta / _flat_norm(delta) * torch.rand((len(x), 1, 1, 1), generator=g) * 1.2
        x_adv = torch.clamp(x + delta, 0, 1)
        grad = torch.randn(x.shape, generator=g) * torch.logspace(-3, 3, len(x)).view(-1, 1, 1, 1)
        grad[0] = 0.0  # a vanished gradient (saturated softmax) must not give NaN
        for alpha, eps in ((0.25, 1.0), (2.0, 1.0), (0.5, 3.0)):
            got = _tensor_answer(
                _answer(my_step, x_adv.clone(), x.clone(), grad.clone(), alpha, eps),
                "my_step", x.shape,
                "A zero gradient has norm 0: divide by max(norm, 1e-12) so that it gives a "
                "zero step.")
            assert got.min() >= -1e-6 and got.max() <= 1 + 1e-6, \
                "the iterate leaves [0, 1]: clamp it to the valid pixel range"
            norms = _flat_norm(got - x).flatten()
            assert (norms <= eps + 1e-5).all(), (
                f"‖x_new − x‖₂ reaches {norms.max().item():.3g} > eps = {eps}: project onto the "
                "ball, scaling delta by eps / ‖delta‖₂ when it is longer than eps")
            stepped = x_adv + _step(grad, alpha, "l2")
            project_then_clamp = _project(stepped, x, eps, "l2")
            clamp_then_project = _project(torch.clamp(stepped, 0, 1), x, eps, "l2")
            if torch.allclose(got, project_then_clamp, atol=1e-5) or \
                    torch.allclose(got, clamp_then_project, atol=1e-5):
                continue
            batch_norm = x_adv + alpha * grad / grad.norm()
            assert not torch.allclose(got, _project(batch_norm, x, eps, "l2"), atol=1e-5), (
                "you normalised by the norm of the whole batch: each example's gradient is "
                "divided by its own ℓ2 norm")
            assert not torch.allclose(got, torch.clamp(stepped, 0, 1), atol=1e-5), \
                "you forgot the projection onto the ε-ball"
            raise AssertionError(
                f"with alpha = {alpha}, eps = {eps} your iterate differs from the ℓ2 PGD step by "
                f"up to {(got - project_then_clamp).abs().max().item():.3g}: step alpha along "
                "grad / ‖grad‖₂ (per example), project delta onto the ball, clamp to [0, 1]")

    return check("3.2", assertions)


def check_cw_loss(my_cw: Callable) -> bool:
    """Exercise 3.3: ``my_cw(logits, y)`` returns the Carlini-Wagner margin per example,
    ``max_{j≠y} z_j − z_y`` (compared with :func:`attack_loss` with ``loss="cw"``)."""
    from .exercises import check

    def assertions():
        g = torch.Generator().manual_seed(4)
        logits = torch.randn((50, 10), generator=g) * 3 - 6  # mostly negative logits
        y = torch.randint(0, 10, (50,), generator=g)
        logits[:25].scatter_(1, y[:25, None], 5.0)  # half the rows: the true class on top
        logits[40:45] = 1.0  # ties
        got = _tensor_answer(_answer(my_cw, logits.clone(), y.clone()), "my_cw", (50,))
        want = attack_loss(logits, y, "cw")
        if torch.allclose(got, want, atol=1e-5):
            return
        assert not torch.allclose(got, -want, atol=1e-5), \
            "the sign is flipped: the margin is positive exactly when the model is fooled"
        assert not torch.allclose(got, logits.max(dim=1).values - logits.gather(1, y[:, None])
                                  .squeeze(1), atol=1e-5), (
            "the max runs over all classes, so the margin is 0 whenever the model is right: "
            "leave the true class out of the max")
        raise AssertionError(
            "not the CW margin: mask the true class with -inf (not 0: logits can be negative), "
            "take the max over the other classes and subtract the true class's logit")

    return check("3.3", assertions)


def check_zo_gradient(my_zo: Callable) -> bool:
    """Exercise 3.4: ``my_zo(loss_of_x, x, coords, h)`` estimates the gradient on the coordinates
    ``coords`` (a LongTensor ``[N, k]``, one row per example) by symmetric finite differences,
    ``(L(x + h e_i) − L(x − h e_i)) / 2h``, other coordinates 0, with 2 queries per coordinate."""
    from .exercises import check

    def assertions():
        g = torch.Generator().manual_seed(5)
        n, k, h = 6, 5, 1e-2
        x = torch.rand((n, 1, 4, 4), generator=g, dtype=torch.float64)
        w = torch.randn((1, 4, 4), generator=g, dtype=torch.float64)
        coords = torch.stack([torch.randperm(16, generator=g)[:k] for _ in range(n)])
        queries = [0]

        def loss_of_x(z):
            assert isinstance(z, torch.Tensor) and z.dim() == 4 and len(z) % n == 0, \
                f"loss_of_x takes a batch shaped like x, {tuple(x.shape)}"
            queries[0] += len(z) // n
            return (torch.sin(3 * z) * w + z ** 3).flatten(1).sum(dim=1)

        got = _tensor_answer(_answer(my_zo, loss_of_x, x.clone(), coords.clone(), h),
                             "my_zo", x.shape).to(torch.float64)
        used = queries[0]
        queries[0] = 0
        want = zo_gradient(loss_of_x, x, h=h, coords=coords)
        flat = got.reshape(n, -1)
        untouched = torch.ones_like(flat, dtype=torch.bool).scatter_(1, coords, False)
        assert (flat[untouched] == 0).all(), \
            "coordinates that were not queried must be 0 in the estimate"
        if not torch.allclose(got, want, atol=1e-8):
            raise AssertionError(
                "not the symmetric difference (L(x + h e_i) − L(x − h e_i)) / 2h on each "
                "example's own coordinates (row i of coords belongs to example i); a one-sided "
                "difference is less accurate")
        assert used <= 2 * k, (
            f"you used {used} queries per example; the estimate needs 2 per coordinate, "
            f"{2 * k} in all")

    return check("3.4", assertions)


def check_attack_anyway(my_attack: Callable) -> bool:
    """Exercise 3.5: ``my_attack(model, x, y, eps)`` returns ℓ∞ adversarial examples that break a
    model whose logits are scaled by 10⁴ and which was handed over in train mode with dropout.
    Passes when the accuracy left on the examples (measured on the plain model, in eval mode) is
    within 8 points of an honest attack's (CW-margin PGD-20 on the plain model, eval mode)."""
    from .exercises import check
    from .models import ScaledLogits

    def assertions():
        eps = 0.05
        plain = _toy_classifier(7, dropout=0.5)
        x, _ = _toy_images(7, n=200)
        with torch.no_grad():
            y = plain(x).argmax(dim=1)  # the plain model is right on every clean image
        handed = ScaledLogits(plain.train())
        handed.train()
        got = _tensor_answer(_answer(my_attack, handed, x.clone(), y.clone(), eps),
                             "my_attack", x.shape)
        assert got.min() >= -1e-6 and got.max() <= 1 + 1e-6, "the examples leave [0, 1]: clamp them"
        assert (got - x).abs().max() <= eps + 1e-6, f"‖x_adv − x‖∞ exceeds eps = {eps}"
        plain.eval()
        with torch.no_grad():
            left = (plain(got).argmax(dim=1) == y).float().mean().item()
        honest = pgd(plain, x, y, eps, eps / 8, 20, loss="cw", random_start=False)
        with torch.no_grad():
            reference = (plain(honest).argmax(dim=1) == y).float().mean().item()
        assert left <= reference + 0.08, (
            f"{left:.0%} of the images are still classified correctly after your attack; an "
            f"honest attack leaves {reference:.0%}. The cross-entropy of logits × 10⁴ has an "
            "input gradient of exactly 0 on confident examples (try the CW margin, whose sign "
            "steps do not care about the scale), and dropout in train mode makes every "
            "gradient noisy (attack in eval mode)")

    return check("3.5", assertions)
