"""Robustness of a factorisation model to perturbations of its embeddings.

Defined in chapter 5.

The "input" of a recommender is an ID; what can be perturbed is the vector the model looks up
for it. The threat model of the chapter: every user row and every item row of the embedding
tables may move by a vector of Euclidean length ``eps`` (per row). Two perturbations of exactly
that size are compared:

* **worst case** (:func:`worst_case_perturbation`): each row moves along the gradient of a BPR
  loss (one FGSM-like step per row, so a lower bound on the true worst case). With
  ``attack="test"`` (the default) the loss is that of the held-out test interactions against
  sampled negatives: the attacker knows what the users will choose, as an image attack knows
  the true label. With ``attack="train"`` it is the training loss, the direction APR trains
  against; at a converged model that gradient mostly shrinks the embeddings (the weight decay
  balances it), which barely changes any ranking, so it is a weak attack;
* **random** (:func:`random_perturbation`): each row moves in a uniformly random direction.

``eps`` is absolute, or relative to the model's mean row norm (``relative=True``: users move by
``eps · mean‖P_u‖`` and items by ``eps · mean‖Q_i‖``), because APR grows its embeddings and
a fixed absolute ``eps`` is then a smaller relative change. :func:`robustness_curve` measures
test NDCG@10 along an ``eps`` grid for both.
"""
from __future__ import annotations

import math

import torch

from ._threads import cpu_threads
from .data import Interactions, Split
from .metrics import evaluate, ranking_task
from .models import MF, bpr_loss
from .sampling import PairSet, sample_negatives
from .training import apr_delta

__all__ = ["loss_gradient", "attack_gradient", "worst_case_perturbation", "random_perturbation",
           "row_eps", "robustness_curve"]


def _eps(eps) -> float:
    if isinstance(eps, bool) or not isinstance(eps, (int, float)) or not math.isfinite(eps) or eps < 0:
        raise ValueError(f"eps must be a finite number >= 0, got {eps!r}")
    return float(eps)


def loss_gradient(model: MF, pairs: Interactions, known: Interactions, n_negatives: int = 10,
                  seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Gradient of the mean BPR loss of ``pairs`` with respect to the user and the item table,
    with ``n_negatives`` negatives per pair drawn (with ``seed``) uniformly from the items the
    user has no pair with in ``known``."""
    if isinstance(n_negatives, bool) or not isinstance(n_negatives, int) or n_negatives < 1:
        raise ValueError(f"n_negatives must be a positive integer, got {n_negatives!r}")
    if len(pairs) == 0:
        raise ValueError("no pairs: the loss of an empty set has no gradient")
    device = model.user.device
    pairs, known = pairs.to(device), known.to(device)
    pairs.check(model.n_users, model.n_items, "pairs")
    positives = PairSet(known, model.n_users, model.n_items)
    user, pos = pairs.user.repeat(n_negatives), pairs.item.repeat(n_negatives)
    neg = sample_negatives(user, positives, torch.Generator().manual_seed(seed))
    P = model.user.detach().requires_grad_(True)
    Q = model.item.detach().requires_grad_(True)
    with cpu_threads(1, device):
        return torch.autograd.grad(bpr_loss(P, Q, user, pos, neg), (P, Q))


def attack_gradient(model: MF, split: Split, attack: str = "test", n_negatives: int = 10,
                    seed: int = 0, train: Interactions | None = None):
    """The gradient the worst case follows: ``attack="test"``, the BPR loss of ``split.test``
    (negatives: items outside all three parts); ``"train"``, the training loss (negatives:
    items outside the training set). ``train`` replaces ``split.train`` (e.g. with fake users)."""
    train = split.train if train is None else train
    if attack == "test":
        known = Interactions.concat(train, split.valid.to(train.device), split.test.to(train.device))
        return loss_gradient(model, split.test, known, n_negatives, seed)
    if attack == "train":
        return loss_gradient(model, train, train, n_negatives, seed)
    raise ValueError(f"attack must be 'test' or 'train', got {attack!r}")


def row_eps(model: MF, eps: float, relative: bool = False) -> tuple[float, float]:
    """The per-row size for users and for items: ``eps``, or ``eps`` times the mean row norm of
    each table when ``relative``."""
    eps = _eps(eps)
    if not relative:
        return eps, eps
    user_norm, item_norm = model.norms()
    return eps * user_norm, eps * item_norm


def worst_case_perturbation(model: MF, eps: float, grads, relative: bool = False):
    """``(ΔP, ΔQ)``: every row moved by its size (:func:`row_eps`) along its gradient in
    ``grads`` (from :func:`attack_gradient` or :func:`loss_gradient`)."""
    eps_u, eps_i = row_eps(model, eps, relative)
    grad_p, grad_q = grads
    if grad_p.shape != model.user.shape or grad_q.shape != model.item.shape:
        raise ValueError("grads must have the shapes of the embedding tables")
    return apr_delta(grad_p, eps_u), apr_delta(grad_q, eps_i)


def _random_rows(shape, size: float, generator: torch.Generator, device) -> torch.Tensor:
    direction = torch.randn(shape, generator=generator)
    direction = direction / direction.norm(dim=1, keepdim=True).clamp(min=1e-30)
    return (size * direction).to(device)


def random_perturbation(model: MF, eps: float, relative: bool = False,
                        generator: torch.Generator | None = None):
    """``(ΔP, ΔQ)``: every row moved by its size (:func:`row_eps`) in a uniformly random
    direction (a normalised Gaussian vector)."""
    eps_u, eps_i = row_eps(model, eps, relative)
    generator = generator if generator is not None else torch.Generator().manual_seed(0)
    device = model.user.device
    return (_random_rows(model.user.shape, eps_u, generator, device),
            _random_rows(model.item.shape, eps_i, generator, device))


def robustness_curve(model: MF, split: Split, eps_grid, *, relative: bool = False,
                     attack: str = "test", draws: int = 3, n_negatives: int = 10, seed: int = 0,
                     k: int = 10, train: Interactions | None = None,
                     threads: int | None = 1) -> dict:
    """Test NDCG@k of ``model`` along ``eps_grid`` under the worst-case and under random
    perturbations (mean of ``draws`` random draws), and their relative drops
    ``1 − NDCG(eps) / NDCG(0)``. Returns lists keyed ``eps``, ``worst``, ``random``,
    ``worst_drop``, ``random_drop``, and the ``clean`` NDCG."""
    grid = [_eps(e) for e in eps_grid]
    if not grid:
        raise ValueError("eps_grid is empty")
    if isinstance(draws, bool) or not isinstance(draws, int) or draws < 1:
        raise ValueError(f"draws must be a positive integer, got {draws!r}")
    with cpu_threads(threads, model.user.device):
        return _curve(model, split, grid, relative, attack, draws, n_negatives, seed, k, train)


def _curve(model, split, grid, relative, attack, draws, n_negatives, seed, k, train) -> dict:
    task = ranking_task(split, "test", train=train).to(model.user.device)
    clean = evaluate(model, task, k)["ndcg"]
    grads = attack_gradient(model, split, attack, n_negatives, seed, train)
    generator = torch.Generator().manual_seed(seed + 1)
    worst, rand = [], []
    for eps in grid:
        if eps == 0:
            worst.append(clean)
            rand.append(clean)
            continue
        dp, dq = worst_case_perturbation(model, eps, grads, relative)
        worst.append(evaluate(model.perturbed(dp, dq), task, k)["ndcg"])
        values = []
        for _ in range(draws):
            dp, dq = random_perturbation(model, eps, relative, generator)
            values.append(evaluate(model.perturbed(dp, dq), task, k)["ndcg"])
        rand.append(sum(values) / draws)
    return {"eps": grid, "clean": clean, "worst": worst, "random": rand,
            "worst_drop": [1 - v / clean for v in worst],
            "random_drop": [1 - v / clean for v in rand]}
