"""advlib.recsys metrics: full ranking against hand-computed values, exclusion of seen items,
and sampled ranking (chapter 5)."""
from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from advlib import recsys as rs

LOG3, LOG5 = math.log2(3), math.log2(5)


def I(users, items) -> rs.Interactions:  # noqa: E743 - a short constructor for the tables below
    return rs.Interactions(torch.tensor(users, dtype=torch.long), torch.tensor(items, dtype=torch.long))


def hand_split() -> rs.Split:
    """Two users, six items.
    user 0: trained on items 0, 1; validation item 2; test items 3 and 5.
    user 1: trained on item 0;    validation item 4; test item 1."""
    return rs.Split(train=I([0, 0, 1], [0, 1, 0]), valid=I([0, 1], [2, 4]),
                    test=I([0, 0, 1], [3, 5, 1]), n_users=2, n_items=6, protocol="hand")


# Scores: each user's list after removing seen items is fixed by hand below.
SCORES = torch.tensor([
    # items: 0    1    2    3    4    5
    [9.0, 8.0, 7.0, 1.0, 6.0, 5.0],  # user 0: ranks (train 0,1 and valid 2 removed): 4, 5, 3
    [9.0, 2.0, 1.0, 3.0, 8.0, 4.0],  # user 1: ranks (train 0 and valid 4 removed): 5, 3, 1, 2
])


def test_ndcg_at_k_hand_computed():
    hits = torch.tensor([[1, 0, 0], [0, 1, 0], [1, 0, 1], [0, 0, 0]], dtype=torch.bool)
    n_targets = torch.tensor([1, 1, 5, 2])
    want = [1.0, 1 / LOG3, (1 + 0.5) / (1 + 1 / LOG3 + 0.5), 0.0]  # ideal over min(5, 3) = 3
    assert rs.ndcg_at_k(hits, n_targets, 3).tolist() == pytest.approx(want)
    with pytest.raises(ValueError):
        rs.ndcg_at_k(hits, n_targets, 4)


def test_full_ranking_metrics_hand_computed():
    split = hand_split()
    test = rs.ranking_task(split, "test")
    # user 0 after exclusion: item 4 (6.0), item 5 (5.0), item 3 (1.0); targets 3 and 5
    # user 1 after exclusion: item 5 (4.0), item 3 (3.0), item 1 (2.0), item 2 (1.0); target 1
    k2 = rs.evaluate(SCORES, test, k=2)
    # user 0: top 2 = [4, 5] -> one hit at rank 2; user 1: top 2 = [5, 3] -> none
    assert k2["recall"] == pytest.approx((1 / 2 + 0) / 2)
    assert k2["ndcg"] == pytest.approx(((1 / LOG3) / (1 + 1 / LOG3) + 0) / 2)
    assert k2["hit"] == pytest.approx(0.5)
    assert k2["mrr"] == pytest.approx((1 / 2 + 0) / 2)
    assert k2["coverage"] == pytest.approx(3 / 6)  # items 3, 4, 5 shown
    popularity = torch.bincount(split.train.item, minlength=6).float()  # [2, 1, 0, 0, 0, 0]
    assert k2["popularity"] == pytest.approx(0.0)
    k3 = rs.evaluate(SCORES, test, k=3)
    # user 0: [4, 5, 3]: hits at 2, 3 -> dcg 1/log2(3) + 1/2, ideal 1 + 1/log2(3);
    # user 1: [5, 3, 1]: hit at 3 -> dcg 1/2, ideal 1
    assert k3["ndcg"] == pytest.approx(((1 / LOG3 + 0.5) / (1 + 1 / LOG3) + 0.5) / 2)
    assert k3["recall"] == pytest.approx((1 + 1) / 2)
    assert k3["mrr"] == pytest.approx((1 / 2 + 1 / 3) / 2)
    assert k3["popularity"] == pytest.approx((0 + (popularity[1] / 3).item()) / 2)


def test_evaluation_excludes_seen_items():
    split = hand_split()
    # A model that puts every training and validation item first: without exclusion it would
    # fill the top 3 of user 0 with items 0, 1, 2 and score nothing.
    scores = torch.tensor([[10.0, 9.0, 8.0, 7.0, 0.0, 6.0], [10.0, 5.0, 0.0, 0.0, 9.0, 0.0]])
    test = rs.ranking_task(split, "test")
    assert test.exclude[0].nonzero().flatten().tolist() == [0, 1, 2]  # train + valid
    assert rs.evaluate(scores, test, k=2)["recall"] == pytest.approx(1.0)
    valid = rs.ranking_task(split, "valid")
    assert valid.exclude[0].nonzero().flatten().tolist() == [0, 1]  # train only
    assert valid.targets[0].nonzero().flatten().tolist() == [2]
    # validation: user 0 sees item 2 first, user 1 item 4 (its validation item, hidden at test)
    assert rs.evaluate(scores, valid, k=1)["hit"] == pytest.approx(1.0)
    assert rs.evaluate(scores, test, k=1)["mrr"] == pytest.approx(1.0)  # 3 and 1 come first


def test_fake_users_in_training_are_excluded_from_ranking_but_count_for_popularity():
    split = hand_split()
    poisoned = rs.Interactions.concat(split.train, I([2, 2, 3], [5, 5, 5]))
    task = rs.ranking_task(split, "test", train=poisoned)
    assert task.users.tolist() == [0, 1]
    assert task.popularity[5] == 3


def test_bad_ranking_input():
    split = hand_split()
    with pytest.raises(ValueError, match="part"):
        rs.ranking_task(split, "train")
    leaky = rs.Split(split.train, split.valid, I([0], [0]), 2, 6, "leaky")
    with pytest.raises(ValueError, match="excluded"):
        rs.ranking_task(leaky, "test")
    empty = rs.Split(split.train, split.valid, I([], []), 2, 6, "empty")
    with pytest.raises(ValueError, match="empty"):
        rs.ranking_task(empty, "test")
    out = rs.Split(split.train, split.valid, I([0], [6]), 2, 6, "out of range")
    with pytest.raises(ValueError, match="item indices"):
        rs.ranking_task(out, "test")
    with pytest.raises(ValueError, match="k must be"):
        rs.evaluate(SCORES, rs.ranking_task(split, "test"), k=7)
    with pytest.raises(ValueError, match="shape"):
        rs.evaluate(SCORES[:, :5], rs.ranking_task(split, "test"))


def test_sampled_metrics_hand_computed():
    # one test pair per user; user 0 never saw items 2..5, user 1 never saw items 2..5
    test = I([0, 1], [1, 0])
    seen = I([0, 0, 1, 1], [0, 1, 0, 1])
    scores = torch.tensor([[0.0, 5.0, 1.0, 1.0, 1.0, 1.0],   # test item above every negative
                           [0.0, 0.0, 1.0, 1.0, 1.0, 1.0]])  # below every negative
    out = rs.sampled_evaluate(scores, test, seen, 2, 6, n_negatives=3, k=2)
    assert out["hit"] == pytest.approx(0.5)
    assert out["ndcg"] == pytest.approx(0.5)
    assert out["mrr"] == pytest.approx((1 + 1 / 4) / 2)
    with pytest.raises(ValueError, match="include the test pairs"):
        rs.sampled_evaluate(scores, test, I([0], [0]), 2, 6)
    with pytest.raises(ValueError, match="n_negatives"):
        rs.sampled_evaluate(scores, test, seen, 2, 6, n_negatives=0)


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 10_000))
def test_sampled_hit_rate_is_never_below_full_ranking(seed):
    """The sampled negatives are a subset of the items full ranking competes with, so a test item
    can only rank higher among them: sampled HR@k >= full HR@k, user by user."""
    g = torch.Generator().manual_seed(seed)
    n_users, n_items = 20, 60
    items = torch.stack([torch.randperm(n_items, generator=g)[:8] for _ in range(n_users)])
    users = torch.arange(n_users).repeat_interleave(8)
    flat = items.flatten()
    is_test = torch.arange(len(flat)) % 8 == 0
    is_valid = torch.arange(len(flat)) % 8 == 1
    split = rs.Split(rs.Interactions(users[~is_test & ~is_valid], flat[~is_test & ~is_valid]),
                     rs.Interactions(users[is_valid], flat[is_valid]),
                     rs.Interactions(users[is_test], flat[is_test]), n_users, n_items, "toy")
    scores = torch.randn(n_users, n_items, generator=g)
    seen = rs.Interactions(users, flat)
    full = rs.evaluate(scores, rs.ranking_task(split, "test"), k=5)
    sampled = rs.sampled_evaluate(scores, split.test, seen, n_users, n_items, n_negatives=20,
                                  k=5, seed=seed)
    assert sampled["hit"] >= full["hit"] - 1e-12
