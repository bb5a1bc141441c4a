"""Checks for the exercises of chapter 5. Each prints ✓ (and records ``exercise_5_N``) or says
what is wrong, through :func:`advlib.exercises.check`.

Defined in chapter 5.
"""
from __future__ import annotations

import math
from typing import Callable

import torch

from .._checks import call_student, tensor_answer
from ..exercises import check
from .metrics import ndcg_at_k
from .training import apr_delta

__all__ = ["check_ndcg", "check_negative_sampler", "check_apr_delta", "check_random_delta",
           "check_sampled_rank"]

_call, _tensor = call_student, tensor_answer  # also used by the other chapters' checks


def check_ndcg(ndcg_fn: Callable) -> bool:
    """Exercise 5.1: ``ndcg_fn(hits, n_targets, k)`` returns NDCG@k per user from a ``[U, k]`` 0/1
    tensor of hits by rank and each user's number of targets (ideal DCG over
    ``min(n_targets, k)``)."""

    def assertions():
        # Hand-computed: one hit at rank 1 of 1 target -> 1; a hit at rank 2 of 1 target ->
        # 1/log2(3); hits at ranks 1 and 3 of 5 targets (k = 3) -> (1 + 1/2) / (1 + 1/log2(3) + 1/2).
        hits = torch.tensor([[1, 0, 0], [0, 1, 0], [1, 0, 1], [0, 0, 0]], dtype=torch.bool)
        n_targets = torch.tensor([1, 1, 5, 2])
        want = torch.tensor([1.0, 1 / math.log2(3), 1.5 / (1 + 1 / math.log2(3) + 0.5), 0.0],
                            dtype=torch.float64)
        got = _tensor(_call(ndcg_fn, hits, n_targets, 3), "ndcg", (4,)).to(torch.float64)
        if torch.allclose(got[2], torch.tensor(1.5 / (1 + 1 / math.log2(3) + 0.5 + 1 / math.log2(5) + 1 / math.log2(6)), dtype=torch.float64)):
            raise AssertionError("the ideal DCG must stop at k: a user with 5 targets can have at "
                                 "most k = 3 of them in the list, so IDCG sums 3 terms")
        assert torch.allclose(got[:2], want[:2], atol=1e-6), (
            "a single target at rank 1 gives 1, at rank 2 gives 1/log2(3): the discount of rank r "
            "(counted from 1) is 1/log2(r + 1)")
        assert torch.allclose(got, want, atol=1e-6), \
            f"expected {want.tolist()}, got {got.tolist()}"
        g = torch.Generator().manual_seed(0)
        for k in (1, 5, 10):
            hits = torch.rand(50, k, generator=g) < 0.3
            n_targets = hits.sum(1) + torch.randint(0, 4, (50,), generator=g)
            got = _tensor(_call(ndcg_fn, hits, n_targets, k), "ndcg", (50,)).to(torch.float64)
            assert torch.allclose(got, ndcg_at_k(hits, n_targets, k), atol=1e-6), \
                f"wrong values at k = {k} on random rankings"
            assert (got >= -1e-9).all() and (got <= 1 + 1e-9).all(), "NDCG lies in [0, 1]"

    return check("5.1", assertions)


def check_negative_sampler(sampler: Callable) -> bool:
    """Exercise 5.2: ``sampler(user, positive_keys, n_items, generator)`` returns one item per
    user, uniform over the items the user has no pair with; ``positive_keys`` is the sorted
    tensor of ``user * n_items + item`` of the known pairs."""

    def assertions():
        g = torch.Generator().manual_seed(0)
        n_users, n_items = 30, 12
        # user u has items 0..u % 7: up to 7 of the 12 items are positives
        pairs = [(u, i) for u in range(n_users) for i in range(u % 7 + 1)]
        keys = torch.tensor(sorted(u * n_items + i for u, i in pairs))
        user = torch.randint(0, n_users, (30_000,), generator=g)
        neg = _tensor(_call(sampler, user.clone(), keys.clone(), n_items,
                            torch.Generator().manual_seed(1)), "sampler", user.shape)
        assert not neg.is_floating_point(), "return integer item indices"
        assert int(neg.min()) >= 0 and int(neg.max()) < n_items, "items must lie in [0, n_items)"
        query = user * n_items + neg
        found = torch.isin(query, keys)
        assert not found.any(), (f"{int(found.sum())} of {len(user)} negatives are items the user "
                                 "interacted with: reject those draws and draw again")
        again = _call(sampler, user.clone(), keys.clone(), n_items, torch.Generator().manual_seed(1))
        assert torch.equal(neg, again), "use the generator you are given, so a seed reproduces the draw"
        # uniform over the negatives: user 0 has items 1..11 as negatives
        mine = neg[user == 0]
        counts = torch.bincount(mine, minlength=n_items)[1:].to(torch.float64)
        expected = len(mine) / 11
        assert counts.min() > 0.6 * expected and counts.max() < 1.4 * expected, (
            "the negatives of a user should be uniform over the items they have not seen: "
            f"counts {counts.long().tolist()}")

    return check("5.2", assertions)


def check_apr_delta(delta_fn: Callable) -> bool:
    """Exercise 5.3: ``delta_fn(grad, eps)`` returns APR's perturbation of an embedding table:
    each row of ``grad`` scaled to length ``eps``; zero rows stay zero."""

    def assertions():
        g = torch.Generator().manual_seed(0)
        grad = torch.randn(40, 8, generator=g) * torch.rand(40, 1, generator=g) * 5
        grad[3] = 0.0
        for eps in (0.0, 0.5, 2.0):
            got = _tensor(_call(delta_fn, grad.clone(), eps), "delta", grad.shape)
            assert torch.all(got[3] == 0), "a row with zero gradient must get zero perturbation (no NaN)"
            norms = got.norm(dim=1)
            rows = torch.arange(40) != 3
            if eps > 0 and torch.allclose(got.norm(), torch.tensor(eps), atol=1e-4) and \
                    not torch.allclose(norms[rows], torch.full_like(norms[rows], eps), atol=1e-4):
                raise AssertionError("you normalised the whole table: normalise each row on its own")
            assert torch.allclose(norms[rows], torch.full_like(norms[rows], eps), atol=1e-4), \
                f"every row should have length eps = {eps}"
            assert torch.allclose(got, apr_delta(grad, eps), atol=1e-5), \
                "each row should point along its gradient (the direction that raises the loss most)"

    return check("5.3", assertions)


def check_random_delta(random_fn: Callable) -> bool:
    """Exercise 5.4: ``random_fn(n_rows, dim, eps, generator)`` returns ``[n_rows, dim]`` rows of
    length ``eps`` in uniformly random directions, reproducible from ``generator``."""

    def assertions():
        first = _tensor(_call(random_fn, 2000, 16, 0.7, torch.Generator().manual_seed(1)),
                        "random delta", (2000, 16)).to(torch.float64)
        again = _call(random_fn, 2000, 16, 0.7, torch.Generator().manual_seed(1))
        other = _call(random_fn, 2000, 16, 0.7, torch.Generator().manual_seed(2))
        norms = first.norm(dim=1)
        assert torch.allclose(norms, torch.full_like(norms, 0.7), atol=1e-4), \
            "every row should have length eps exactly (normalise, then scale)"
        assert torch.equal(first, again.to(torch.float64)), "use the generator you are given"
        assert not torch.equal(first, other.to(torch.float64)), "different seeds gave the same rows"
        mean = first.mean(0).norm().item()
        assert mean < 0.1, ("the directions are not uniform: their average is far from zero "
                            "(draw Gaussian coordinates, not uniform ones in [0, 1])")
        share = (first > 0).to(torch.float64).mean(0)
        assert ((share > 0.45) & (share < 0.55)).all(), "every coordinate should be positive half of the time"
        x = first / 0.7  # uniform directions in 16-D: E[x⁴] / E[x²]² = 3·16 / 18 per coordinate
        kurtosis = (x.pow(4).mean() / x.pow(2).mean().pow(2)).item()
        assert abs(kurtosis - 48 / 18) < 0.3, (
            "the directions are not uniform on the sphere (sign vectors or a box are not): "
            "normalise Gaussian vectors")

    return check("5.4", assertions)


def check_sampled_rank(rank_fn: Callable) -> bool:
    """Exercise 5.5: ``rank_fn(pos_scores, neg_scores)`` returns, for each test pair, how many of
    its sampled negatives score at least as high as the test item (0 = ranked first); a tie
    counts against the test item."""

    def assertions():
        pos = torch.tensor([3.0, 0.0, 1.0])
        neg = torch.tensor([[1.0, 2.0, 0.5], [1.0, 2.0, 3.0], [1.0, 0.5, 2.0]])
        got = _tensor(_call(rank_fn, pos, neg), "rank", (3,))
        assert torch.equal(got.to(torch.int64), torch.tensor([0, 3, 2])), (
            f"expected ranks [0, 3, 2] (the number of negatives at or above the test item), got "
            f"{got.tolist()}; a tie counts against the test item")
        g = torch.Generator().manual_seed(0)
        pos, neg = torch.randn(500, generator=g), torch.randn(500, 99, generator=g)
        got = _tensor(_call(rank_fn, pos, neg), "rank", (500,)).to(torch.int64)
        assert torch.equal(got, (neg >= pos[:, None]).sum(1)), "wrong ranks on random scores"

    return check("5.5", assertions)


# ---------------------------------------------------------------------------------------
# Chapter 8: the sequence recommender (SASRec) and the history-substitution attack.

from . import sequential as _seq  # noqa: E402 - the chapter 8 section of this module

__all__ += ["check_attention_mask", "check_training_windows", "check_input_delta",
            "check_substitution_gain"]


def _random_sequences(seed: int, rows: int = 30, length: int = 8, n_items: int = 20):
    """Left-padded sequences of random lengths 1..length (item + 1, 0 = padding)."""
    g = torch.Generator().manual_seed(seed)
    seqs = torch.randint(1, n_items + 1, (rows, length), generator=g)
    lengths = torch.randint(1, length + 1, (rows,), generator=g)
    seqs[torch.arange(length) < (length - lengths).unsqueeze(1)] = _seq.PAD
    return seqs


def check_attention_mask(mask_fn: Callable) -> bool:
    """Exercise 8.1: ``mask_fn(seqs)`` returns the boolean ``[B, L, L]`` mask of what each
    position may *not* attend to: the future and padding keys, never the diagonal."""

    def assertions():
        seqs = torch.tensor([[0, 0, 3, 4], [5, 6, 7, 8]])
        got = _tensor(_call(mask_fn, seqs.clone()), "mask", (2, 4, 4))
        assert got.dtype == torch.bool, f"return a boolean tensor, got {got.dtype}"
        full = got[1]
        if torch.equal(full, ~torch.ones(4, 4, dtype=torch.bool).triu(1)):
            raise AssertionError("True must mean *blocked*: position t may not see s > t "
                                 "(you returned the allowed positions)")
        assert torch.equal(full, torch.ones(4, 4, dtype=torch.bool).triu(1)), (
            "without padding, position t is blocked from exactly the positions s > t")
        assert not got[0].diagonal().any(), ("never block the diagonal: a padding position "
                                             "with nothing to attend to makes the softmax NaN")
        assert got[0][2:, :2].all(), "the real positions must not attend to padding keys"
        for seed in range(3):
            seqs = _random_sequences(seed)
            got = _tensor(_call(mask_fn, seqs.clone()), "mask", (30, 8, 8))
            assert torch.equal(got, _seq.attention_mask(seqs)), "wrong mask on random sequences"

    return check("8.1", assertions)


def check_training_windows(windows_fn: Callable) -> bool:
    """Exercise 8.2: ``windows_fn(seq, max_len)`` returns ``(inputs, targets)`` for one
    sequence of 0-based items: every next item predicted once, windows cut from the end,
    left-padded, as ``item + 1``."""

    def assertions():
        inputs, targets = _call(windows_fn, torch.tensor([0, 1, 2, 3]), 3)
        inputs = _tensor(inputs, "inputs", (1, 3))
        assert inputs.tolist() == [[1, 2, 3]] and targets.tolist() == [[2, 3, 4]], (
            "for items 0, 1, 2, 3 and max_len 3 the one window is inputs [1, 2, 3] and targets "
            f"[2, 3, 4] (item + 1), got {inputs.tolist()} and {targets.tolist()}")
        g = torch.Generator().manual_seed(0)
        for n in (2, 5, 7, 13, 31):
            seq = torch.randint(0, 50, (n,), generator=g)
            want = _seq.training_windows([seq], 6)
            got = _call(windows_fn, seq.clone(), 6)
            got = tuple(_tensor(t, name, want[0].shape) for t, name in
                        zip(got, ("inputs", "targets")))
            assert torch.equal(got[1], want[1]), (
                f"wrong targets for a sequence of {n} items: cut windows of max_len from the "
                "end (the most recent items form the last, full window), pad on the left")
            assert torch.equal(got[0], want[0]), f"wrong inputs for a sequence of {n} items"

    return check("8.2", assertions)


def check_input_delta(delta_fn: Callable) -> bool:
    """Exercise 8.3: ``delta_fn(grad, eps, seqs)`` moves every real position's input embedding
    by length ``eps`` along its own gradient; padding positions and zero gradients stay put."""

    def assertions():
        seqs = _random_sequences(1)
        g = torch.Generator().manual_seed(2)
        grad = torch.randn(30, 8, 16, generator=g) * torch.rand(30, 8, 1, generator=g) * 3
        grad[3, -1] = 0.0
        for eps in (0.0, 0.5, 2.0):
            got = _tensor(_call(delta_fn, grad.clone(), eps, seqs.clone()), "delta", grad.shape)
            assert torch.all(got[seqs == _seq.PAD] == 0), "padding positions must not move"
            assert torch.all(got[3, -1] == 0), "a zero gradient gives a zero perturbation (no NaN)"
            norms = got.norm(dim=-1)
            real = (seqs != _seq.PAD) & (grad.norm(dim=-1) > 0)
            if eps > 0 and abs(got.norm().item() - eps) < 1e-3:
                raise AssertionError("normalise each position on its own, not the whole tensor")
            assert torch.allclose(norms[real], torch.full_like(norms[real], eps), atol=1e-4), \
                f"every real position should move by length eps = {eps}"
            want = apr_delta(grad.reshape(-1, 16), eps).view_as(grad) * real.unsqueeze(-1)
            assert torch.allclose(got, want, atol=1e-5), "each position moves along its gradient"

    return check("8.3", assertions)


def check_substitution_gain(gain_fn: Callable) -> bool:
    """Exercise 8.4: ``gain_fn(grad, table, seqs)`` returns the first-order gain
    ``(table[j + 1] − table[seqs[b, p]]) · grad[b, p]`` of every substitution, ``[B, L, n]``."""

    def assertions():
        table = torch.tensor([[0.0, 0.0], [1.0, 0.0], [0.0, 1.0], [1.0, 1.0]])
        seqs = torch.tensor([[1, 2]])
        grad = torch.tensor([[[2.0, 0.0], [0.0, -1.0]]])
        got = _tensor(_call(gain_fn, grad, table, seqs), "gain", (1, 2, 3))
        # position 0 holds [1, 0], gradient [2, 0]; position 1 holds [0, 1], gradient [0, -1]
        want = torch.tensor([[[0.0, -2.0, 0.0], [1.0, 0.0, 0.0]]])
        if torch.allclose(got, want + torch.tensor([[[2.0], [-1.0]]])):
            raise AssertionError("subtract the current item's term: the gain is the change "
                                 "(e_new − e_old) · g, not e_new · g")
        assert torch.allclose(got, want), (f"for this small case expected {want.tolist()}, got "
                                           f"{got.tolist()}; column j is item j (table row j + 1)")
        g = torch.Generator().manual_seed(0)
        table = torch.randn(21, 8, generator=g)
        seqs = _random_sequences(3)
        grad = torch.randn(30, 8, 8, generator=g)
        got = _tensor(_call(gain_fn, grad, table, seqs), "gain", (30, 8, 20))
        assert torch.allclose(got, _seq.substitution_gain(grad, table, seqs), atol=1e-4), \
            "wrong gains on random embeddings"

    return check("8.4", assertions)
