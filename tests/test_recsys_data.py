"""advlib.recsys data: implicit feedback from MovieLens-100K and the two splits (chapter 5)."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from advlib import recsys as rs
from advlib.data import load_movielens_100k


@pytest.fixture(scope="module")
def ml():
    return load_movielens_100k()


@pytest.fixture(scope="module")
def data(ml):
    return rs.implicit_from_movielens(ml)


def toy(n_users=12, per_user=10, n_items=30, seed=0) -> rs.ImplicitData:
    g = torch.Generator().manual_seed(seed)
    users = torch.arange(n_users).repeat_interleave(per_user)
    items = torch.cat([torch.randperm(n_items, generator=g)[:per_user] for _ in range(n_users)])
    stamp = torch.randint(0, 10**6, (len(users),), generator=g)
    return rs.ImplicitData(rs.Interactions(users, items), stamp, n_users, n_items,
                           np.arange(n_users), np.arange(n_items), [str(i) for i in range(n_items)])


def keys(inter: rs.Interactions, n_items: int) -> set:
    return set(inter.keys(n_items).tolist())


def test_every_rating_is_one_interaction_with_contiguous_indices(ml, data):
    assert (len(data.interactions), data.n_users, data.n_items) == (100_000, 943, 1_682)
    assert data.interactions.user.unique().tolist() == list(range(943))
    assert data.interactions.item.unique().tolist() == list(range(1_682))
    # back to the original ids: the same set of (user, item) pairs as the ratings table
    back = set(zip(data.user_ids[data.interactions.user.numpy()].tolist(),
                   data.item_ids[data.interactions.item.numpy()].tolist()))
    assert back == set(zip(ml.ratings["user_id"], ml.ratings["item_id"]))
    titles = dict(zip(ml.items["item_id"], ml.items["title"]))
    assert all(data.titles[i] == titles[data.item_ids[i]] for i in (0, 49, 1_681))
    assert "Star Wars" in data.titles[int(np.flatnonzero(data.item_ids == 50)[0])]


def test_random_split_is_disjoint_complete_and_per_user_80_10_10(data):
    split = rs.random_split(data, seed=0)
    parts = [keys(p, data.n_items) for p in (split.train, split.valid, split.test)]
    assert sum(map(len, parts)) == len(data.interactions) == len(set.union(*parts))
    assert not (parts[0] & parts[1] or parts[0] & parts[2] or parts[1] & parts[2])
    counts = torch.bincount(data.interactions.user, minlength=data.n_users)
    for part, ratio in ((split.valid, 0.1), (split.test, 0.1)):
        per_user = torch.bincount(part.user, minlength=data.n_users)
        assert torch.equal(per_user, torch.floor(ratio * counts.double()).long())
        assert (per_user >= 2).all()  # every ML-100K user has >= 20 ratings
    assert abs(len(split.train) / len(data.interactions) - 0.8) < 0.02
    again, other = rs.random_split(data, seed=0), rs.random_split(data, seed=1)
    assert torch.equal(again.test.item, split.test.item)
    assert keys(other.test, data.n_items) != parts[2]


def test_small_users_get_one_validation_and_test_item_like_recbole():
    data = toy(n_users=5, per_user=4)  # 0.1 * 4 < 1: RecBole still moves one item each
    split = rs.random_split(data)
    for part in (split.valid, split.test):
        assert torch.bincount(part.user, minlength=5).tolist() == [1] * 5
    assert torch.bincount(split.train.user, minlength=5).tolist() == [2] * 5


def test_leave_one_out_keeps_the_latest_interaction_for_test(data):
    split = rs.leave_one_out_split(data)
    assert len(split.test) == len(split.valid) == data.n_users
    parts = [keys(p, data.n_items) for p in (split.train, split.valid, split.test)]
    assert sum(map(len, parts)) == len(set.union(*parts)) == len(data.interactions)
    key = data.interactions.keys(data.n_items)
    stamp_of = dict(zip(key.tolist(), data.timestamp.tolist()))
    for u in (0, 100, 942):
        def stamps(part):
            return [stamp_of[k] for k in part.keys(data.n_items)[part.user == u].tolist()]
        assert min(stamps(split.test)) >= max(stamps(split.valid)) >= max(stamps(split.train))


def test_bad_input_raises_clear_errors():
    data = toy()
    with pytest.raises(ValueError, match="ratios"):
        rs.random_split(data, ratios=(0.8, 0.3, 0.1))
    with pytest.raises(ValueError, match="ratios"):
        rs.random_split(data, ratios=(0.9, 0.1))
    with pytest.raises(ValueError, match="empty"):
        rs.random_split(toy(per_user=1))  # one interaction per user: nothing to validate on
    with pytest.raises(ValueError, match="empty"):
        rs.leave_one_out_split(toy(per_user=2))
    empty = rs.ImplicitData(rs.Interactions(torch.zeros(0, dtype=torch.long),
                                            torch.zeros(0, dtype=torch.long)),
                            torch.zeros(0, dtype=torch.long), 3, 3, np.arange(3), np.arange(3), [])
    with pytest.raises(ValueError, match="no interactions"):
        rs.random_split(empty)
    with pytest.raises(ValueError, match="integer"):
        rs.Interactions(torch.tensor([0.0]), torch.tensor([1.0]))
    with pytest.raises(ValueError, match="same length"):
        rs.Interactions(torch.tensor([0, 1]), torch.tensor([1]))
    with pytest.raises(ValueError, match=r"item indices must lie in \[0, 30\)"):
        rs.Interactions(torch.tensor([0]), torch.tensor([30])).check(12, 30)
    with pytest.raises(ValueError, match="user indices"):
        rs.Interactions(torch.tensor([-1]), torch.tensor([0])).check(12, 30)
    with pytest.raises(ValueError, match="must be 'ml-100k' or 'ml-1m'"):
        rs.load_implicit("ml-20m")


def test_concat_appends_pairs_in_order():
    a = rs.Interactions(torch.tensor([0, 1]), torch.tensor([2, 3]))
    b = rs.Interactions(torch.tensor([5]), torch.tensor([0]))
    both = rs.Interactions.concat(a, b)
    assert both.user.tolist() == [0, 1, 5] and both.item.tolist() == [2, 3, 0]
    with pytest.raises(ValueError):
        rs.Interactions.concat()
