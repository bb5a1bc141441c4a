"""Implicit feedback from MovieLens, and the two splits of the recommender chapters.

Defined in chapter 5.

* :class:`Interactions`: (user, item) index pairs as two int64 tensors. Every model, sampler and
  metric of :mod:`advlib.recsys` takes them together with ``n_users`` and ``n_items``, so a
  training set with extra (e.g. fake) users appended is just ``Interactions.concat(train,
  fake)`` and ``n_users + n_fake``.
* :class:`ImplicitData`: a whole data set with contiguous 0-based indices, the timestamps, and
  the way back to the original ids and titles (:func:`implicit_from_movielens`).
* :class:`Split`: train / validation / test interactions of one protocol:
  :func:`random_split` (per user 80/10/10 at random: RecBole's protocol, used for every headline
  number) and :func:`leave_one_out_split` (each user's last interaction is the test item and the
  one before it the validation item).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

__all__ = ["Interactions", "ImplicitData", "Split", "implicit_from_movielens", "load_implicit",
           "random_split", "leave_one_out_split", "item_popularity"]


def _as_index(values, name: str) -> torch.Tensor:
    t = torch.as_tensor(values)
    if t.dim() != 1:
        raise ValueError(f"{name} must be a 1-D tensor of indices, got shape {tuple(t.shape)}")
    if t.is_floating_point() or t.is_complex() or t.dtype == torch.bool:
        raise ValueError(f"{name} must hold integer indices, got dtype {t.dtype}")
    return t.to(torch.int64)


@dataclass(frozen=True, eq=False)
class Interactions:
    """(user, item) pairs: ``user[k]`` interacted with ``item[k]``; 0-based int64 indices.

    Defined in chapter 5.
    """

    user: torch.Tensor
    item: torch.Tensor

    def __post_init__(self):
        user, item = _as_index(self.user, "user"), _as_index(self.item, "item")
        if user.shape != item.shape:
            raise ValueError(f"user and item must have the same length, got {len(user)} and {len(item)}")
        if user.device != item.device:
            raise ValueError("user and item must be on the same device")
        object.__setattr__(self, "user", user)
        object.__setattr__(self, "item", item)

    def __len__(self) -> int:
        return int(self.user.numel())

    def __repr__(self) -> str:
        return f"Interactions({len(self):,} pairs, device={self.user.device})"

    @property
    def device(self) -> torch.device:
        return self.user.device

    def to(self, device) -> "Interactions":
        return Interactions(self.user.to(device), self.item.to(device))

    def check(self, n_users: int, n_items: int, name: str = "interactions") -> "Interactions":
        """Raise ``ValueError`` unless every index is in ``[0, n_users) × [0, n_items)``."""
        for value, what in ((n_users, "n_users"), (n_items, "n_items")):
            if not isinstance(value, (int, np.integer)) or isinstance(value, bool) or value <= 0:
                raise ValueError(f"{what} must be a positive integer, got {value!r}")
        if len(self):
            if int(self.user.min()) < 0 or int(self.user.max()) >= n_users:
                raise ValueError(f"{name}: user indices must lie in [0, {n_users}), found "
                                 f"[{int(self.user.min())}, {int(self.user.max())}]")
            if int(self.item.min()) < 0 or int(self.item.max()) >= n_items:
                raise ValueError(f"{name}: item indices must lie in [0, {n_items}), found "
                                 f"[{int(self.item.min())}, {int(self.item.max())}]")
        return self

    def keys(self, n_items: int) -> torch.Tensor:
        """One int64 key per pair, ``user * n_items + item`` (unique for distinct pairs)."""
        return self.user * n_items + self.item

    @staticmethod
    def concat(*parts: "Interactions") -> "Interactions":
        """All pairs of ``parts``, in order (e.g. a training set plus fake users' profiles)."""
        if not parts:
            raise ValueError("concat needs at least one Interactions")
        return Interactions(torch.cat([p.user for p in parts]), torch.cat([p.item for p in parts]))


@dataclass(frozen=True, eq=False)
class ImplicitData:
    """A data set as implicit feedback: every rating is an interaction.

    ``user_ids[u]`` / ``item_ids[i]`` are the original ids of index ``u`` / ``i``;
    ``titles[i]`` is the title of item ``i``. Defined in chapter 5.
    """

    interactions: Interactions
    timestamp: torch.Tensor
    n_users: int
    n_items: int
    user_ids: np.ndarray
    item_ids: np.ndarray
    titles: list
    name: str = "MovieLens-100K"

    def __repr__(self) -> str:
        density = len(self.interactions) / (self.n_users * self.n_items)
        return (f"ImplicitData({self.name}: {len(self.interactions):,} interactions, "
                f"{self.n_users:,} users, {self.n_items:,} items, density {density:.2%})")


def implicit_from_movielens(ml) -> ImplicitData:
    """Turn a :class:`advlib.data.MovieLens` into implicit feedback with contiguous indices.

    Every rating (1 to 5 stars) counts as one interaction; a repeated (user, item) pair keeps its
    earliest timestamp. Users and items are numbered in the order of their original ids.
    """
    ratings = ml.ratings
    if len(ratings) == 0:
        raise ValueError("no ratings: nothing to turn into interactions")
    ratings = ratings.sort_values(["user_id", "item_id", "timestamp"], kind="stable")
    ratings = ratings.drop_duplicates(["user_id", "item_id"], keep="first")
    user_ids, user_index = np.unique(ratings["user_id"].to_numpy(), return_inverse=True)
    item_ids, item_index = np.unique(ratings["item_id"].to_numpy(), return_inverse=True)
    title_of = dict(zip(ml.items["item_id"].to_numpy(), ml.items["title"].astype(str)))
    titles = [title_of.get(i, f"item {i}") for i in item_ids]
    inter = Interactions(torch.from_numpy(user_index.astype(np.int64)),
                         torch.from_numpy(item_index.astype(np.int64)))
    stamp = torch.from_numpy(ratings["timestamp"].to_numpy().astype(np.int64))
    return ImplicitData(inter, stamp, len(user_ids), len(item_ids), user_ids, item_ids, titles,
                        getattr(ml, "name", "MovieLens"))


def load_implicit(name: str = "ml-100k", fallback: bool = True) -> ImplicitData:
    """MovieLens as implicit feedback: ``"ml-100k"`` (offline through the recbole wheel) or
    ``"ml-1m"`` (downloaded once). With ``fallback`` an unavailable ML-1M (offline, no cache)
    prints a note and returns ML-100K instead."""
    from .. import data

    if name == "ml-100k":
        return implicit_from_movielens(data.load_movielens_100k())
    if name != "ml-1m":
        raise ValueError(f"name must be 'ml-100k' or 'ml-1m', got {name!r}")
    try:
        return implicit_from_movielens(data.load_movielens_1m())
    except data.DataUnavailableError as exc:
        if not fallback:
            raise
        first = str(exc).splitlines()[0]
        print(f"Note: MovieLens-1M is not available ({first}); using MovieLens-100K instead.")
        return implicit_from_movielens(data.load_movielens_100k())


@dataclass(frozen=True, eq=False)
class Split:
    """Train, validation and test interactions of one protocol. Defined in chapter 5.

    No pair is in two parts. Validation ranks all items except the user's training items; test
    ranks all items except training and validation items (:func:`advlib.recsys.ranking_task`).
    """

    train: Interactions
    valid: Interactions
    test: Interactions
    n_users: int
    n_items: int
    protocol: str

    def __repr__(self) -> str:
        return (f"Split({self.protocol}: train {len(self.train):,}, valid {len(self.valid):,}, "
                f"test {len(self.test):,}; {self.n_users:,} users × {self.n_items:,} items)")

    def to(self, device) -> "Split":
        return Split(self.train.to(device), self.valid.to(device), self.test.to(device),
                     self.n_users, self.n_items, self.protocol)


def _check_data(data: ImplicitData) -> None:
    if len(data.interactions) == 0:
        raise ValueError("the data set has no interactions to split")
    data.interactions.check(data.n_users, data.n_items, "data")


def _parts(data: ImplicitData, part: np.ndarray, protocol: str) -> Split:
    user, item = data.interactions.user.cpu(), data.interactions.item.cpu()
    chosen = [torch.from_numpy(part == k) for k in range(3)]
    split = Split(*(Interactions(user[m], item[m]) for m in chosen),
                  data.n_users, data.n_items, protocol)
    for name in ("train", "valid", "test"):
        if len(getattr(split, name)) == 0:
            raise ValueError(f"the {name} part of the split is empty: too few interactions per user")
    return split


def random_split(data: ImplicitData, ratios=(0.8, 0.1, 0.1), seed: int = 0) -> Split:
    """Per user, shuffle the interactions and cut them 80/10/10 (RecBole's ``RS`` protocol).

    A user with ``n`` interactions gets ``floor(r·n)`` validation and test interactions, one
    more where ``0 < r·n < 1`` as long as a training interaction remains; training gets the
    rest. Vectorised: one random key per interaction, one sort.
    """
    _check_data(data)
    ratios = tuple(float(r) for r in ratios)
    if len(ratios) != 3 or any(not np.isfinite(r) or r <= 0 for r in ratios) or \
            abs(sum(ratios) - 1) > 1e-9:
        raise ValueError(f"ratios must be three positive numbers summing to 1, got {ratios}")
    user = data.interactions.user.cpu().numpy()
    rng = np.random.default_rng(seed)
    order = np.lexsort((rng.random(len(user)), user))  # by user, random within a user
    counts = np.bincount(user, minlength=data.n_users)
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
    position = np.empty(len(user), dtype=np.int64)
    position[order] = np.arange(len(user)) - starts[user[order]]
    n = counts.astype(np.float64)
    take = [np.floor(r * n).astype(np.int64) for r in ratios]
    train_n = counts - take[1] - take[2]
    for k in (2, 1):  # RecBole: a part with 0 < r·n < 1 still gets one, if training keeps > 1
        bump = (ratios[k] * n > 0) & (ratios[k] * n < 1) & (train_n > 1)
        take[k] = take[k] + bump
        train_n = train_n - bump
    cut1 = train_n[user]
    cut2 = cut1 + take[1][user]
    part = np.where(position < cut1, 0, np.where(position < cut2, 1, 2))
    return _parts(data, part, "random 80/10/10 per user")


def leave_one_out_split(data: ImplicitData) -> Split:
    """Each user's latest interaction is the test item, the one before it the validation item,
    the rest is training (ties in time broken by item index). Users with fewer than three
    interactions keep all of them in training."""
    _check_data(data)
    user = data.interactions.user.cpu().numpy()
    item = data.interactions.item.cpu().numpy()
    stamp = data.timestamp.cpu().numpy()
    if len(stamp) != len(user):
        raise ValueError("one timestamp per interaction is needed for a leave-one-out split")
    order = np.lexsort((item, stamp, user))
    counts = np.bincount(user, minlength=data.n_users)
    ends = np.cumsum(counts)
    from_end = np.empty(len(user), dtype=np.int64)
    from_end[order] = ends[user[order]] - 1 - np.arange(len(user))  # 0 = latest
    enough = counts[user] >= 3
    part = np.where(enough & (from_end == 0), 2, np.where(enough & (from_end == 1), 1, 0))
    return _parts(data, part, "leave-one-out by time")


def item_popularity(train: Interactions, n_items: int) -> torch.Tensor:
    """Training interactions per item (float), on the device of ``train``."""
    train.check(1 + int(train.user.max()) if len(train) else 1, n_items, "train")
    return torch.bincount(train.item, minlength=n_items).to(torch.float32)
