"""Ranking metrics: full ranking (the headline protocol) and sampled ranking (the leakage box).

Defined in chapter 5.

Full ranking scores *every* item for each user, removes the items the user is known to have
(training items; for the test, validation items too), and looks at the top ``k``:

* ``recall``: hits in the top k / the user's number of target items;
* ``ndcg``: ``Σ_{hits at rank r} 1/log2(r + 1)`` over the ideal DCG of ``min(|targets|, k)``
  hits, ranks counted from 1;
* ``hit``: at least one target in the top k;
* ``mrr``: 1 / rank of the first target in the top k (0 when there is none);
* ``coverage``: the share of all items that appear in somebody's top k;
* ``popularity``: the mean number of training interactions of the recommended items.

Each is averaged over the users who have at least one target. Everything is computed on tensors
for all users at once (in chunks of users).

Sampled ranking (the NCF protocol) ranks each user's one test item against 99 items drawn at
random from the items the user never interacted with: a much easier task, whose numbers are not
comparable with full ranking (Krichene & Rendle 2020).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from ._threads import cpu_threads
from .data import Interactions, Split
from .sampling import PairSet, sample_negatives

__all__ = ["RankingTask", "ranking_task", "ndcg_at_k", "topk_hits", "evaluate",
           "sampled_evaluate", "score_fn"]


def ndcg_at_k(hits: torch.Tensor, n_targets: torch.Tensor, k: int) -> torch.Tensor:
    """NDCG@k of each row: ``hits`` is a ``[U, k]`` 0/1 tensor (is the item at rank r+1 a
    target?), ``n_targets`` the number of targets of each user; the ideal DCG puts
    ``min(n_targets, k)`` hits first."""
    if hits.dim() != 2 or hits.shape[1] != k:
        raise ValueError(f"hits must have shape [users, {k}], got {tuple(hits.shape)}")
    discount = 1.0 / torch.log2(torch.arange(2, k + 2, device=hits.device, dtype=torch.float64))
    dcg = (hits.to(torch.float64) * discount).sum(1)
    ideal_n = n_targets.to(hits.device).clamp(max=k).to(torch.int64)
    ideal = torch.cumsum(discount, 0)[(ideal_n - 1).clamp(min=0)]
    return torch.where(ideal_n > 0, dcg / ideal, torch.zeros_like(dcg))


def topk_hits(scores: torch.Tensor, targets: torch.Tensor, exclude: torch.Tensor | None,
              k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Top-k items of each row of ``scores`` after setting ``exclude`` (boolean, same shape) to
    −∞, and whether each is a target (``targets``, boolean): ``(items [U, k], hits [U, k])``."""
    if not isinstance(k, int) or k <= 0 or k > scores.shape[1]:
        raise ValueError(f"k must be an integer in [1, {scores.shape[1]}], got {k!r}")
    if exclude is not None:
        scores = scores.masked_fill(exclude, float("-inf"))
    items = torch.topk(scores, k, dim=1).indices
    return items, targets.gather(1, items)


@dataclass(frozen=True, eq=False)
class RankingTask:
    """What to rank for whom: ``users`` (those with at least one target), their ``targets``
    and the ``exclude``d known items as ``[len(users), n_items]`` boolean masks, and the
    training ``popularity`` of every item. Defined in chapter 5."""

    users: torch.Tensor
    targets: torch.Tensor
    exclude: torch.Tensor
    popularity: torch.Tensor
    n_items: int

    def to(self, device) -> "RankingTask":
        return RankingTask(self.users.to(device), self.targets.to(device), self.exclude.to(device),
                           self.popularity.to(device), self.n_items)


def _mask(pairs: Interactions, row_of: torch.Tensor, n_rows: int, n_items: int) -> torch.Tensor:
    mask = torch.zeros(n_rows, n_items, dtype=torch.bool, device=pairs.device)
    rows = row_of[pairs.user]
    keep = rows >= 0
    mask[rows[keep], pairs.item[keep]] = True
    return mask


def ranking_task(split: Split, part: str = "test", train: Interactions | None = None) -> RankingTask:
    """The full-ranking task of ``split.valid`` (``part="valid"``: training items excluded) or
    ``split.test`` (training and validation items excluded).

    ``train`` replaces ``split.train`` as what is excluded and counted for popularity (e.g. a
    training set with fake users appended; their rows are not ranked).
    """
    if part not in ("valid", "test"):
        raise ValueError(f"part must be 'valid' or 'test', got {part!r}")
    n_users, n_items = split.n_users, split.n_items
    train = split.train if train is None else train
    targets = getattr(split, part)
    if len(targets) == 0:
        raise ValueError(f"the {part} part is empty: nothing to rank")
    targets.check(n_users, n_items, part)
    known = train if part == "valid" else Interactions.concat(train, split.valid.to(train.device))
    known = known.to(targets.device)
    users = torch.unique(targets.user)
    row_of = torch.full((max(n_users, int(known.user.max()) + 1),), -1, dtype=torch.int64,
                        device=targets.device)
    row_of[users] = torch.arange(len(users), device=targets.device)
    target_mask = _mask(targets, row_of, len(users), n_items)
    exclude = _mask(known, row_of, len(users), n_items)
    if bool((target_mask & exclude).any()):
        raise ValueError(f"some {part} pairs are also in the excluded (known) interactions")
    popularity = torch.bincount(train.item.to(targets.device), minlength=n_items).to(torch.float32)
    return RankingTask(users, target_mask, exclude, popularity, n_items)


def score_fn(model):
    """``users -> scores [len(users), n_items]`` from a model with a ``scores`` method, a
    function, or a full ``[n_users, n_items]`` score tensor."""
    if isinstance(model, torch.Tensor):
        return lambda users: model[users]
    if hasattr(model, "scores"):
        return model.scores
    if callable(model):
        return model
    raise TypeError("model must have a scores(users) method, be a function or a score tensor")


@torch.no_grad()
def evaluate(model, task: RankingTask, k: int = 10, chunk: int = 4096) -> dict:
    """Full-ranking Recall, NDCG, Hit and MRR at ``k``, item coverage and mean popularity of the
    recommended lists, averaged over ``task.users``. ``model``: see :func:`score_fn`."""
    with cpu_threads(1, task.users.device):
        return _evaluate(score_fn(model), task, k, chunk)


def _evaluate(scores_of, task: RankingTask, k: int, chunk: int) -> dict:
    sums = {"recall": 0.0, "ndcg": 0.0, "hit": 0.0, "mrr": 0.0, "popularity": 0.0}
    shown = torch.zeros(task.n_items, dtype=torch.bool, device=task.users.device)
    ranks = torch.arange(1, k + 1, device=task.users.device, dtype=torch.float64)
    for start in range(0, len(task.users), chunk):
        rows = slice(start, start + chunk)
        scores = scores_of(task.users[rows]).to(task.users.device, torch.float32)
        if scores.shape != task.targets[rows].shape:
            raise ValueError(f"scores must have shape {tuple(task.targets[rows].shape)}, "
                             f"got {tuple(scores.shape)}")
        items, hits = topk_hits(scores, task.targets[rows], task.exclude[rows], k)
        n_targets = task.targets[rows].sum(1)
        hits_f = hits.to(torch.float64)
        sums["recall"] += (hits_f.sum(1) / n_targets).sum().item()
        sums["ndcg"] += ndcg_at_k(hits, n_targets, k).sum().item()
        sums["hit"] += hits.any(1).sum().item()
        first = torch.where(hits, 1.0 / ranks, torch.zeros_like(hits_f)).max(1).values
        sums["mrr"] += first.sum().item()
        sums["popularity"] += task.popularity[items].to(torch.float64).mean(1).sum().item()
        shown[items.flatten()] = True
    n = len(task.users)
    out = {name: value / n for name, value in sums.items()}
    out["coverage"] = shown.sum().item() / task.n_items
    return out


@torch.no_grad()
def sampled_evaluate(model, test: Interactions, seen: Interactions, n_users: int, n_items: int,
                     n_negatives: int = 99, k: int = 10, seed: int = 0) -> dict:
    """The NCF protocol: rank each test pair's item among ``n_negatives`` items drawn uniformly
    from the items its user has no interaction with in ``seen`` (which must include the test
    pairs). Returns mean ``hit`` (HR@k), ``ndcg`` (NDCG@k, one target) and ``mrr`` (full
    reciprocal rank). A tie with a negative counts against the test item."""
    if not isinstance(n_negatives, int) or n_negatives < 1:
        raise ValueError(f"n_negatives must be a positive integer, got {n_negatives!r}")
    if len(test) == 0:
        raise ValueError("no test pairs to rank")
    test.check(n_users, n_items, "test")
    positives = PairSet(seen, n_users, n_items)
    if not bool(positives.contains(test.user, test.item).all()):
        raise ValueError("seen must include the test pairs (they are not negatives)")
    generator = torch.Generator().manual_seed(seed)
    users = test.user.repeat_interleave(n_negatives)
    negatives = sample_negatives(users, positives, generator).view(len(test), n_negatives)
    scores_of = score_fn(model)
    unique, inverse = torch.unique(test.user, return_inverse=True)
    full = scores_of(unique.to(test.device)).to(test.device)[inverse]
    pos = full.gather(1, test.item.view(-1, 1))
    neg = full.gather(1, negatives.to(test.device))
    rank = (neg >= pos).sum(1).to(torch.float64)  # 0 = the test item is first
    hit = rank < k
    ndcg = torch.where(hit, 1.0 / torch.log2(rank + 2), torch.zeros_like(rank))
    return {"hit": hit.double().mean().item(), "ndcg": ndcg.mean().item(),
            "mrr": (1.0 / (rank + 1)).mean().item()}

