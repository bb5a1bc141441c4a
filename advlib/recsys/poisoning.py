r"""Poisoning a recommender with fake users (shilling), measuring it, and detecting it.

Defined in chapter 6.

The attacker registers ``n_fake`` accounts and gives each a *profile*: a set of implicit
interactions. Every fake profile contains all the ``targets`` (the items to push) plus
``filler_size`` *filler* items that make it look like a real user. The fake users are appended
after the real ones (ids ``n_users, n_users + 1, ...``); the real data are never modified.
:func:`inject` returns the poisoned training set, which trains like any other
(:func:`advlib.recsys.train_bpr` with ``n_users + n_fake`` users).

The filler, after the heuristic attacks of Lam & Riedl (2004) and Mobasher et al. (2007),
translated to implicit feedback:

* ``"random"``: filler items drawn uniformly (the attacker knows only the catalogue);
* ``"average"``: filler items drawn with probability proportional to their training popularity
  (in implicit feedback an item's *mean* over all users is its interaction rate, so this is the
  implicit analogue of rating fillers at their item means: the profiles look statistically
  average);
* ``"bandwagon"``: half of the filler is the most popular items (the same for every fake user),
  the other half drawn uniformly;
* ``"gradient"``: white-box, a simplified attack in the spirit of Li et al. (NeurIPS 2016), see
  :func:`gradient_attack`.

Metrics of the targets (:func:`target_metrics`): for each target and each real user who has not
interacted with it in training, its *rank* among the items the user has not interacted with
(1 = the top), HR@k (rank ≤ k), the mean rank and the *prediction shift* (mean score change).

Detection (:func:`profile_features`, :func:`detect`, :func:`precision_recall`): per-profile
features and a robust z-score threshold, scored against the known fake ids.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

import torch

from .._checks import call_student as _call
from ..exercises import check
from .data import Interactions, item_popularity
from .models import MF

__all__ = ["ATTACKS", "Poisoned", "n_fake_users", "choose_targets", "filler_size_of",
           "random_attack", "average_attack", "bandwagon_attack", "gradient_attack", "inject",
           "target_ranks", "target_metrics", "profile_features", "detect", "precision_recall",
           "remove_users", "check_random_attack", "check_target_rank", "check_mean_popularity",
           "check_hit_rate"]

ATTACKS = ("random", "average", "bandwagon", "gradient")


# --------------------------------------------------------------------------- input checks
def _positive_int(value, name: str, zero: bool = False) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < (0 if zero else 1):
        raise ValueError(f"{name} must be a {'non-negative' if zero else 'positive'} integer, "
                         f"got {value!r}")
    return value


def _targets(targets, n_items: int) -> torch.Tensor:
    t = torch.as_tensor(targets)
    if t.dim() != 1 or t.numel() == 0 or t.is_floating_point() or t.dtype == torch.bool:
        raise ValueError("targets must be a non-empty 1-D list of integer item indices")
    t = t.to(torch.int64).cpu()
    if int(t.min()) < 0 or int(t.max()) >= n_items:
        raise ValueError(f"target items must lie in [0, {n_items}), got {t.tolist()}")
    if len(torch.unique(t)) != len(t):
        raise ValueError(f"target items must be distinct, got {t.tolist()}")
    return t


def n_fake_users(fraction: float, n_users: int) -> int:
    """The number of fake profiles for ``fraction`` of ``n_users`` real users (rounded)."""
    if isinstance(fraction, bool) or not isinstance(fraction, (int, float)) or \
            not math.isfinite(fraction) or fraction < 0:
        raise ValueError(f"fraction must be a finite number >= 0, got {fraction!r}")
    _positive_int(n_users, "n_users")
    return int(round(fraction * n_users))


def filler_size_of(train: Interactions, n_users: int) -> int:
    """The median number of training interactions of a real user: a filler size that makes a
    fake profile as large as a typical real one."""
    counts = torch.bincount(train.user.cpu(), minlength=n_users)[:n_users]
    return int(counts.float().median().item())


def choose_targets(train: Interactions, n_items: int, n_cold: int = 5, n_mid: int = 5,
                   seed: int = 0) -> dict:
    """Target items drawn reproducibly from the training popularity: ``n_cold`` among the items
    with 1 to 5 training interactions (cold, but not unseen) and ``n_mid`` among the items between
    the 40th and 60th percentile of popularity over the items with any interaction.

    Returns ``{"cold": [...], "mid": [...], "all": [...]}`` (item indices)."""
    _positive_int(n_cold, "n_cold", zero=True)
    _positive_int(n_mid, "n_mid", zero=True)
    pop = item_popularity(train.to("cpu"), n_items)
    seen = pop[pop > 0]
    low, high = torch.quantile(seen, 0.4).item(), torch.quantile(seen, 0.6).item()
    groups = {"cold": torch.nonzero((pop >= 1) & (pop <= 5)).flatten(),
              "mid": torch.nonzero((pop >= low) & (pop <= high)).flatten()}
    g = torch.Generator().manual_seed(seed)
    out = {}
    for name, n in (("cold", n_cold), ("mid", n_mid)):
        pool = groups[name]
        if len(pool) < n:
            raise ValueError(f"only {len(pool)} {name} items to choose {n} targets from")
        out[name] = sorted(pool[torch.randperm(len(pool), generator=g)[:n]].tolist())
    out["all"] = out["cold"] + out["mid"]
    return out


# --------------------------------------------------------------------------- attacks
def _profiles(filler: torch.Tensor, targets: torch.Tensor, n_users: int) -> Interactions:
    """Fake users ``n_users ..``: each row of ``filler`` plus all the targets."""
    n_fake = filler.shape[0]
    items = torch.cat([filler, targets.view(1, -1).expand(n_fake, -1)], dim=1)
    users = torch.arange(n_users, n_users + n_fake).view(-1, 1).expand_as(items)
    return Interactions(users.reshape(-1).clone(), items.reshape(-1).clone())


def _draw(weights: torch.Tensor, n_fake: int, k: int, generator) -> torch.Tensor:
    """``n_fake`` rows of ``k`` distinct items drawn with probability ∝ ``weights`` (no
    replacement within a row)."""
    if k == 0:
        return torch.empty(n_fake, 0, dtype=torch.int64)
    if int((weights > 0).sum()) < k:
        raise ValueError(f"filler_size {k} is larger than the number of items to draw from")
    return torch.multinomial(weights.expand(n_fake, -1), k, replacement=False,
                             generator=generator)


def _setup(n_fake, n_users, n_items, targets, filler_size):
    _positive_int(n_fake, "n_fake", zero=True)
    _positive_int(n_users, "n_users")
    _positive_int(n_items, "n_items")
    targets = _targets(targets, n_items)
    _positive_int(filler_size, "filler_size", zero=True)
    if filler_size + len(targets) > n_items:
        raise ValueError(f"filler_size {filler_size} + {len(targets)} targets exceed "
                         f"{n_items} items")
    weights = torch.ones(n_items, dtype=torch.float64)
    weights[targets] = 0  # the filler never repeats a target
    return targets, weights


def random_attack(n_fake: int, n_users: int, n_items: int, targets, filler_size: int,
                  seed: int = 0) -> Interactions:
    """Random attack: every fake profile is the targets plus ``filler_size`` items drawn
    uniformly (distinct, never a target). Fake users get ids ``n_users .. n_users + n_fake − 1``."""
    targets, weights = _setup(n_fake, n_users, n_items, targets, filler_size)
    g = torch.Generator().manual_seed(seed)
    return _profiles(_draw(weights, n_fake, filler_size, g), targets, n_users)


def average_attack(n_fake: int, n_users: int, n_items: int, targets, filler_size: int,
                   popularity: torch.Tensor, seed: int = 0) -> Interactions:
    """Average attack (implicit): filler items drawn with probability ∝ their training
    ``popularity``, the implicit analogue of rating each filler at its mean."""
    targets, weights = _setup(n_fake, n_users, n_items, targets, filler_size)
    popularity = torch.as_tensor(popularity, dtype=torch.float64).cpu()
    if popularity.shape != (n_items,) or bool((popularity < 0).any()):
        raise ValueError(f"popularity must be {n_items} non-negative numbers")
    g = torch.Generator().manual_seed(seed)
    return _profiles(_draw(weights * popularity, n_fake, filler_size, g), targets, n_users)


def bandwagon_attack(n_fake: int, n_users: int, n_items: int, targets, filler_size: int,
                     popularity: torch.Tensor, seed: int = 0) -> Interactions:
    """Bandwagon attack: the ``filler_size // 2`` most popular items (the same for every fake
    user: the attacker rides on the blockbusters) plus uniformly drawn items for the rest."""
    targets, weights = _setup(n_fake, n_users, n_items, targets, filler_size)
    popularity = torch.as_tensor(popularity, dtype=torch.float64).cpu()
    if popularity.shape != (n_items,):
        raise ValueError(f"popularity must have {n_items} entries")
    n_popular = filler_size // 2
    ranked = torch.argsort(popularity.masked_fill(weights == 0, -1), descending=True,
                           stable=True)
    popular = ranked[:n_popular]
    weights = weights.clone()
    weights[popular] = 0
    g = torch.Generator().manual_seed(seed)
    rest = _draw(weights, n_fake, filler_size - n_popular, g)
    filler = torch.cat([popular.view(1, -1).expand(n_fake, -1), rest], dim=1)
    return _profiles(filler, targets, n_users)


def _objective(P: torch.Tensor, Q: torch.Tensor, targets: torch.Tensor, has: torch.Tensor,
               rivals: torch.Tensor) -> torch.Tensor:
    """Mean over (real user, target it lacks) of log σ(x_ut − x_ur), r over the user's rival
    items (its current top items): the target climbing past them."""
    x_t = P @ Q[targets].T  # [U, T]
    x_r = (P.unsqueeze(1) * Q[rivals]).sum(-1)  # [U, R]
    margin = torch.nn.functional.logsigmoid(x_t.unsqueeze(2) - x_r.unsqueeze(1))  # [U, T, R]
    keep = (~has).unsqueeze(2).to(margin)
    return (margin * keep).sum() / (keep.sum() * rivals.shape[1])


def gradient_attack(n_fake: int, n_users: int, n_items: int, targets, filler_size: int,
                    model: MF, train: Interactions, seed: int = 0, steps: int = 20,
                    inner_steps: int = 3, inner_lr: float = 0.5, rivals: int = 50,
                    step_size: float = 0.5) -> Interactions:
    r"""A white-box attack in the spirit of Li et al. (NeurIPS 2016), simplified.

    The attacker knows the trained ``model`` and the training data. Each fake user's profile is
    relaxed to continuous weights ``W_f ∈ [0, 1]^{n_items}`` (targets fixed at 1), started from
    the average attack's profile (fillers drawn ∝ popularity). A *surrogate* of retraining: the fake users enter with embeddings
    ``p_f = W_f Q / |W_f|`` (the mean of their items' vectors), and ``inner_steps`` steps of
    gradient descent on ``½‖W − P_f Qᵀ‖² + ½‖Q − Q₀‖²`` update ``p_f`` and the item table ``Q``
    (the real users' vectors stay fixed). The attacker's objective is the mean of
    ``log σ(x_ut − x_ur)`` over real users ``u`` without target ``t`` and the ``rivals`` items
    ``r`` at the top of ``u``'s clean list. Its gradient with respect to ``W`` (through the
    unrolled inner steps) is followed for ``steps`` normalised ascent steps; then each fake user
    keeps its ``filler_size`` highest-weight items (the projection back to a valid profile).

    Simplified against Li et al.: a squared-loss surrogate with a few unrolled steps instead of
    the exact alternating-minimisation solution of the victim, the real users' vectors held
    fixed, and one projection at the end. The victim then *retrains* BPR from scratch on the
    poisoned data, which the surrogate only approximates.
    """
    targets, weights = _setup(n_fake, n_users, n_items, targets, filler_size)
    if n_fake == 0:
        return _profiles(torch.empty(0, filler_size, dtype=torch.int64), targets, n_users)
    _positive_int(steps, "steps", zero=True)
    _positive_int(inner_steps, "inner_steps", zero=True)
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        pop = item_popularity(train.to("cpu"), n_items).double()
    start = _draw(weights * pop, n_fake, filler_size, g)  # the average attack's profiles
    with torch.no_grad():
        P = model.user.detach()[:n_users].cpu().double()
        Q0 = model.item.detach().cpu().double()
        train = train.to("cpu")
        real = train.user < n_users
        has = torch.zeros(n_users, n_items, dtype=torch.bool)
        has[train.user[real], train.item[real]] = True
        scores = (P @ Q0.T).masked_fill(has, float("-inf"))
        scores[:, targets] = float("-inf")
        top = torch.topk(scores, rivals, dim=1).indices  # [U, R]
        has_t = has[:, targets]
    free = torch.zeros(n_fake, n_items, dtype=torch.float64)
    free.scatter_(1, start, 1.0)
    target_mask = torch.zeros(n_items, dtype=torch.bool)
    target_mask[targets] = True
    for _ in range(steps):
        free.requires_grad_(True)
        W = torch.where(target_mask, torch.ones_like(free), free)
        Pf = W @ Q0 / W.sum(1, keepdim=True)
        Q = Q0
        for _ in range(inner_steps):
            err = W - Pf @ Q.T  # [F, I]
            grad_p = -err @ Q
            grad_q = -err.T @ Pf + (Q - Q0)
            Pf, Q = Pf - inner_lr * grad_p / n_items, Q - inner_lr * grad_q
        # rivals per user: score every (user, rival) pair with the updated Q
        objective = _objective(P, Q, targets, has_t, top)
        grad, = torch.autograd.grad(objective, free)
        with torch.no_grad():
            grad = grad.masked_fill(target_mask, 0)
            scale = grad.abs().amax(1, keepdim=True).clamp(min=1e-30)
            free = (free + step_size * grad / scale).clamp(0, 1)
    with torch.no_grad():
        free = free.masked_fill(target_mask, -1)
        filler = torch.topk(free + 1e-9 * torch.rand(free.shape, generator=g), filler_size,
                            dim=1).indices
    return _profiles(filler, targets, n_users)


@dataclass(frozen=True, eq=False)
class Poisoned:
    """A poisoned training set: the real ``train`` plus ``fake`` profiles (users
    ``n_users .. n_users + n_fake − 1``). Defined in chapter 6."""

    train: Interactions
    fake: Interactions
    n_users: int  # real users
    n_fake: int
    attack: str

    @property
    def n_total(self) -> int:
        return self.n_users + self.n_fake

    @property
    def is_fake(self) -> torch.Tensor:
        """Boolean ``[n_total]``: which users are fake."""
        return torch.arange(self.n_total) >= self.n_users


def inject(train: Interactions, n_users: int, n_items: int, targets, fraction: float,
           attack: str = "random", filler_size: int | None = None, seed: int = 0,
           model: MF | None = None, **options) -> Poisoned:
    """Append ``round(fraction · n_users)`` fake profiles made by ``attack`` (one of
    :data:`ATTACKS`) to ``train``. ``filler_size`` defaults to the median real profile size;
    ``"gradient"`` needs the trained ``model``; ``options`` go to the attack. ``train`` is not
    modified."""
    if attack not in ATTACKS:
        raise ValueError(f"unknown attack {attack!r}: choose one of {', '.join(ATTACKS)}")
    n = n_fake_users(fraction, n_users)
    train.check(n_users, n_items, "train")
    filler = filler_size_of(train, n_users) if filler_size is None else filler_size
    popularity = item_popularity(train.to("cpu"), n_items)
    if attack == "random":
        fake = random_attack(n, n_users, n_items, targets, filler, seed)
    elif attack == "average":
        fake = average_attack(n, n_users, n_items, targets, filler, popularity, seed)
    elif attack == "bandwagon":
        fake = bandwagon_attack(n, n_users, n_items, targets, filler, popularity, seed)
    else:
        if model is None:
            raise ValueError("the gradient attack needs the trained model")
        fake = gradient_attack(n, n_users, n_items, targets, filler, model, train, seed,
                               **options)
    fake = fake.to(train.device)
    return Poisoned(Interactions.concat(train, fake), fake, n_users, n, attack)


# --------------------------------------------------------------------------- metrics
@torch.no_grad()
def target_ranks(scores: torch.Tensor, exclude: torch.Tensor, targets) -> torch.Tensor:
    """Rank (1 = top) of each target among each user's non-excluded items: ``1 + #{non-excluded
    items scoring strictly higher}``. ``scores``, ``exclude``: ``[U, n_items]``; returns a float
    ``[U, T]`` tensor with NaN where the user has the target excluded (already interacted)."""
    if scores.shape != exclude.shape or scores.dim() != 2:
        raise ValueError("scores and exclude must both have shape [users, n_items]")
    targets = _targets(targets, scores.shape[1]).to(scores.device)
    masked = scores.masked_fill(exclude, float("-inf"))
    x_t = scores[:, targets]  # [U, T]
    higher = (masked.unsqueeze(1) > x_t.unsqueeze(2)).sum(2).to(torch.float64)
    rank = higher + 1
    return rank.masked_fill(exclude[:, targets], float("nan"))


def _known(train: Interactions, n_users: int, n_items: int) -> torch.Tensor:
    train = train.to("cpu")
    real = train.user < n_users
    known = torch.zeros(n_users, n_items, dtype=torch.bool)
    known[train.user[real], train.item[real]] = True
    return known


@torch.no_grad()
def target_metrics(model, train: Interactions, n_users: int, n_items: int, targets,
                   ks=(10, 50), baseline=None) -> dict:
    """The targets' HR@k (``hr@10``, ``hr@50``), ``mean_rank`` and ``mean_score`` over (real user
    without the target in ``train``, target) pairs, items ranked among those the user has not
    interacted with in the real training data. With ``baseline`` (another model), also
    ``shift``: the mean score change ``x_ut(model) − x_ut(baseline)`` (prediction shift).
    ``per_target``: the mean rank of each target."""
    known = _known(train, n_users, n_items)
    users = torch.arange(n_users)

    def of(m):
        return m.scores(users.to(m.user.device)).cpu().double() if hasattr(m, "scores") \
            else torch.as_tensor(m)[:n_users].cpu().double()

    scores = of(model)
    ranks = target_ranks(scores, known, targets)
    valid = ~torch.isnan(ranks)
    t = _targets(targets, n_items)
    out = {f"hr@{k}": (ranks[valid] <= k).double().mean().item() for k in ks}
    out["mean_rank"] = ranks[valid].mean().item()
    out["mean_score"] = scores[:, t][valid].mean().item()
    out["per_target"] = [ranks[:, j][valid[:, j]].mean().item() for j in range(len(t))]
    if baseline is not None:
        out["shift"] = (scores[:, t] - of(baseline)[:, t])[valid].mean().item()
    return out


# --------------------------------------------------------------------------- detection
@torch.no_grad()
def profile_features(train: Interactions, n_users: int, n_items: int, k: int = 10) -> dict:
    """Per-user features of the profiles in ``train`` (users ``0 .. n_users − 1``, fake ones
    included): ``size`` (number of items), ``mean_popularity`` (mean training popularity of the
    user's items) and ``similarity`` (mean cosine similarity of the binary profile to its ``k``
    most similar other profiles). Each a float tensor ``[n_users]``."""
    train.check(n_users, n_items, "train")
    _positive_int(k, "k")
    train = train.to("cpu")
    X = torch.zeros(n_users, n_items)
    X[train.user, train.item] = 1.0
    size = X.sum(1)
    pop = X.sum(0)
    mean_pop = (X @ pop) / size.clamp(min=1)
    Xn = X / size.clamp(min=1).sqrt().unsqueeze(1)
    S = Xn @ Xn.T
    S.fill_diagonal_(float("-inf"))
    kk = min(k, n_users - 1)
    sim = torch.topk(S, kk, dim=1).values.mean(1) if kk > 0 else torch.zeros(n_users)
    return {"size": size, "mean_popularity": mean_pop, "similarity": sim}


def detect(features: dict, reference: torch.Tensor | None = None, fpr: float = 0.01) -> dict:
    """Flag the profiles with an unusual feature: for each feature, the range from its
    ``fpr / 2`` to its ``1 − fpr / 2`` quantile over the ``reference`` profiles (a boolean mask:
    accounts known from before the attack; default all) is normal, and a profile outside that
    range for any feature is flagged. Returns ``{"flagged": [n] bool, "outside": {feature: [n]
    bool}, "ranges": {feature: (low, high)}}``."""
    if not features:
        raise ValueError("features is empty")
    if isinstance(fpr, bool) or not isinstance(fpr, (int, float)) or not 0 < fpr < 1:
        raise ValueError(f"fpr must be in (0, 1), got {fpr!r}")
    outside, ranges = {}, {}
    flagged = None
    for name, x in features.items():
        x = torch.as_tensor(x, dtype=torch.float64)
        ref = x if reference is None else x[torch.as_tensor(reference, dtype=torch.bool)]
        if ref.numel() == 0:
            raise ValueError("the reference has no profiles")
        low, high = (torch.quantile(ref, q).item() for q in (fpr / 2, 1 - fpr / 2))
        out = (x < low) | (x > high)
        outside[name], ranges[name] = out, (low, high)
        flagged = out if flagged is None else flagged | out
    return {"flagged": flagged, "outside": outside, "ranges": ranges}


def precision_recall(flagged, is_fake) -> tuple[float, float]:
    """Precision (share of flagged profiles that are fake) and recall (share of fake profiles
    flagged). Nothing flagged: precision 0."""
    flagged = torch.as_tensor(flagged, dtype=torch.bool)
    is_fake = torch.as_tensor(is_fake, dtype=torch.bool)
    if flagged.shape != is_fake.shape or flagged.dim() != 1:
        raise ValueError("flagged and is_fake must be 1-D boolean tensors of the same length")
    tp = int((flagged & is_fake).sum())
    precision = tp / int(flagged.sum()) if int(flagged.sum()) else 0.0
    recall = tp / int(is_fake.sum()) if int(is_fake.sum()) else 0.0
    return precision, recall


def remove_users(train: Interactions, removed) -> Interactions:
    """``train`` without the interactions of the ``removed`` users (a boolean mask over user ids);
    the ids are kept, so the model keeps its shape (a removed user simply has no data)."""
    removed = torch.as_tensor(removed, dtype=torch.bool).to(train.device)
    keep = ~removed[train.user]
    return Interactions(train.user[keep], train.item[keep])


# --------------------------------------------------------------------------- exercises
def check_random_attack(attack: Callable) -> bool:
    """Exercise 6.1: ``attack(n_fake, n_users, n_items, targets, filler_size, generator)``
    returns :class:`Interactions` of ``n_fake`` new users (ids ``n_users ..``), each with all the
    targets and ``filler_size`` distinct uniformly drawn other items."""

    def assertions():
        n_users, n_items, targets, filler = 20, 60, [3, 17], 8
        fake = _call(attack, 50, n_users, n_items, targets, filler, torch.Generator().manual_seed(0))
        assert isinstance(fake, Interactions), \
            f"return an Interactions, got {type(fake).__name__}"
        users = fake.user.cpu()
        assert set(users.tolist()) == set(range(n_users, n_users + 50)), \
            "the fake users must be exactly n_users .. n_users + n_fake - 1"
        counts = torch.bincount(users - n_users, minlength=50)
        assert bool((counts == filler + len(targets)).all()), \
            f"every fake profile needs {filler} filler items plus the {len(targets)} targets"
        for u in range(n_users, n_users + 50):
            items = fake.item.cpu()[users == u].tolist()
            assert len(set(items)) == len(items), "a profile lists an item twice"
            assert all(0 <= i < n_items for i in items), "an item index is out of range"
            assert set(targets) <= set(items), "every fake profile must contain every target"
        freq = torch.bincount(fake.item.cpu(), minlength=n_items).double()
        freq[targets] = float("nan")
        others = freq[~torch.isnan(freq)]
        assert others.min() > 0 and others.max() < 4 * others.mean(), \
            "the filler does not look uniform over the non-target items"
        again = _call(attack, 50, n_users, n_items, targets, filler, torch.Generator().manual_seed(0))
        assert torch.equal(again.item.cpu(), fake.item.cpu()), \
            "draw with the generator you are given, so that a seed reproduces the attack"

    return check("6.1", assertions)


def check_target_rank(rank_fn: Callable) -> bool:
    """Exercise 6.2: ``rank_fn(scores, exclude, target)`` returns, per user, the rank (1 = top)
    of item ``target`` among the items not excluded (compared with :func:`target_ranks`)."""

    def assertions():
        g = torch.Generator().manual_seed(0)
        scores = torch.randn(30, 40, generator=g)
        exclude = torch.rand(30, 40, generator=g) < 0.2
        exclude[:, 5] = False
        got = _call(rank_fn, scores, exclude, 5)
        assert isinstance(got, torch.Tensor) and got.shape == (30,), \
            "return one rank per user, a tensor of shape [users]"
        want = target_ranks(scores, exclude, [5])[:, 0]
        assert bool((got.double() == want).all()), (
            "not the right ranks: count the non-excluded items scoring strictly higher than the "
            "target, plus one")

    return check("6.2", assertions)


def check_mean_popularity(feature: Callable) -> bool:
    """Exercise 6.3: ``feature(train, n_users, n_items)`` returns each user's mean training
    popularity of their items (compared with :func:`profile_features`)."""

    def assertions():
        train = Interactions(torch.tensor([0, 0, 1, 1, 1, 2]), torch.tensor([0, 1, 0, 2, 3, 0]))
        got = _call(feature, train, 3, 4)
        assert isinstance(got, torch.Tensor) and got.shape == (3,), "one number per user"
        want = torch.tensor([(3 + 1) / 2, (3 + 1 + 1) / 3, 3.0])
        assert torch.allclose(got.double(), want.double()), (
            f"expected {want.tolist()}: popularity of an item is its number of training "
            "interactions, averaged over the user's items")

    return check("6.3", assertions)


def check_hit_rate(hit_rate: Callable) -> bool:
    """Exercise 6.4: ``hit_rate(ranks, k)`` is the share of ranks ``<= k``, NaN entries (users
    who already have the target) ignored."""

    def assertions():
        ranks = torch.tensor([[1.0, 60.0], [12.0, float("nan")], [50.0, 900.0]])
        for k, want in ((10, 1 / 5), (50, 3 / 5), (1000, 1.0)):
            got = _call(hit_rate, ranks, k)
            got = float(got)
            assert abs(got - want) < 1e-9, (
                f"HR@{k} of {ranks.tolist()} should be {want:.3f}, got {got:.3f} "
                "(ignore the NaN entries)")

    return check("6.4", assertions)
