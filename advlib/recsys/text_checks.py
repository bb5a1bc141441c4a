"""Checks for the exercises of chapter 7. Each prints ✓ (and records ``exercise_7_N``) or says
what is wrong, through :func:`advlib.exercises.check`.

Defined in chapter 7.
"""
from __future__ import annotations

from typing import Callable

import torch

from .._checks import call_student as _call
from .._checks import tensor_answer as _tensor
from ..exercises import check
from .text import mean_pool
from .text_attack import detection_scores

__all__ = ["check_mean_pool", "check_exposure", "check_precision_recall", "check_best_edit"]


def check_mean_pool(pool_fn: Callable) -> bool:
    """Exercise 7.1: ``pool_fn(hidden, mask)`` averages the token vectors of each text over its
    real tokens (``mask`` 1) and L2-normalises the result."""

    def assertions():
        hidden = torch.tensor([[[1.0, 0.0], [3.0, 4.0], [100.0, 0.0]]])
        mask = torch.tensor([[1, 1, 0]])
        got = _tensor(_call(pool_fn, hidden, mask), "pooled", (1, 2)).to(torch.float64)
        plain = torch.nn.functional.normalize(hidden.mean(1), dim=-1).to(torch.float64)
        assert not torch.allclose(got, plain, atol=1e-4), \
            "the padding token counted: average only where the mask is 1"
        assert torch.allclose(got.norm(dim=1), torch.ones(1, dtype=torch.float64), atol=1e-4), \
            "normalise each sentence vector to length 1"
        assert torch.allclose(got, torch.tensor([[0.5 ** 0.5, 0.5 ** 0.5]],
                                                dtype=torch.float64), atol=1e-4), \
            "the mean of [1, 0] and [3, 4] is [2, 2]; normalised, [0.707, 0.707]"
        g = torch.Generator().manual_seed(0)
        hidden = torch.randn(6, 9, 16, generator=g)
        mask = (torch.arange(9)[None, :] < torch.tensor([9, 1, 4, 7, 2, 5])[:, None]).long()
        got = _tensor(_call(pool_fn, hidden, mask), "pooled", (6, 16)).to(torch.float32)
        assert torch.allclose(got, mean_pool(hidden, mask), atol=1e-5), \
            "wrong vectors on a random batch with padding"

    return check("7.1", assertions)


def check_exposure(exposure_fn: Callable) -> bool:
    """Exercise 7.2: ``exposure_fn(scores, seen, item, k)`` is the share of the users who have not
    seen ``item`` whose top ``k`` (their seen items excluded) contains it."""

    def reference(scores, seen, item, k):
        users = ~seen[:, item]
        masked = scores.masked_fill(seen, float("-inf"))[users]
        top = torch.topk(masked, k, dim=1).indices
        return (top == item).any(1).double().mean().item()

    def assertions():
        scores = torch.tensor([[5.0, 4.0, 3.0, 2.0], [1.0, 2.0, 3.0, 4.0], [9.0, 1.0, 8.0, 0.5]])
        seen = torch.tensor([[True, False, False, False], [False, False, False, True],
                             [False, True, False, False]])
        got = float(_call(exposure_fn, scores, seen, 2, 2))
        # top 2 with the seen items removed: user 0 {1, 2}, user 1 {2, 1}, user 2 {0, 2}
        assert abs(got - 1.0) < 1e-9, \
            f"item 2 is in every user's top 2 (seen items removed), got {got}"
        got = float(_call(exposure_fn, scores, seen, 1, 1))
        assert abs(got - 0.5) < 1e-9, (
            "user 2 has seen item 1, so only users 0 and 1 count; with their seen items removed "
            f"item 1 is user 0's first choice only: exposure 0.5, got {got}")
        g = torch.Generator().manual_seed(0)
        scores = torch.randn(200, 50, generator=g)
        seen = torch.rand(200, 50, generator=g) < 0.2
        for item, k in ((3, 10), (17, 5), (40, 1)):
            want = reference(scores, seen, item, k)
            got = float(_call(exposure_fn, scores, seen, item, k))
            assert abs(got - want) < 1e-9, \
                f"item {item}, k = {k}: expected {want:.4f}, got {got:.4f}"

    return check("7.2", assertions)


def check_precision_recall(pr_fn: Callable) -> bool:
    """Exercise 7.3: ``pr_fn(shift, adversarial, threshold)`` flags the edits whose shift exceeds
    ``threshold`` and returns ``(precision, recall)`` of the flags for the adversarial edits."""

    def assertions():
        shift = torch.tensor([0.01, 0.05, 0.30, 0.20, 0.02, 0.40])
        adversarial = torch.tensor([False, False, True, True, True, False])
        got = _call(pr_fn, shift, adversarial, 0.1)
        assert isinstance(got, tuple) and len(got) == 2, "return (precision, recall)"
        precision, recall = (float(v) for v in got)
        assert abs(precision - 2 / 3) < 1e-9 and abs(recall - 2 / 3) < 1e-9, (
            "three edits exceed 0.1 (0.30, 0.20, 0.40), two of them adversarial: precision 2/3; "
            "two of the three adversarial edits are flagged: recall 2/3. "
            f"Got {precision}, {recall}")
        precision, recall = (float(v) for v in _call(pr_fn, shift, adversarial, 0.02))
        want = detection_scores(shift > 0.02, adversarial)
        assert abs(precision - want["precision"]) < 1e-9 and abs(recall - want["recall"]) < 1e-9, \
            "flag an edit when its shift is strictly above the threshold"

    return check("7.3", assertions)


def check_best_edit(edit_fn: Callable) -> bool:
    """Exercise 7.4: ``edit_fn(words, vocab, score)`` returns the title words after the single edit
    (append a word of ``vocab``, or substitute one word by one) that maximises ``score(words)``."""

    def assertions():
        def score(words):  # likes the letter "z" and short titles
            return sum(w.count("z") for w in words) - 0.1 * len(words)

        got = _call(edit_fn, ("jazz", "band", "night"), ["zoo", "fizz", "cat"], score)
        got = tuple(got)
        assert len(got) in (3, 4), "one edit: the title keeps its length or grows by one word"
        assert got == ("jazz", "fizz", "night") or got == ("jazz", "band", "fizz"), (
            "substituting 'band' or 'night' by 'fizz' (two z's, no extra word) scores best; "
            f"got {got}")
        got = tuple(_call(edit_fn, (), ["ab", "zz"], score))
        assert got == ("zz",), f"an empty title can only grow: expected ('zz',), got {got}"

        def count(words):
            return -abs(len(words) - 5) + 0.01 * sum(len(w) for w in words)

        got = tuple(_call(edit_fn, ("a", "b", "c", "d"), ["word", "longerword"], count))
        assert got == ("a", "b", "c", "d", "longerword"), f"appending should win here, got {got}"

    return check("7.4", assertions)
