"""A seller edits an item's text to push it up the rankings, and a check that flags such edits.

Defined in chapter 7.

* :func:`exposure`: the share of users who have not interacted with an item in training whose
  top ``k`` (training items excluded) contains it: HR@k of that item over those users.
* :func:`genre_vocabularies`: per genre, the words of the titles of that genre's items (most
  popular titles first); the plausibility constraint of the attack.
* :func:`greedy_text_attack`: a greedy word-level search that appends a word to the title or
  substitutes one of its words, up to ``budget`` edits, each step keeping the edit that raises
  the item's exposure under a (white-box) model the most. Candidate words come from ``vocab``
  (all of them when there are few; otherwise the ``shortlist`` words whose own embedding best
  follows the gradient of a smooth exposure objective); every candidate text is encoded in one
  batch. ``max_shift`` bounds the cosine distance between the edited and the original text
  embedding. Run it against a surrogate model and measure on another for a transfer attack.
* :func:`benign_edits`, :func:`embedding_shift`, :func:`detection_scores`: the input-side check:
  flag an edit whose text embedding moved further (cosine distance) than benign edits do.
"""
from __future__ import annotations

import math
import random
from collections import Counter
from dataclasses import dataclass, field

import torch

from .data import Interactions
from .text import ItemText, TextRec

__all__ = ["ExposureProblem", "exposure_problem", "exposure", "genre_vocabularies",
           "AttackResult", "greedy_text_attack", "apply_edits", "benign_edits",
           "embedding_shift", "detection_scores"]


def _positive_int(value, name: str, zero: bool = False) -> int:
    low = 0 if zero else 1
    if isinstance(value, bool) or not isinstance(value, int) or value < low:
        raise ValueError(f"{name} must be an integer >= {low}, got {value!r}")
    return value


@dataclass(frozen=True, eq=False)
class ExposureProblem:
    """What one item's exposure under ``model`` depends on: the ``users`` who have not
    interacted with ``item`` in training, their vectors, and ``kth``, each one's ``k``-th best
    score among the other items (training items excluded): the item is in a user's top ``k``
    when its score beats that. Defined in chapter 7."""

    model: TextRec
    item: int
    users: torch.Tensor
    user_vectors: torch.Tensor
    kth: torch.Tensor
    k: int

    def scores(self, text: torch.Tensor) -> torch.Tensor:
        """``[len(users), C]`` scores of the item if its text embedding were each row of
        ``text`` (``[C, d_text]``); differentiable in ``text``."""
        text = text.to(self.model.text)
        items = torch.full((len(text),), self.item, dtype=torch.long, device=text.device)
        return self.user_vectors @ self.model.item_vectors(text, items).T

    @torch.no_grad()
    def hits(self, text: torch.Tensor) -> torch.Tensor:
        """Exposure (HR@k over ``users``) of each row of ``text``: ``[C]``."""
        return (self.scores(text) > self.kth[:, None]).double().mean(0)

    def soft(self, text: torch.Tensor, temperature: float = 0.05) -> torch.Tensor:
        """A smooth, differentiable exposure:
        ``mean σ((score − kth) / (temperature · spread))``."""
        scores = self.scores(text)
        spread = self.kth.abs().mean().clamp(min=1e-6)
        return torch.sigmoid((scores - self.kth[:, None]) / (temperature * spread)).mean(0)


@torch.no_grad()
def exposure_problem(model: TextRec, item: int, train: Interactions,
                     k: int = 10) -> ExposureProblem:
    """Set up :class:`ExposureProblem` for ``item`` under ``model`` (users who have it in
    ``train`` are left out; each user's training items are excluded from the ranking)."""
    _positive_int(k, "k")
    n_items = model.n_items
    if isinstance(item, bool) or not 0 <= int(item) < n_items:
        raise ValueError(f"item must be an index in [0, {n_items}), got {item!r}")
    item = int(item)
    device = model.user.device
    train = train.to(device)
    seen = torch.zeros(model.n_users, n_items, dtype=torch.bool, device=device)
    seen[train.user, train.item] = True
    users = torch.nonzero(~seen[:, item]).flatten()
    scores = model.scores(users).masked_fill(seen[users], float("-inf"))
    scores[:, item] = float("-inf")
    kth = torch.topk(scores, k, dim=1).values[:, -1]
    return ExposureProblem(model, item, users, model.user.detach()[users], kth, k)


def exposure(model: TextRec, item: int, train: Interactions, text: torch.Tensor | None = None,
             k: int = 10) -> float:
    """HR@k of ``item`` over the users who have not interacted with it in ``train``; with
    ``text`` (a ``[d_text]`` embedding) as if that were the item's text embedding."""
    problem = exposure_problem(model, item, train, k)
    row = model.text[item] if text is None else text.reshape(-1)
    return float(problem.hits(row[None])[0])


_STOP = {"the", "a", "an", "of", "and", "in", "to", "on", "for", "with", "at", "from", "by",
         "is", "it", "as", "or", "la", "le", "de", "des", "du", "il", "el", "les"}


def genre_vocabularies(texts, popularity, size: int) -> dict[str, list]:
    """Per genre, up to ``size`` words of the titles of that genre's items, most popular titles
    first (``popularity``: training interactions per item); stop words, numbers and words of
    fewer than three letters left out. ``"all"`` holds the same for every title."""
    _positive_int(size, "size")
    popularity = torch.as_tensor(popularity).tolist()
    if len(popularity) != len(texts):
        raise ValueError("one popularity count per item is needed")
    weight: dict[str, Counter] = {}
    for text, pop in zip(texts, popularity):
        words = {w.strip(".,:;!?()\"'") for w in text.words}
        words = {w for w in words if len(w) >= 3 and w.isalpha() and w.lower() not in _STOP}
        for genre in ("all",) + tuple(text.genres):
            counter = weight.setdefault(genre, Counter())
            for word in words:
                counter[word] += 1 + pop
    return {g: [w for w, _ in sorted(c.items(), key=lambda kv: (-kv[1], kv[0]))[:size]]
            for g, c in weight.items()}


@dataclass
class AttackResult:
    """One edited item text. ``edits``: ``("append", None, word)`` or ``("substitute",
    position, word)`` in order; ``exposure_before`` / ``exposure_after`` under the model the
    search optimised; ``shift``: cosine distance of the edited embedding from the original;
    ``encoded``: candidate texts encoded. Defined in chapter 7."""

    original: ItemText
    edited: ItemText
    edits: list
    exposure_before: float
    exposure_after: float
    embedding: torch.Tensor
    shift: float
    encoded: int
    history: list = field(default_factory=list)

    @property
    def lift(self) -> float:
        return self.exposure_after - self.exposure_before


def apply_edits(words, edits) -> tuple:
    """The title words after ``edits`` (see :class:`AttackResult`)."""
    words = list(words)
    for op, position, word in edits:
        if op == "append":
            words.append(word)
        elif op == "substitute":
            words[position] = word
        else:
            raise ValueError(f"unknown edit {op!r}")
    return tuple(words)


def _check_vocab(vocab) -> list:
    if isinstance(vocab, str):
        raise TypeError("vocab must be a list of words, not one string")
    words = list(dict.fromkeys(vocab))
    if not words:
        raise ValueError("the vocabulary is empty: the attack has no word to use")
    bad = [w for w in words if not isinstance(w, str) or not w.strip() or len(w.split()) != 1]
    if bad:
        raise ValueError(f"every vocabulary entry must be one word, got {bad[:3]!r}")
    return words


def greedy_text_attack(encoder, model: TextRec, item: int, text: ItemText, train: Interactions,
                       vocab, budget: int = 3, shortlist: int = 24, max_shift: float | None = None,
                       k: int = 10, substitute: bool = True, word_vectors=None) -> AttackResult:
    """Greedy word-level search for an edited title of ``item`` with the highest exposure under
    ``model`` (white box): at most ``budget`` edits, each appending a word of ``vocab`` or
    substituting one of the title's words by one. See the module docstring.

    ``word_vectors``: the encoder's embeddings of ``vocab`` (computed here when ``None``),
    used to shortlist words along the gradient when ``vocab`` has more than ``shortlist`` words.
    The search stops early when no edit raises the objective (exposure, ties broken by the
    smooth exposure)."""
    budget = _positive_int(budget, "budget", zero=True)
    _positive_int(shortlist, "shortlist")
    vocab = _check_vocab(vocab)
    if max_shift is not None and (isinstance(max_shift, bool) or not 0 <= max_shift <= 2
                                  or not math.isfinite(max_shift)):
        raise ValueError(f"max_shift must be a cosine distance in [0, 2], got {max_shift!r}")
    problem = exposure_problem(model, item, train, k)
    original = encoder.encode([text.text])[0]
    start_calls = getattr(encoder, "calls", 0)

    @torch.no_grad()
    def objective(rows):
        return problem.hits(rows) + 1e-3 * problem.soft(rows).double()

    current, current_vec = text, original
    best = float(objective(original[None])[0])
    before = float(problem.hits(original[None])[0])
    edits, history = [], [(text.title, before)]
    if len(vocab) > shortlist and word_vectors is None:
        word_vectors = encoder.encode(vocab)
    for _ in range(budget):
        words = vocab
        if len(vocab) > shortlist:
            vec = current_vec.to(model.text).clone().requires_grad_(True)
            (grad,) = torch.autograd.grad(problem.soft(vec[None]).sum(), vec)
            align = word_vectors.to(grad) @ grad
            words = [vocab[i] for i in torch.topk(align, shortlist).indices.tolist()]
        candidates = []
        for word in words:
            candidates.append(("append", None, word))
            if substitute:
                candidates += [("substitute", p, word) for p in range(len(current.words))
                               if current.words[p] != word]
        texts = [current.with_words(apply_edits(current.words, [c])) for c in candidates]
        vectors = encoder.encode([t.text for t in texts])
        if max_shift is not None:
            shift = 1 - vectors @ original.to(vectors)
            allowed = shift <= max_shift
        else:
            allowed = torch.ones(len(candidates), dtype=torch.bool)
        if not bool(allowed.any()):
            break
        values = objective(vectors).cpu()
        values[~allowed] = -math.inf
        pick = int(values.argmax())
        if float(values[pick]) <= best:
            break
        best = float(values[pick])
        edits.append(candidates[pick])
        current, current_vec = texts[pick], vectors[pick]
        history.append((current.title, float(problem.hits(current_vec[None])[0])))
    after = float(problem.hits(current_vec[None])[0])
    shift = float(1 - current_vec.to(original) @ original)
    return AttackResult(text, current, edits, before, after, current_vec, shift,
                        getattr(encoder, "calls", 0) - start_calls, history)


def benign_edits(text: ItemText, seed: int = 0) -> list[tuple[str, ItemText]]:
    """Edits an honest seller makes: fix the year (±1), add one of the item's genres to the
    title, a typo (two neighbouring letters swapped in one word). ``(kind, edited)`` pairs."""
    rng = random.Random(seed)
    out = []
    if text.year is not None:
        out.append(("year", ItemText(text.words, text.year + rng.choice((-1, 1)), text.genres)))
    if text.genres:
        out.append(("genre word", text.with_words(text.words + (rng.choice(text.genres),))))
    long_words = [p for p, w in enumerate(text.words) if len(w) >= 4 and w.isalpha()]
    if long_words:
        p = rng.choice(long_words)
        w = text.words[p]
        c = rng.randrange(len(w) - 1)
        typo = w[:c] + w[c + 1] + w[c] + w[c + 2:]
        words = list(text.words)
        words[p] = typo
        out.append(("typo", text.with_words(words)))
    return out


def embedding_shift(before: torch.Tensor, after: torch.Tensor) -> torch.Tensor:
    """Cosine distance ``1 − cos`` between rows of ``before`` and ``after``."""
    if before.shape != after.shape:
        raise ValueError("before and after must have the same shape")
    return 1 - torch.nn.functional.cosine_similarity(before, after, dim=-1)


def detection_scores(flags, adversarial) -> dict:
    """Precision and recall of ``flags`` (boolean, one per edit) for ``adversarial`` edits."""
    flags = torch.as_tensor(flags, dtype=torch.bool)
    adversarial = torch.as_tensor(adversarial, dtype=torch.bool)
    if flags.shape != adversarial.shape or flags.dim() != 1:
        raise ValueError("flags and adversarial must be 1-D and of the same length")
    tp = int((flags & adversarial).sum())
    flagged, positives = int(flags.sum()), int(adversarial.sum())
    return {"precision": tp / flagged if flagged else float("nan"),
            "recall": tp / positives if positives else float("nan"),
            "flagged": flagged, "true_positives": tp}
