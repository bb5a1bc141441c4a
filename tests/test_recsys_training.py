"""advlib.recsys training: the negative sampler, BPR, APR's perturbation, early stopping, bad
input, and the chapter 5 exercise checks."""
from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st

from advlib import recsys as rs
from advlib.recsys import checks


def planted(n_users=60, n_items=45, groups=3, share=0.6, seed=0) -> rs.Split:
    """Users and items in groups; each user interacts with a random share of its group's items.
    Split at random 80/10/10: a model that finds the groups ranks well."""
    g = torch.Generator().manual_seed(seed)
    size = n_items // groups
    users, items = [], []
    for u in range(n_users):
        group = u % groups
        chosen = torch.randperm(size, generator=g)[:int(share * size)] + group * size
        users += [u] * len(chosen)
        items += chosen.tolist()
    inter = rs.Interactions(torch.tensor(users), torch.tensor(items))
    import numpy as np
    data = rs.ImplicitData(inter, torch.arange(len(users)), n_users, n_items,
                           np.arange(n_users), np.arange(n_items), [""] * n_items)
    return rs.random_split(data, seed=seed)


@st.composite
def pair_sets(draw):
    n_users = draw(st.integers(1, 8))
    n_items = draw(st.integers(2, 12))
    pairs = draw(st.sets(st.tuples(st.integers(0, n_users - 1), st.integers(0, n_items - 1)),
                         max_size=n_users * n_items))
    # leave every user at least one negative
    full = [u for u in range(n_users) if sum(1 for p in pairs if p[0] == u) == n_items]
    pairs = {p for p in pairs if not (p[0] in full and p[1] == 0)}
    return n_users, n_items, sorted(pairs)


def as_inter(pairs) -> rs.Interactions:
    return rs.Interactions(torch.tensor([u for u, _ in pairs], dtype=torch.long),
                           torch.tensor([i for _, i in pairs], dtype=torch.long))


@settings(max_examples=60, deadline=None)
@given(case=pair_sets(), seed=st.integers(0, 2**31 - 1))
def test_sampler_never_returns_a_training_positive(case, seed):
    n_users, n_items, pairs = case
    positives = rs.PairSet(as_inter(pairs), n_users, n_items)
    user = torch.randint(0, n_users, (500,), generator=torch.Generator().manual_seed(seed))
    neg = rs.sample_negatives(user, positives, torch.Generator().manual_seed(seed))
    assert neg.shape == user.shape and neg.dtype == torch.int64
    assert ((neg >= 0) & (neg < n_items)).all()
    known = set(pairs)
    assert not any((u, i) in known for u, i in zip(user.tolist(), neg.tolist()))
    # membership agrees with a Python set
    probe_u = torch.arange(n_users).repeat_interleave(n_items)
    probe_i = torch.arange(n_items).repeat(n_users)
    got = positives.contains(probe_u, probe_i).tolist()
    assert got == [(u, i) in known for u, i in zip(probe_u.tolist(), probe_i.tolist())]


def test_sampler_is_uniform_over_a_users_negatives_and_reproducible():
    pairs = [(0, i) for i in range(0, 20, 2)]  # user 0 has the even items of 20
    positives = rs.PairSet(as_inter(pairs), 1, 20)
    user = torch.zeros(50_000, dtype=torch.long)
    neg = rs.sample_negatives(user, positives, torch.Generator().manual_seed(0))
    counts = torch.bincount(neg, minlength=20)
    assert counts[0::2].sum() == 0
    expected = 50_000 / 10
    chi2 = ((counts[1::2] - expected) ** 2 / expected).sum().item()
    assert chi2 < 30  # 9 degrees of freedom: p < 1e-3 above ~27.9
    again = rs.sample_negatives(user, positives, torch.Generator().manual_seed(0))
    assert torch.equal(neg, again)


def test_sampler_bad_input():
    positives = rs.PairSet(as_inter([(0, 0), (0, 1), (1, 0)]), 2, 2)
    with pytest.raises(ValueError, match="every item"):
        rs.sample_negatives(torch.tensor([0]), positives)
    with pytest.raises(ValueError, match=r"user indices must lie in \[0, 2\)"):
        rs.sample_negatives(torch.tensor([2]), positives)
    with pytest.raises(ValueError, match="1-D"):
        rs.sample_negatives(torch.tensor([[1]]), positives)
    with pytest.raises(ValueError, match="item indices"):
        rs.PairSet(as_inter([(0, 5)]), 2, 2)


def test_bpr_loss_by_hand():
    P = torch.tensor([[1.0, 0.0]])
    Q = torch.tensor([[2.0, 0.0], [0.5, 1.0]])
    # x_u0 = 2, x_u1 = 0.5: loss = softplus(0.5 - 2)
    got = rs.bpr_loss(P, Q, torch.tensor([0]), torch.tensor([0]), torch.tensor([1]))
    assert got.item() == pytest.approx(math.log1p(math.exp(-1.5)))


@pytest.mark.parametrize("eps", [0.0, 0.3, 2.0])
def test_apr_delta_has_norm_eps_per_row(eps):
    g = torch.randn(50, 8, generator=torch.Generator().manual_seed(1)) * torch.rand(50, 1)
    g[7] = 0
    delta = rs.apr_delta(g, eps)
    norms = delta.norm(dim=1)
    assert norms[7] == 0 and torch.isfinite(delta).all()
    rows = torch.arange(50) != 7
    assert torch.allclose(norms[rows], torch.full((49,), eps), atol=1e-5)
    if eps:
        assert torch.allclose(F.cosine_similarity(delta[rows], g[rows]), torch.ones(49), atol=1e-5)


def test_apr_perturbation_is_per_touched_row_and_raises_the_loss_more_than_noise():
    gen = torch.Generator().manual_seed(0)
    P, Q = torch.randn(10, 4, generator=gen), torch.randn(12, 4, generator=gen)
    u, i, j = torch.tensor([0, 0, 3]), torch.tensor([1, 2, 2]), torch.tensor([5, 6, 7])
    dp, dq = rs.apr_perturbation(P, Q, u, i, j, 0.5)
    assert torch.allclose(dp.norm(dim=1)[[0, 3]], torch.tensor([0.5, 0.5]))
    assert dp[[1, 2, 4, 5, 6, 7, 8, 9]].abs().sum() == 0
    assert torch.allclose(dq.norm(dim=1)[[1, 2, 5, 6, 7]], torch.full((5,), 0.5))
    assert dq[[0, 3, 4, 8, 9, 10, 11]].abs().sum() == 0
    clean = rs.bpr_loss(P, Q, u, i, j)
    worst = rs.bpr_loss(P + dp, Q + dq, u, i, j)
    for seed in range(20):
        rp = rs.apr_delta(torch.randn(10, 4, generator=torch.Generator().manual_seed(seed)) * (dp != 0), 0.5)
        rq = rs.apr_delta(torch.randn(12, 4, generator=torch.Generator().manual_seed(seed + 99)) * (dq != 0), 0.5)
        assert worst > rs.bpr_loss(P + rp, Q + rq, u, i, j)
    assert worst > clean


@pytest.mark.parametrize("eps", [-0.1, float("nan"), float("inf"), True, "0.5"])
def test_negative_or_invalid_eps_raises(eps):
    with pytest.raises(ValueError, match="eps"):
        rs.apr_delta(torch.ones(2, 2), eps)


def test_bpr_learns_the_groups_and_early_stopping_keeps_the_best_validation_epoch():
    split = planted()
    valid, test = rs.ranking_task(split, "valid"), rs.ranking_task(split, "test")
    result = rs.train_bpr(split.train, split.n_users, split.n_items, dim=8, epochs=40,
                          batch_size=128, lr=0.03, weight_decay=0.0, init_std=0.1, valid=valid,
                          eval_every=2, patience=3, watch=test, seed=0)
    history = result.history
    assert history[0]["epoch"] == 0 and all("watch" in h for h in history)
    best = max(history, key=lambda h: h["valid"])
    assert result.best_epoch == best["epoch"] and result.best_valid == best["valid"]
    # the returned model is the one of the best epoch, not the last
    assert rs.evaluate(result.model, valid)["ndcg"] == pytest.approx(result.best_valid)
    assert rs.evaluate(result.model, test)["ndcg"] == pytest.approx(
        next(h["watch"] for h in history if h["epoch"] == result.best_epoch))
    # it learned the groups, and stopped `patience` evaluations after the best one at the latest
    assert result.best_valid > 2 * history[0]["valid"]
    assert result.epochs_run - result.best_epoch <= 3 * 2
    pop = rs.evaluate(rs.Popularity(split.train, split.n_items), test)["ndcg"]
    assert rs.evaluate(result.model, test)["ndcg"] > pop


def test_training_is_deterministic_and_apr_continues_from_a_copy():
    split = planted()
    kw = dict(dim=8, epochs=5, batch_size=64, lr=0.02, init_std=0.1, seed=3)
    a = rs.train_bpr(split.train, split.n_users, split.n_items, **kw)
    b = rs.train_bpr(split.train, split.n_users, split.n_items, **kw)
    assert torch.equal(a.model.user, b.model.user) and a.best_epoch == a.epochs_run == 5
    before = a.model.user.detach().clone()
    apr = rs.train_apr(a.model, split.train, split.n_users, split.n_items, epochs=3, batch_size=64,
                       lr=0.02)
    assert torch.equal(a.model.user, before)  # the BPR model itself is untouched
    assert not torch.equal(apr.model.user, before)
    assert apr.seconds_per_epoch() > 0


def test_training_on_appended_fake_users():
    split = planted()
    fake = rs.Interactions(torch.full((5,), split.n_users), torch.arange(5))
    poisoned = rs.Interactions.concat(split.train, fake)
    result = rs.train_bpr(poisoned, split.n_users + 1, split.n_items, dim=4, epochs=2,
                          batch_size=64, valid=rs.ranking_task(split, "valid", train=poisoned))
    assert result.model.n_users == split.n_users + 1


def test_training_bad_input():
    split = planted()
    n_u, n_i = split.n_users, split.n_items
    with pytest.raises(ValueError, match="eps"):
        rs.train_apr(None, split.train, n_u, n_i, eps=-0.5)
    with pytest.raises(ValueError, match="empty"):
        rs.train_bpr(rs.Interactions(torch.tensor([], dtype=torch.long),
                                     torch.tensor([], dtype=torch.long)), n_u, n_i)
    with pytest.raises(ValueError, match="item indices"):
        rs.train_bpr(rs.Interactions(torch.tensor([0]), torch.tensor([n_i])), n_u, n_i)
    with pytest.raises(ValueError, match="the model has"):
        rs.train_apr(rs.MF(n_u + 1, n_i), split.train, n_u, n_i)
    with pytest.raises(ValueError, match="epochs"):
        rs.train_bpr(split.train, n_u, n_i, epochs=0)
    with pytest.raises(ValueError, match="lr"):
        rs.train_bpr(split.train, n_u, n_i, lr=-1.0)
    with pytest.raises(ValueError, match="n_users"):
        rs.MF(0, 3)


# --- the exercise checks accept right answers and reject wrong ones -------------------------


def _ndcg_ideal_over_all_targets(hits, n_targets, k):
    discount = 1 / torch.log2(torch.arange(2, k + 2, dtype=torch.float64))
    dcg = (hits.double() * discount).sum(1)
    ideal = torch.stack([(1 / torch.log2(torch.arange(2, int(n) + 2, dtype=torch.float64))).sum()
                         for n in n_targets])
    return torch.where(ideal > 0, dcg / ideal.clamp(min=1e-12), torch.zeros_like(dcg))


def _sampler(user, keys, n_items, generator):
    neg = torch.randint(n_items, user.shape, generator=generator)
    while True:
        bad = torch.isin(user * n_items + neg, keys)
        if not bad.any():
            return neg
        neg[bad] = torch.randint(n_items, (int(bad.sum()),), generator=generator)


def _random_rows(n, dim, eps, generator):
    x = torch.randn(n, dim, generator=generator)
    return eps * x / x.norm(dim=1, keepdim=True)


def _stub(*args):
    raise NotImplementedError("Exercise 5.x: not done")


@pytest.mark.parametrize("checker, right, wrongs", [
    (checks.check_ndcg, rs.ndcg_at_k,
     [_ndcg_ideal_over_all_targets, lambda h, n, k: h.double().mean(1)]),
    (checks.check_negative_sampler, _sampler,
     [lambda u, keys, n, g: torch.randint(n, u.shape, generator=g),
      lambda u, keys, n, g: torch.full_like(u, n - 1)]),
    (checks.check_apr_delta, rs.apr_delta,
     [lambda g, eps: eps * g / g.norm().clamp(min=1e-12),
      lambda g, eps: eps * torch.sign(g)]),
    (checks.check_random_delta, _random_rows,
     [lambda n, d, eps, g: eps * torch.sign(torch.randn(n, d, generator=g)) / d ** 0.5,
      lambda n, d, eps, g: _random_rows(n, d, eps, torch.Generator().manual_seed(0)),
      lambda n, d, eps, g: eps * F.normalize(torch.rand(n, d, generator=g), dim=1)]),
    (checks.check_sampled_rank, lambda pos, neg: (neg >= pos[:, None]).sum(1),
     [lambda pos, neg: (neg > pos[:, None]).sum(1), lambda pos, neg: (neg <= pos[:, None]).sum(1)]),
])
def test_exercise_checks(checker, right, wrongs, capsys):
    assert checker(right) is True
    assert "✓" in capsys.readouterr().out
    for wrong in wrongs:
        assert checker(wrong) is False
        assert "✗" in capsys.readouterr().out
    assert checker(_stub) is False
    assert "not done yet" in capsys.readouterr().out


def test_training_uses_one_cpu_thread_and_restores_the_setting():
    from advlib.recsys._threads import cpu_threads

    before = torch.get_num_threads()
    seen = []
    with cpu_threads(1):
        seen.append(torch.get_num_threads())
    assert seen == [1] and torch.get_num_threads() == before
    with pytest.raises(ValueError, match="threads"):
        with cpu_threads(0):
            pass
    split = planted()
    rs.train_bpr(split.train, split.n_users, split.n_items, dim=4, epochs=1, batch_size=64)
    assert torch.get_num_threads() == before
