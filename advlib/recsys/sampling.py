"""Uniform negative sampling on tensors, with no Python loop per interaction.

Defined in chapter 5.

BPR trains on triples (user u, positive item i, negative item j), where j is an item u has not
interacted with. :class:`PairSet` keeps the known (user, item) pairs as a sorted tensor of keys
``user * n_items + item``; membership is one :func:`torch.searchsorted`.
:func:`sample_negatives` draws every negative at once, uniformly over all items, rejects the
draws that hit a known pair and draws again for those only, until none is left. The result is
exactly uniform over each user's non-interacted items.
"""
from __future__ import annotations

import torch

from .data import Interactions

__all__ = ["PairSet", "sample_negatives"]


class PairSet:
    """The set of (user, item) pairs of ``interactions``, for fast membership tests.

    Defined in chapter 5.
    """

    def __init__(self, interactions: Interactions, n_users: int, n_items: int):
        interactions.check(n_users, n_items)
        self.n_users, self.n_items = int(n_users), int(n_items)
        self.keys = torch.unique(interactions.keys(self.n_items))  # sorted, unique
        self.per_user = torch.bincount(self.keys // self.n_items, minlength=self.n_users)

    def __len__(self) -> int:
        return int(self.keys.numel())

    def contains(self, user: torch.Tensor, item: torch.Tensor) -> torch.Tensor:
        """Boolean tensor: is ``(user[k], item[k])`` one of the pairs?"""
        query = user.to(self.keys.device) * self.n_items + item.to(self.keys.device)
        if len(self) == 0:
            return torch.zeros_like(query, dtype=torch.bool)
        where = torch.searchsorted(self.keys, query).clamp_(max=len(self) - 1)
        return self.keys[where] == query


def sample_negatives(user: torch.Tensor, positives: PairSet, generator: torch.Generator | None = None,
                     max_rounds: int = 1000) -> torch.Tensor:
    """One item per entry of ``user``, uniform over the items that user has no pair with in
    ``positives``. Vectorised: draw all, reject hits, redraw only those.

    ``generator`` (a CPU ``torch.Generator``) makes the draw reproducible. Raises
    ``ValueError`` for user indices out of range or a user who has every item (no negative
    exists).
    """
    user = torch.as_tensor(user)
    if user.dim() != 1 or user.is_floating_point():
        raise ValueError("user must be a 1-D tensor of integer indices")
    if user.numel() == 0:
        return torch.empty(0, dtype=torch.int64, device=user.device)
    if int(user.min()) < 0 or int(user.max()) >= positives.n_users:
        raise ValueError(f"user indices must lie in [0, {positives.n_users})")
    full = positives.per_user.to(user.device)[user] >= positives.n_items
    if bool(full.any()):
        raise ValueError("a user has interacted with every item: no negative item exists")
    n_items = positives.n_items
    negative = torch.randint(n_items, user.shape, generator=generator).to(user.device)
    todo = torch.nonzero(positives.contains(user, negative).to(user.device)).flatten()
    for _ in range(max_rounds):
        if todo.numel() == 0:
            return negative
        redraw = torch.randint(n_items, todo.shape, generator=generator).to(user.device)
        negative[todo] = redraw
        hit = positives.contains(user[todo], redraw).to(user.device)
        todo = todo[hit]
    raise RuntimeError(f"negative sampling did not finish in {max_rounds} rounds")
