"""advlib.recsys.poisoning (chapter 6): fake-user injection, the targets' metrics, detection, and
the exercise checks. Small synthetic data: fast, no download."""
from __future__ import annotations

import math

import pytest
import torch

from advlib import recsys as rs
from advlib.recsys import poisoning as po

N_USERS, N_ITEMS = 40, 80


@pytest.fixture(scope="module")
def train():
    g = torch.Generator().manual_seed(0)
    users, items = [], []
    for u in range(N_USERS):
        size = 5 + int(torch.randint(0, 15, (1,), generator=g))
        # popular items (low ids) are more likely
        weights = 1.0 / (torch.arange(N_ITEMS, dtype=torch.float64) + 5)
        chosen = torch.multinomial(weights, size, replacement=False, generator=g)
        users += [u] * size
        items += chosen.tolist()
    return rs.Interactions(torch.tensor(users), torch.tensor(items))


@pytest.fixture(scope="module")
def model(train):
    return rs.train_bpr(train, N_USERS, N_ITEMS, dim=8, epochs=5, batch_size=64, seed=0).model


def profiles(fake):
    out = {}
    for u, i in zip(fake.user.tolist(), fake.item.tolist()):
        out.setdefault(u, []).append(i)
    return out


@pytest.mark.parametrize("attack", po.ATTACKS)
@pytest.mark.parametrize("fraction", [0.05, 0.1, 0.25])
def test_inject_exact_count_filler_targets_and_new_ids(train, model, attack, fraction):
    targets, filler = [70, 75, 3], 6
    before_user, before_item = train.user.clone(), train.item.clone()
    p = po.inject(train, N_USERS, N_ITEMS, targets, fraction, attack, filler_size=filler,
                  seed=1, model=model)
    n_fake = round(fraction * N_USERS)
    assert p.n_fake == n_fake and p.n_total == N_USERS + n_fake
    assert len(p.fake) == n_fake * (filler + len(targets))
    by_user = profiles(p.fake)
    assert sorted(by_user) == list(range(N_USERS, N_USERS + n_fake))  # appended ids
    for items in by_user.values():
        assert len(items) == len(set(items)) == filler + len(targets)
        assert set(targets) <= set(items)
        assert all(0 <= i < N_ITEMS for i in items)
    # the real data are untouched and come first
    assert torch.equal(train.user, before_user) and torch.equal(train.item, before_item)
    assert torch.equal(p.train.user[:len(train)], train.user)
    assert torch.equal(p.train.item[:len(train)], train.item)
    assert p.is_fake.sum() == n_fake and not p.is_fake[:N_USERS].any()


@pytest.mark.parametrize("attack", po.ATTACKS)
def test_deterministic_with_a_seed(train, model, attack):
    a = po.inject(train, N_USERS, N_ITEMS, [70, 71], 0.2, attack, filler_size=5, seed=3, model=model)
    b = po.inject(train, N_USERS, N_ITEMS, [70, 71], 0.2, attack, filler_size=5, seed=3, model=model)
    assert torch.equal(a.fake.item, b.fake.item) and torch.equal(a.fake.user, b.fake.user)
    if attack != "bandwagon":  # bandwagon's popular half is the same for every seed by design
        c = po.inject(train, N_USERS, N_ITEMS, [70, 71], 0.2, attack, filler_size=5, seed=4,
                      model=model)
        assert not torch.equal(a.fake.item, c.fake.item)


def test_bandwagon_carries_the_most_popular_items(train):
    pop = rs.item_popularity(train, N_ITEMS)
    fake = po.bandwagon_attack(10, N_USERS, N_ITEMS, [79], 6, pop, seed=0)
    top3 = set(torch.argsort(pop, descending=True, stable=True)[:3].tolist())
    for items in profiles(fake).values():
        assert top3 <= set(items)


def test_average_fillers_follow_popularity(train):
    pop = rs.item_popularity(train, N_ITEMS)
    avg = po.average_attack(200, N_USERS, N_ITEMS, [79], 5, pop, seed=0)
    rnd = po.random_attack(200, N_USERS, N_ITEMS, [79], 5, seed=0)
    fill_avg = avg.item[avg.item != 79]
    fill_rnd = rnd.item[rnd.item != 79]
    assert pop[fill_avg].mean() > 1.5 * pop[fill_rnd].mean()
    assert (pop[fill_avg] > 0).all()  # never an item nobody has


def test_gradient_attack_raises_its_own_surrogate_objective(train, model):
    """The ascent steps must improve what they optimise: more steps, higher objective (at the
    relaxed start vs after the projection the victim is retrained, so test the filler choice
    differs from its start and the targets are kept)."""
    targets = [70, 75]
    start = po.gradient_attack(8, N_USERS, N_ITEMS, targets, 6, model, train, seed=0, steps=0)
    moved = po.gradient_attack(8, N_USERS, N_ITEMS, targets, 6, model, train, seed=0, steps=20)
    assert len(start) == len(moved) == 8 * 8
    assert not torch.equal(start.item, moved.item)


def test_n_fake_users_rounds():
    assert po.n_fake_users(0.01, 943) == 9 and po.n_fake_users(0.05, 943) == 47
    assert po.n_fake_users(0.0, 943) == 0


def test_bad_input_is_rejected(train, model):
    with pytest.raises(ValueError, match="fraction"):
        po.inject(train, N_USERS, N_ITEMS, [1], -0.01, "random")
    with pytest.raises(ValueError, match="fraction"):
        po.n_fake_users(float("nan"), 10)
    with pytest.raises(ValueError, match="unknown attack"):
        po.inject(train, N_USERS, N_ITEMS, [1], 0.1, "sybil")
    with pytest.raises(ValueError, match="target"):
        po.inject(train, N_USERS, N_ITEMS, [N_ITEMS], 0.1, "random")
    with pytest.raises(ValueError, match="target"):
        po.inject(train, N_USERS, N_ITEMS, [-1], 0.1, "random")
    with pytest.raises(ValueError, match="distinct"):
        po.random_attack(3, N_USERS, N_ITEMS, [2, 2], 4)
    with pytest.raises(ValueError, match="filler_size"):
        po.random_attack(3, N_USERS, N_ITEMS, [2], N_ITEMS)
    with pytest.raises(ValueError, match="model"):
        po.inject(train, N_USERS, N_ITEMS, [1], 0.1, "gradient")
    with pytest.raises(ValueError, match="fpr"):
        po.detect({"size": torch.ones(3)}, fpr=0)
    with pytest.raises(ValueError):
        po.precision_recall(torch.tensor([True]), torch.tensor([True, False]))


def test_target_ranks_and_hit_rates_by_hand():
    # two users, five items; target = item 2
    scores = torch.tensor([[0.9, 0.1, 0.5, 0.7, 0.2],
                           [0.3, 0.8, 0.6, 0.9, 0.95]])
    exclude = torch.tensor([[False, False, False, True, False],
                            [True, False, False, False, False]])
    ranks = po.target_ranks(scores, exclude, [2, 0])
    # user 0: item 0 (0.9) above item 2; item 3 (0.7) excluded -> rank 2.
    # user 1: items 1, 3, 4 above 0.6 -> rank 4.  Target 0: user 0 rank 1; user 1 excluded -> NaN
    assert ranks[0].tolist() == [2.0, 1.0]
    assert ranks[1, 0].item() == 4.0 and math.isnan(ranks[1, 1].item())


def test_target_metrics_by_hand():
    class Fixed:
        def __init__(self, s):
            self.s = s
            self.user = torch.zeros(1)

        def scores(self, users):
            return self.s[users]

    train = rs.Interactions(torch.tensor([0, 1]), torch.tensor([3, 0]))
    before = Fixed(torch.tensor([[0.9, 0.1, 0.5, 0.7, 0.2], [0.3, 0.8, 0.6, 0.9, 0.95]]))
    after = Fixed(torch.tensor([[0.9, 0.1, 1.0, 0.7, 0.2], [0.3, 0.8, 0.85, 0.9, 0.95]]))
    m = po.target_metrics(after, train, 2, 5, [2], ks=(1, 3), baseline=before)
    # ranks after: user 0 -> 1 (item 3 excluded), user 1 -> 4 (0.9, 0.95, 0.8? no: 0.85 > 0.8)
    # user 1: items above 0.85 among non-excluded {1, 2, 3, 4}: 3 (0.9), 4 (0.95) -> rank 3
    assert m["mean_rank"] == pytest.approx((1 + 3) / 2)
    assert m["hr@1"] == pytest.approx(0.5) and m["hr@3"] == pytest.approx(1.0)
    assert m["shift"] == pytest.approx(((1.0 - 0.5) + (0.85 - 0.6)) / 2)


def test_profile_features_by_hand():
    train = rs.Interactions(torch.tensor([0, 0, 1, 1, 1, 2]), torch.tensor([0, 1, 0, 2, 3, 0]))
    f = po.profile_features(train, 3, 4, k=1)
    assert f["size"].tolist() == [2, 3, 1]
    assert torch.allclose(f["mean_popularity"], torch.tensor([2.0, 5 / 3, 3.0]))
    # cosine: u0·u1 = 1/sqrt(6), u0·u2 = 1/sqrt(2), u1·u2 = 1/sqrt(3)
    want = torch.tensor([1 / math.sqrt(2), 1 / math.sqrt(3), 1 / math.sqrt(2)])
    assert torch.allclose(f["similarity"], want, atol=1e-6)


def test_detect_and_precision_recall_by_hand():
    x = torch.tensor([1.0, 2, 3, 4, 5, 6, 7, 8, 9, 10, 100, -50])
    reference = torch.tensor([True] * 10 + [False, False])
    found = po.detect({"x": x}, reference=reference, fpr=0.2)
    low, high = found["ranges"]["x"]
    assert low == pytest.approx(torch.quantile(x[:10], 0.1).item())
    assert high == pytest.approx(torch.quantile(x[:10], 0.9).item())
    # outside [1.9, 9.1]: 1, 10, 100, -50
    assert found["flagged"].tolist() == [True] + [False] * 8 + [True, True, True]
    precision, recall = po.precision_recall(found["flagged"], ~reference)
    assert precision == pytest.approx(2 / 4) and recall == pytest.approx(1.0)
    assert po.precision_recall(torch.zeros(3, dtype=torch.bool), torch.tensor([True, False, False])) \
        == (0.0, 0.0)


def test_remove_users_keeps_the_ids():
    train = rs.Interactions(torch.tensor([0, 1, 1, 2]), torch.tensor([4, 5, 6, 7]))
    kept = po.remove_users(train, torch.tensor([False, True, False]))
    assert kept.user.tolist() == [0, 2] and kept.item.tolist() == [4, 7]


def test_choose_targets_is_reproducible_and_in_its_groups(train):
    a = po.choose_targets(train, N_ITEMS, 2, 2, seed=0)
    assert a == po.choose_targets(train, N_ITEMS, 2, 2, seed=0)
    pop = rs.item_popularity(train, N_ITEMS)
    assert all(1 <= pop[i] <= 5 for i in a["cold"])
    assert len(set(a["all"])) == 4
    with pytest.raises(ValueError, match="cold"):
        po.choose_targets(train, N_ITEMS, 10_000, 1)


# ----------------------------------------------------------------- exercise checks
def test_exercise_checks_accept_right_and_reject_wrong_answers(capsys):
    def right_attack(n_fake, n_users, n_items, targets, filler_size, generator):
        return po.random_attack(n_fake, n_users, n_items, targets, filler_size,
                                seed=int(torch.randint(0, 10**6, (1,), generator=generator)))

    def no_targets(n_fake, n_users, n_items, targets, filler_size, generator):
        fake = right_attack(n_fake, n_users, n_items, targets, filler_size + len(targets), generator)
        return rs.Interactions(fake.user, torch.where(torch.isin(fake.item, torch.tensor(targets)),
                                                      (fake.item + 1) % n_items, fake.item))

    assert po.check_random_attack(right_attack)
    assert not po.check_random_attack(no_targets)

    def right_rank(scores, exclude, target):
        return po.target_ranks(scores, exclude, [target])[:, 0]

    def ignores_exclude(scores, exclude, target):
        return 1 + (scores > scores[:, target:target + 1]).sum(1)

    assert po.check_target_rank(right_rank)
    assert not po.check_target_rank(ignores_exclude)

    def right_pop(train, n_users, n_items):
        return po.profile_features(train, n_users, n_items)["mean_popularity"]

    def sum_pop(train, n_users, n_items):
        return right_pop(train, n_users, n_items) * torch.bincount(train.user, minlength=n_users)

    assert po.check_mean_popularity(right_pop)
    assert not po.check_mean_popularity(sum_pop)

    def right_hr(ranks, k):
        ok = ~torch.isnan(ranks)
        return (ranks[ok] <= k).double().mean().item()

    def nan_as_miss(ranks, k):
        return (ranks <= k).double().mean().item()

    assert po.check_hit_rate(right_hr)
    assert not po.check_hit_rate(nan_as_miss)

    def stub(*args):
        raise NotImplementedError("Exercise 6.4: ...")

    assert not po.check_hit_rate(stub)
    out = capsys.readouterr().out
    assert "✓ Exercise 6.1" in out and "✗ Exercise 6.1" in out and "not done yet" in out
