"""advlib.recsys.sequential (chapter 8): the sequence split, SASRec's causal mask and padding,
training with and without adversarial perturbations, and the history-substitution attack."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from advlib import recsys as rs
from advlib.recsys import sequential as sq


def chains(n_users=40, n_items=30, length=9, seed=0) -> rs.ImplicitData:
    """Every user walks the cycle of items 0 -> 1 -> ... -> n_items - 1 -> 0 from a random
    start, one item per time step, timestamps shuffled in the stored order: the next item is a
    function of the last one, which a sequence model can learn and popularity cannot."""
    g = np.random.default_rng(seed)
    users, items, stamps = [], [], []
    for u in range(n_users):
        start = int(g.integers(n_items))
        for t in range(length):
            users.append(u)
            items.append((start + t) % n_items)
            stamps.append(1000 * u + t)
    order = g.permutation(len(users))
    inter = rs.Interactions(torch.tensor(users)[order], torch.tensor(items)[order])
    return rs.ImplicitData(inter, torch.tensor(stamps)[order], n_users, n_items,
                           np.arange(n_users), np.arange(n_items), [""] * n_items)


@pytest.fixture(scope="module")
def data():
    return sq.sequence_split(chains(), max_len=6)


@pytest.fixture(scope="module")
def trained(data):
    return sq.train_sasrec(data, dim=16, blocks=1, dropout=0.0, epochs=40, batch_size=64,
                           lr=1e-2, eval_every=5, patience=100, seed=0)


def test_split_holds_out_the_latest_item(data):
    raw = chains()
    stamp = {(int(u), int(i)): int(t) for u, i, t in
             zip(raw.interactions.user, raw.interactions.item, raw.timestamp)}
    for u in range(data.n_users):
        test_item = int(data.split.test.item[data.split.test.user == u])
        valid_item = int(data.split.valid.item[data.split.valid.user == u])
        times = [stamp[u, int(i)] for i in data.train_seqs[u]]
        assert times == sorted(times), "training sequences are in time order"
        assert stamp[u, test_item] > stamp[u, valid_item] > max(times)
        assert int(data.test_input[u, -1]) == valid_item + 1  # test input ends with validation
        assert int(data.valid_input[u, -1]) == int(data.train_seqs[u][-1]) + 1
    assert len(data.split.test) == len(data.split.valid) == data.n_users


def test_pad_left_and_windows():
    assert sq.pad_left([3, 4], 4).tolist() == [0, 0, 4, 5]
    assert sq.pad_left([1, 2, 3, 4, 5], 3).tolist() == [4, 5, 6]
    inputs, targets = sq.training_windows([torch.tensor([0, 1, 2, 3, 4, 5, 6])], 3)
    # targets 1..6 each predicted once, from the end: windows (3,4,5 -> 4,5,6) and (0,1,2 -> 1,2,3)
    assert inputs.tolist() == [[4, 5, 6], [1, 2, 3]]
    assert targets.tolist() == [[5, 6, 7], [2, 3, 4]]
    last, _ = sq.training_windows([torch.arange(7)], 3, windows=1)
    assert last.tolist() == [[4, 5, 6]]
    with pytest.raises(ValueError, match="nothing to train"):
        sq.training_windows([torch.tensor([3])], 3)


def test_causal_mask_future_items_do_not_change_the_past():
    model = sq.SASRec(20, max_len=8, dim=16, blocks=2, heads=2, dropout=0.0).eval()
    seqs = torch.randint(1, 21, (5, 8), generator=torch.Generator().manual_seed(0))
    changed = seqs.clone()
    changed[:, 5:] = torch.randint(1, 21, (5, 3), generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        a, b = model(seqs), model(changed)
    assert torch.allclose(a[:, :5], b[:, :5], atol=1e-5)
    assert not torch.allclose(a[:, 5:], b[:, 5:], atol=1e-3)


def test_padding_does_not_change_the_prediction():
    model = sq.SASRec(20, max_len=10, dim=16, blocks=2, dropout=0.0).eval()
    items = [3, 7, 1, 12]
    short = sq.pad_left(items, 6).unsqueeze(0)
    long = sq.pad_left(items, 10).unsqueeze(0)
    assert torch.allclose(model.scores(short), model.scores(long), atol=1e-5)
    hidden = model.hidden(long)
    assert torch.all(hidden[0, :6] == 0), "padding positions carry no state"
    assert torch.isfinite(model(long)).all()


def test_sasrec_learns_the_chains_and_beats_popularity(data, trained):
    test = rs.ranking_task(data.split, "test")
    sas = rs.evaluate(sq.sequence_scores(trained.model, data.test_input), test, k=1)
    pop = rs.evaluate(rs.Popularity(data.split.train, data.n_items), test, k=1)
    assert sas["hit"] > 0.9 and sas["hit"] > pop["hit"] + 0.5
    assert trained.best_valid > 0.8
    assert trained.history[0]["loss"] > trained.history[-1]["loss"]


def test_adversarial_training_at_eps_zero_is_plain_training(data):
    common = dict(dim=8, blocks=1, epochs=2, batch_size=16, eval_every=1, seed=3)
    plain = sq.train_sasrec(data, **common)
    zero = sq.train_sasrec(data, eps=0.0, reg_adv=1.0, **common)
    adv = sq.train_sasrec(data, eps=0.5, reg_adv=1.0, **common)
    for a, b in zip(plain.model.state_dict().values(), zero.model.state_dict().values()):
        assert torch.equal(a, b)
    assert any(not torch.equal(a, b) for a, b in
               zip(plain.model.state_dict().values(), adv.model.state_dict().values()))
    assert adv.history[0]["loss"] > plain.history[0]["loss"]  # the loss has a second term


def test_input_perturbation_is_bounded_and_raises_the_loss(data, trained):
    model = trained.model
    x, y = sq.training_windows(data.train_seqs, data.max_len)
    clean = sq.sequence_loss(model(x), y).item()
    for steps in (1, 5):
        delta = sq.input_perturbation(model, x, y, 0.3, steps=steps)
        norms = delta.norm(dim=-1)
        assert norms.max() <= 0.3 + 1e-5 and torch.all(norms[x == sq.PAD] == 0)
        worst = sq.sequence_loss(model(x, model.embed(x) + delta), y).item()
        assert worst > clean
    assert torch.all(sq.input_perturbation(model, x, y, 0.0) == 0)


@pytest.mark.parametrize("method", ["gradient", "random"])
def test_substitution_respects_its_budget(data, trained, method):
    inputs = data.test_input.clone()
    held = data.split.test.item.clone()
    forbid = torch.full((data.n_users,), -1)
    forbid[data.split.test.user] = held
    forbid[::7] = -1  # -1: nothing forbidden for that user
    path = sq.substitution_path(trained.model, inputs, 3, method=method, forbid=forbid, seed=1)
    assert len(path) == 4 and torch.equal(path[0], data.test_input)
    assert torch.equal(inputs, data.test_input), "the input is not modified in place"
    assert torch.equal(data.split.test.item, held), "the held-out items are untouched"
    for r, seqs in enumerate(path):
        changed = (seqs != data.test_input).sum(1)
        assert changed.max() <= r
        assert torch.all((seqs == sq.PAD) == (data.test_input == sq.PAD)), "padding stays padding"
        new = seqs[seqs != data.test_input] - 1
        rows = (seqs != data.test_input).nonzero()[:, 0]
        assert not torch.any(new == forbid[rows]), "a forbidden item was inserted"
    assert (path[3] != data.test_input).sum(1).min() == 3


def test_gradient_substitution_beats_random(data, trained):
    model = trained.model
    test = rs.ranking_task(data.split, "test")
    ndcg = {}
    for method in ("gradient", "random"):
        seqs = sq.substitution_path(model, data.test_input, 1, method=method)[-1]
        ndcg[method] = rs.evaluate(sq.sequence_scores(model, seqs), test, k=3)["ndcg"]
    clean = rs.evaluate(sq.sequence_scores(model, data.test_input), test, k=3)["ndcg"]
    assert ndcg["gradient"] < ndcg["random"] <= clean + 1e-9
    assert ndcg["gradient"] < 0.5 * clean


def test_targeted_substitution_pushes_the_target(data, trained):
    model = trained.model
    test = rs.ranking_task(data.split, "test")
    target = 5
    path = sq.substitution_path(model, data.test_input, 2, target=target)
    before = sq.target_hit_rate(model, path[0], test, target, k=1)
    after = sq.target_hit_rate(model, path[-1], test, target, k=1)
    assert after > before + 0.3
    inserted = path[-1][path[-1] != path[0]]
    assert not torch.any(inserted == target + 1), "the target itself is never inserted"


def test_subset_task_keeps_only_the_chosen_users(data):
    task = rs.ranking_task(data.split, "test")
    sub = sq.subset_task(task, torch.tensor([3, 1, 7]))
    assert sub.users.tolist() == [1, 3, 7]
    assert torch.equal(sub.targets, task.targets[[1, 3, 7]])


def test_bad_input_gets_clear_errors(data, trained):
    model = trained.model
    with pytest.raises(ValueError, match="budget r"):
        sq.substitution_path(model, data.test_input, -1)
    with pytest.raises(ValueError, match="budget r"):
        sq.substitution_path(model, data.test_input, 1.5)
    with pytest.raises(ValueError, match="empty"):
        sq.substitution_path(model, torch.zeros(2, data.max_len, dtype=torch.long), 1)
    with pytest.raises(ValueError, match="method"):
        sq.substitution_path(model, data.test_input, 1, method="greedy")
    with pytest.raises(ValueError, match="eps"):
        sq.train_sasrec(data, eps=-0.1, epochs=1)
    with pytest.raises(ValueError, match="eps"):
        sq.input_perturbation(model, data.valid_input, data.valid_input, float("nan"))
    with pytest.raises(ValueError, match="max_len"):
        model.scores(torch.ones(1, data.max_len + 1, dtype=torch.long))
    with pytest.raises(ValueError, match=r"\[0, 30\]"):
        model.scores(torch.full((1, 3), 31))
    with pytest.raises(ValueError, match="multiple of heads"):
        sq.SASRec(10, dim=10, heads=3)
    with pytest.raises(ValueError, match="max_len"):
        sq.sequence_split(chains(), max_len=0)
    with pytest.raises(ValueError, match="target"):
        sq.substitution_path(model, data.test_input, 1, target=99)


def test_exercise_checks_accept_the_reference_and_reject_mistakes(capsys):
    from advlib.recsys import checks

    assert checks.check_attention_mask(sq.attention_mask)
    assert not checks.check_attention_mask(lambda s: ~sq.attention_mask(s))
    assert checks.check_training_windows(lambda seq, n: sq.training_windows([seq], n))
    assert not checks.check_training_windows(
        lambda seq, n: tuple(t.flip(0) for t in sq.training_windows([seq], n)) if len(seq) > 7
        else sq.training_windows([seq], n))

    def delta(grad, eps, seqs):
        from advlib.recsys import apr_delta
        return apr_delta(grad.reshape(-1, grad.shape[-1]), eps).view_as(grad) * \
            (seqs != sq.PAD).unsqueeze(-1)

    assert checks.check_input_delta(delta)
    assert not checks.check_input_delta(lambda g, e, s: delta(g, e, torch.ones_like(s)))
    assert checks.check_substitution_gain(sq.substitution_gain)
    assert not checks.check_substitution_gain(lambda g, t, s: g @ t[1:].T)
    assert "✗ Exercise 8.4" in capsys.readouterr().out
