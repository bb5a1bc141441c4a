"""Matrix factorisation, the BPR loss, and the popularity baseline.

Defined in chapter 5.

Matrix factorisation scores user u and item i by the dot product of their embedding rows,
``x_ui = <P_u, Q_i>``. BPR (Rendle et al. 2009) trains it on triples (u, i, j), i an item u
interacted with and j one u did not, to rank i above j: the loss is
``-log σ(x_ui − x_uj) = softplus(x_uj − x_ui)``. :func:`bpr_loss` takes the embedding tables as
plain tensors, so that a perturbed copy ``P + ΔP`` is scored the same way (APR, robustness).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .data import Interactions

__all__ = ["MF", "bpr_loss", "Popularity"]


class MF(nn.Module):
    """Matrix factorisation: ``user`` (``[n_users, dim]``) and ``item`` (``[n_items, dim]``)
    embedding tables, no biases. Defined in chapter 5.

    ``init_std``: rows start as independent normal vectors with this standard deviation (drawn
    from a seeded generator on the CPU, so a seed gives the same model on any device).
    """

    def __init__(self, n_users: int, n_items: int, dim: int = 64, init_std: float = 0.01,
                 seed: int = 0):
        super().__init__()
        for value, name in ((n_users, "n_users"), (n_items, "n_items"), (dim, "dim")):
            if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
        if not init_std > 0:
            raise ValueError(f"init_std must be positive, got {init_std!r}")
        g = torch.Generator().manual_seed(seed)
        self.user = nn.Parameter(torch.randn(n_users, dim, generator=g) * init_std)
        self.item = nn.Parameter(torch.randn(n_items, dim, generator=g) * init_std)

    @property
    def n_users(self) -> int:
        return self.user.shape[0]

    @property
    def n_items(self) -> int:
        return self.item.shape[0]

    def forward(self, user: torch.Tensor, item: torch.Tensor) -> torch.Tensor:
        """Scores ``x_ui`` of the pairs ``(user[k], item[k])``."""
        return (self.user[user] * self.item[item]).sum(-1)

    @torch.no_grad()
    def scores(self, users: torch.Tensor) -> torch.Tensor:
        """Scores of every item for each of ``users``: ``[len(users), n_items]``."""
        return self.user[users] @ self.item.T

    def perturbed(self, delta_user: torch.Tensor, delta_item: torch.Tensor) -> "MF":
        """A copy whose tables are ``P + delta_user`` and ``Q + delta_item``."""
        if delta_user.shape != self.user.shape or delta_item.shape != self.item.shape:
            raise ValueError("the perturbations must have the shapes of the embedding tables")
        copy = MF.__new__(MF)
        nn.Module.__init__(copy)
        copy.user = nn.Parameter(self.user.detach() + delta_user.to(self.user), requires_grad=False)
        copy.item = nn.Parameter(self.item.detach() + delta_item.to(self.item), requires_grad=False)
        return copy

    def norms(self) -> tuple[float, float]:
        """Mean Euclidean norm of the user rows and of the item rows."""
        with torch.no_grad():
            return (self.user.norm(dim=1).mean().item(), self.item.norm(dim=1).mean().item())


def bpr_loss(user_table: torch.Tensor, item_table: torch.Tensor, user: torch.Tensor,
             pos: torch.Tensor, neg: torch.Tensor) -> torch.Tensor:
    """Mean BPR loss ``softplus(x_uj − x_ui)`` of the triples ``(user, pos, neg)``.

    ``user_table`` / ``item_table`` are the embedding tables (or perturbed copies of them).
    """
    u = user_table[user]
    diff = (u * (item_table[pos] - item_table[neg])).sum(-1)
    return F.softplus(-diff).mean()


class Popularity:
    """The popularity baseline: every user gets the items with the most training interactions.

    Defined in chapter 5.
    """

    def __init__(self, train: Interactions, n_items: int):
        if len(train) == 0:
            raise ValueError("the training set is empty")
        train.check(int(train.user.max()) + 1, n_items, "train")
        self.counts = torch.bincount(train.item, minlength=n_items).to(torch.float32)
        self.n_items = n_items

    def scores(self, users: torch.Tensor) -> torch.Tensor:
        return self.counts.to(users.device).expand(len(users), -1)
