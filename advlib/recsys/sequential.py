r"""A transformer sequence recommender (SASRec), its adversarial training, and the
history-substitution attack.

Defined in chapter 8.

* Data: :func:`sequence_split` orders each user's interactions in time and splits them
  leave-one-out (:func:`advlib.recsys.leave_one_out_split`): the latest item is the test item,
  the one before it the validation item. Sequences hold ``item + 1`` so that ``0`` is padding;
  they are left-padded to ``max_len``, the most recent item last. The ranking tasks of
  :mod:`advlib.recsys.metrics` exclude each user's history from the ranking, as in chapter 5.
* Model: :class:`SASRec` (Kang & McAuley 2018): item embedding + learned positional embedding,
  causal self-attention blocks with dropout and layer norm, and the item embeddings again as the
  output layer. It is trained with full softmax cross-entropy over all items at every position
  (:func:`train_sasrec`).
* Adversarial training: with ``eps > 0`` every step adds ``reg_adv`` times the loss of the same
  batch with each input position's item embedding moved by ``eps`` along its own gradient
  (:func:`input_perturbation`: one APR-style step, or ``steps`` projected steps).
* Attack: :func:`substitution_path` replaces up to ``r`` items of each user's input sequence,
  greedily by the first-order gain of the attack objective (``method="gradient"``) or at random
  (the control); untargeted (push the model's current top ``k`` down) or targeted (push one item
  up). :func:`target_hit_rate` measures a target's HR@k among users.
"""
from __future__ import annotations

import copy
import math
import time
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from .._checks import check_eps
from ..runtime import progress as progress_bar
from ._threads import cpu_threads
from .data import ImplicitData, Split, leave_one_out_split
from .metrics import RankingTask, evaluate, ranking_task
from .training import TrainResult, apr_delta

__all__ = ["PAD", "SeqData", "sequence_split", "pad_left", "training_windows", "SASRec",
           "attention_mask", "substitution_gain",
           "sequence_loss", "input_perturbation", "train_sasrec", "sequence_scores",
           "subset_task", "substitution_path", "target_ranks", "target_hit_rate"]

PAD = 0  # the padding index of every sequence; item i is stored as i + 1


def _positive_int(value, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value <= 0:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")
    return int(value)


def pad_left(items, max_len: int) -> torch.Tensor:
    """The last ``max_len`` of ``items`` (0-based item indices) as ``item + 1``, left-padded
    with :data:`PAD` to length ``max_len``."""
    max_len = _positive_int(max_len, "max_len")
    items = torch.as_tensor(items, dtype=torch.int64).flatten()[-max_len:]
    if len(items) and int(items.min()) < 0:
        raise ValueError("item indices must be >= 0")
    out = torch.zeros(max_len, dtype=torch.int64)
    if len(items):
        out[max_len - len(items):] = items + 1
    return out


@dataclass(frozen=True, eq=False)
class SeqData:
    """Leave-one-out by time, as sequences. Defined in chapter 8.

    ``split``: the interactions (:func:`advlib.recsys.leave_one_out_split`); ``train_seqs[u]``:
    user ``u``'s training items in time order (0-based); ``valid_input`` / ``test_input``:
    ``[n_users, max_len]`` inputs that predict the validation item (the training sequence) and
    the test item (the training sequence plus the validation item), as ``item + 1``.
    """

    split: Split
    train_seqs: list
    valid_input: torch.Tensor
    test_input: torch.Tensor
    max_len: int

    @property
    def n_users(self) -> int:
        return self.split.n_users

    @property
    def n_items(self) -> int:
        return self.split.n_items

    def __repr__(self) -> str:
        lengths = [len(s) for s in self.train_seqs]
        return (f"SeqData({self.n_users:,} users, {self.n_items:,} items, max_len {self.max_len}; "
                f"training sequences of {min(lengths)} to {max(lengths)} items, "
                f"median {int(np.median(lengths))})")


def sequence_split(data: ImplicitData, max_len: int = 50) -> SeqData:
    """Each user's interactions in time order (ties broken by item index, as
    :func:`advlib.recsys.leave_one_out_split` does): the last is the test item, the one before
    it the validation item, the rest the training sequence. Users with fewer than three
    interactions keep them all in training and have no validation or test item."""
    max_len = _positive_int(max_len, "max_len")
    split = leave_one_out_split(data)
    user = data.interactions.user.cpu().numpy()
    item = data.interactions.item.cpu().numpy()
    order = np.lexsort((item, data.timestamp.cpu().numpy(), user))
    ends = np.cumsum(np.bincount(user, minlength=data.n_users))
    starts = np.concatenate([[0], ends[:-1]])
    ordered = torch.from_numpy(item[order].astype(np.int64))
    train_seqs, valid_in, test_in = [], [], []
    for u in range(data.n_users):
        seq = ordered[starts[u]:ends[u]]
        train = seq[:-2] if len(seq) >= 3 else seq
        train_seqs.append(train)
        valid_in.append(pad_left(train, max_len))
        test_in.append(pad_left(seq[:-1] if len(seq) >= 3 else seq, max_len))
    return SeqData(split, train_seqs, torch.stack(valid_in), torch.stack(test_in), max_len)


def training_windows(train_seqs, max_len: int, windows: int | None = None
                     ) -> tuple[torch.Tensor, torch.Tensor]:
    """Next-item training pairs: for a sequence ``s_1 … s_n``, inputs ``s_1 … s_{n-1}`` and
    targets ``s_2 … s_n``, cut from the end into windows of ``max_len`` (every target is
    predicted once), left-padded; ``windows`` keeps only that many windows per user, the most
    recent (``1``: the authors' choice, the last ``max_len`` items only; ``None``: all).
    Returns ``(inputs, targets)``, both ``[windows, max_len]`` as ``item + 1`` with
    :data:`PAD` where there is nothing to predict."""
    max_len = _positive_int(max_len, "max_len")
    if windows is not None:
        windows = _positive_int(windows, "windows")
    inputs, targets = [], []
    for seq in train_seqs:
        seq = torch.as_tensor(seq, dtype=torch.int64)
        ends = range(len(seq), 1, -max_len)
        for end in ends[:windows] if windows else ends:
            start = max(end - max_len - 1, 0)
            window = seq[start:end]
            inputs.append(pad_left(window[:-1], max_len))
            targets.append(pad_left(window[1:], max_len))
    if not inputs:
        raise ValueError("no sequence has two items: nothing to train on")
    return torch.stack(inputs), torch.stack(targets)


def attention_mask(seqs: torch.Tensor) -> torch.Tensor:
    """``blocked[b, t, s]``: may position ``t`` of sequence ``b`` *not* attend to position
    ``s``? True for the future (``s > t``) and for padding keys, except on the diagonal (a
    padding position attends to itself, so no row of the softmax is empty)."""
    length = seqs.shape[1]
    future = torch.ones(length, length, dtype=torch.bool, device=seqs.device).triu(1)
    blocked = future | (seqs == PAD).unsqueeze(1)  # [B, L, L]: query t, key s
    return blocked & ~torch.eye(length, dtype=torch.bool, device=seqs.device)


def substitution_gain(grad: torch.Tensor, table: torch.Tensor, seqs: torch.Tensor) -> torch.Tensor:
    """First-order gain of putting item ``j`` at position ``p``: ``gain[b, p, j] =
    (table[j + 1] − table[seqs[b, p]]) · grad[b, p]``, for ``grad`` the gradient of the
    attacker's objective with respect to the input embeddings and ``table`` the item
    embeddings (row 0 = padding)."""
    return grad @ table[1:].T - (grad * table[seqs]).sum(-1, keepdim=True)


class _Block(nn.Module):
    """One SASRec block as in the authors' code: ``x = LN(x) + attention(LN(x), x, x)``, then a
    point-wise feed-forward layer with a residual connection, dropout in both."""

    def __init__(self, dim: int, heads: int, dropout: float):
        super().__init__()
        self.norm_attention = nn.LayerNorm(dim)
        self.attention = nn.MultiheadAttention(dim, heads, dropout=dropout, batch_first=True)
        self.norm_ff = nn.LayerNorm(dim)
        self.ff = nn.Sequential(nn.Linear(dim, dim), nn.ReLU(), nn.Dropout(dropout),
                                nn.Linear(dim, dim), nn.Dropout(dropout))

    def forward(self, x: torch.Tensor, blocked: torch.Tensor) -> torch.Tensor:
        q = self.norm_attention(x)
        attended, _ = self.attention(q, x, x, attn_mask=blocked, need_weights=False)
        x = q + attended
        x = self.norm_ff(x)
        return x + self.ff(x)


class SASRec(nn.Module):
    """Self-attentive sequential recommendation (Kang & McAuley 2018). Defined in chapter 8.

    ``item``: ``[n_items + 1, dim]`` embeddings (row 0 = padding, kept at zero) that are both
    the input and the output layer; ``position``: ``[max_len, dim]`` learned positional
    embeddings, counted from the end (the most recent item always has position ``max_len - 1``,
    so left-padding does not shift anything). Position ``t`` attends to positions ``<= t``
    that are not padding.
    """

    def __init__(self, n_items: int, max_len: int = 50, dim: int = 64, blocks: int = 2,
                 heads: int = 1, dropout: float = 0.2, seed: int = 0):
        super().__init__()
        for value, name in ((n_items, "n_items"), (max_len, "max_len"), (dim, "dim"),
                            (blocks, "blocks"), (heads, "heads")):
            _positive_int(value, name)
        if dim % heads:
            raise ValueError(f"dim ({dim}) must be a multiple of heads ({heads})")
        if not 0 <= dropout < 1:
            raise ValueError(f"dropout must lie in [0, 1), got {dropout!r}")
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            self.item = nn.Embedding(n_items + 1, dim, padding_idx=PAD)
            self.position = nn.Embedding(max_len, dim)
            for table in (self.item, self.position):
                nn.init.normal_(table.weight, std=0.02)
            with torch.no_grad():
                self.item.weight[PAD].zero_()
            self.norm_input = nn.LayerNorm(dim)
            self.dropout = nn.Dropout(dropout)
            self.blocks = nn.ModuleList(_Block(dim, heads, dropout) for _ in range(blocks))
            self.norm_output = nn.LayerNorm(dim)
        self.n_items, self.max_len, self.heads = n_items, max_len, heads

    def embed(self, seqs: torch.Tensor) -> torch.Tensor:
        """The input item embeddings of ``seqs`` (``[B, L, dim]``), where attacks and
        adversarial training act."""
        return self.item(self._check(seqs))

    def _check(self, seqs: torch.Tensor) -> torch.Tensor:
        if seqs.dim() != 2 or seqs.is_floating_point():
            raise ValueError(f"seqs must be a [batch, length] tensor of item indices + 1, got "
                             f"shape {tuple(seqs.shape)} and dtype {seqs.dtype}")
        if seqs.shape[1] > self.max_len:
            raise ValueError(f"sequences have length {seqs.shape[1]} > max_len {self.max_len}")
        if seqs.numel() and (int(seqs.min()) < 0 or int(seqs.max()) > self.n_items):
            raise ValueError(f"sequence entries must lie in [0, {self.n_items}] (0 = padding)")
        return seqs

    def hidden(self, seqs: torch.Tensor, embedded: torch.Tensor | None = None) -> torch.Tensor:
        """The output of the last block at every position, ``[B, L, dim]`` (zero at padding).
        ``embedded`` replaces ``self.embed(seqs)`` (e.g. perturbed input embeddings)."""
        seqs = self._check(seqs)
        length = seqs.shape[1]
        x = self.embed(seqs) if embedded is None else embedded
        positions = torch.arange(self.max_len - length, self.max_len, device=seqs.device)
        real = (seqs != PAD).unsqueeze(-1)
        x = self.dropout(self.norm_input(x + self.position(positions))) * real
        blocked = attention_mask(seqs).repeat_interleave(self.heads, dim=0)
        for block in self.blocks:
            x = block(x, blocked) * real
        return self.norm_output(x) * real

    def forward(self, seqs: torch.Tensor, embedded: torch.Tensor | None = None) -> torch.Tensor:
        """Scores of every item at every position, ``[B, L, n_items]``: the hidden state times
        the item embeddings (the same table as the input; the padding row is left out)."""
        return self.hidden(seqs, embedded) @ self.item.weight[1:].T

    @torch.no_grad()
    def scores(self, seqs: torch.Tensor) -> torch.Tensor:
        """Next-item scores after each sequence, ``[B, n_items]`` (the last position)."""
        return self.hidden(seqs)[:, -1] @ self.item.weight[1:].T


def sequence_loss(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Mean softmax cross-entropy over all items at every position with a target (targets are
    ``item + 1``; :data:`PAD` positions are ignored)."""
    return F.cross_entropy(logits.reshape(-1, logits.shape[-1]), targets.reshape(-1) - 1,
                           ignore_index=PAD - 1)


def input_perturbation(model: SASRec, inputs: torch.Tensor, targets: torch.Tensor, eps,
                       steps: int = 1, embedded: torch.Tensor | None = None) -> torch.Tensor:
    """The worst-case change of the input item embeddings for the loss of ``(inputs,
    targets)``: every position's embedding moves by at most ``eps`` (ℓ2). One step (APR):
    ``eps · g / ‖g‖`` per position; ``steps > 1``: projected gradient ascent with step
    ``2.5 · eps / steps``. Padding positions stay put. Returns a detached ``[B, L, dim]``."""
    eps = check_eps(eps)
    steps = _positive_int(steps, "steps")
    base = (model.embed(inputs) if embedded is None else embedded).detach()
    delta = torch.zeros_like(base)
    if eps == 0:
        return delta
    real = (inputs != PAD).unsqueeze(-1)
    alpha = eps if steps == 1 else 2.5 * eps / steps
    for _ in range(steps):
        delta.requires_grad_(True)
        loss = sequence_loss(model(inputs, base + delta), targets)
        (grad,) = torch.autograd.grad(loss, delta)
        step = apr_delta(grad.reshape(-1, grad.shape[-1]), alpha).view_as(grad)
        delta = delta.detach() + step * real
        norm = delta.norm(dim=-1, keepdim=True)
        delta = torch.where(norm > eps, delta * eps / norm.clamp(min=1e-30), delta)
    return delta.detach()


def sequence_scores(model: SASRec, inputs: torch.Tensor, chunk: int = 1024):
    """``users -> scores [len(users), n_items]`` from the rows ``inputs[users]``, for
    :func:`advlib.recsys.evaluate`."""

    def scores_of(users: torch.Tensor) -> torch.Tensor:
        rows = inputs.to(users.device)[users]
        return torch.cat([model.scores(rows[s:s + chunk]) for s in range(0, len(rows), chunk)])

    return scores_of


def subset_task(task: RankingTask, users: torch.Tensor) -> RankingTask:
    """The rows of ``task`` whose user is in ``users``."""
    keep = torch.isin(task.users, users.to(task.users.device))
    return RankingTask(task.users[keep], task.targets[keep], task.exclude[keep],
                       task.popularity, task.n_items)


def train_sasrec(data: SeqData, *, dim: int = 64, blocks: int = 2, heads: int = 1,
                 dropout: float = 0.2, epochs: int = 200, batch_size: int = 128,
                 lr: float = 1e-3, weight_decay: float = 0.0, eps: float = 0.0,
                 reg_adv: float = 1.0, steps: int = 1, seed: int = 0, patience: int = 3,
                 eval_every: int = 2, device=None, progress: bool = False,
                 windows: int | None = None, model: SASRec | None = None,
                 threads: int | None = 1) -> TrainResult:
    """SASRec trained with Adam on softmax cross-entropy over all items (every position of
    every window of :func:`training_windows`), early stopping on validation NDCG@10 (full
    ranking, history excluded) with ``patience`` evaluations without improvement.

    ``eps > 0`` (and ``reg_adv > 0``) trains adversarially: each batch's loss is
    ``L(E) + reg_adv · L(E + Δ)`` with ``Δ`` from :func:`input_perturbation` (``steps``
    gradient steps) on the input item embeddings ``E``. At ``eps = 0`` it is plain training.
    ``model`` continues training a copy. Returns :class:`advlib.recsys.TrainResult`; history
    entries hold ``epoch``, ``loss`` and ``valid`` (NDCG@10). Defined in chapter 8.
    """
    eps, reg_adv = check_eps(eps), check_eps(reg_adv)
    for value, name in ((epochs, "epochs"), (batch_size, "batch_size"), (patience, "patience"),
                        (eval_every, "eval_every"), (steps, "steps")):
        _positive_int(value, name)
    if not (lr > 0 and math.isfinite(lr)):
        raise ValueError(f"lr must be positive, got {lr!r}")
    device = torch.device(device) if device is not None else torch.device("cpu")
    if model is None:
        model = SASRec(data.n_items, data.max_len, dim, blocks, heads, dropout, seed)
    else:
        model = copy.deepcopy(model)
    with cpu_threads(threads, device), torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return _fit(model.to(device), data, epochs=epochs, batch_size=batch_size, lr=lr,
                    weight_decay=weight_decay, eps=eps, reg_adv=reg_adv, steps=steps,
                    seed=seed, patience=patience, eval_every=eval_every, device=device,
                    progress=progress, windows=windows)


def _fit(model, data, *, epochs, batch_size, lr, weight_decay, eps, reg_adv, steps, seed,
         patience, eval_every, device, progress, windows) -> TrainResult:
    inputs, targets = (t.to(device) for t in training_windows(data.train_seqs, data.max_len,
                                                               windows))
    valid = ranking_task(data.split, "valid").to(device)
    valid_input = data.valid_input.to(device)
    generator = torch.Generator().manual_seed(seed)
    opt = torch.optim.Adam(model.parameters(), lr=lr, weight_decay=weight_decay)
    result = TrainResult(model)
    best_state = None
    start = time.perf_counter()
    bar = progress_bar(range(1, epochs + 1), enabled=progress, desc="SASRec" + (
        f" AT eps={eps}" if eps > 0 else ""), leave=False)
    for epoch in bar:
        tick = time.perf_counter()
        model.train()
        order = torch.randperm(len(inputs), generator=generator).to(device)
        total = 0.0
        for s in range(0, len(order), batch_size):
            x, y = inputs[order[s:s + batch_size]], targets[order[s:s + batch_size]]
            embedded = model.embed(x)
            loss = sequence_loss(model(x, embedded), y)
            if eps > 0 and reg_adv > 0:
                if steps == 1:  # APR: the gradient of this very loss, no second pass
                    (grad,) = torch.autograd.grad(loss, embedded, retain_graph=True)
                    delta = apr_delta(grad.reshape(-1, grad.shape[-1]), eps).view_as(grad)
                    delta = delta * (x != PAD).unsqueeze(-1)
                else:
                    delta = input_perturbation(model, x, y, eps, steps, embedded)
                loss = loss + reg_adv * sequence_loss(model(x, embedded + delta), y)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            with torch.no_grad():
                model.item.weight[PAD].zero_()
            total += loss.item() * len(x)
        result.train_seconds += time.perf_counter() - tick
        result.epochs_run = epoch
        mean_loss = total / len(inputs)
        if not math.isfinite(mean_loss):
            raise FloatingPointError(f"the training loss diverged at epoch {epoch}: lower lr")
        if epoch % eval_every and epoch != epochs:
            result.history.append({"epoch": epoch, "loss": mean_loss})
            continue
        model.eval()
        ndcg = evaluate(sequence_scores(model, valid_input), valid)["ndcg"]
        result.history.append({"epoch": epoch, "loss": mean_loss, "valid": ndcg})
        bar.set_postfix(loss=f"{mean_loss:.3f}", valid_ndcg=f"{ndcg:.4f}", refresh=False)
        if math.isnan(result.best_valid) or ndcg > result.best_valid:
            result.best_valid, result.best_epoch = ndcg, epoch
            best_state = copy.deepcopy(model.state_dict())
        elif (epoch - result.best_epoch) // eval_every >= patience:
            break
    if best_state is not None:
        model.load_state_dict(best_state)
    model.eval()
    result.seconds = time.perf_counter() - start
    return result


def _check_budget(r) -> int:
    if isinstance(r, bool) or not isinstance(r, (int, np.integer)) or r < 0:
        raise ValueError(f"the substitution budget r must be an integer >= 0, got {r!r}")
    return int(r)


def _attack_objective(model: SASRec, seqs, embedded, target, clean_top) -> torch.Tensor:
    """What the attacker maximises, summed over users: the cross-entropy of the clean top-k
    items (untargeted: push the current recommendations down) or the log-probability of the
    target item (targeted: push it up)."""
    log_p = F.log_softmax(model.hidden(seqs, embedded)[:, -1] @ model.item.weight[1:].T, -1)
    if target is None:
        return -log_p.gather(1, clean_top).sum()
    return log_p[:, target].sum()


def substitution_path(model: SASRec, seqs: torch.Tensor, r: int, *, target: int | None = None,
                      method: str = "gradient", k: int = 10, forbid: torch.Tensor | None = None,
                      seed: int = 0, chunk: int | None = None) -> list[torch.Tensor]:
    """Substitute up to ``r`` items of each input sequence (a history-substitution, or profile
    pollution, attack); returns ``[seqs, after 1, …, after r]`` (new tensors; ``seqs`` is not
    changed). Only real (non-padding) positions are substituted, each at most once, and never
    by the item already there or by ``forbid[u]`` (e.g. the user's held-out item, or the
    target). Defined in chapter 8.

    * ``method="gradient"``: greedily, one substitution per round, the (position, item) pair
      with the largest first-order gain ``(e_new − e_old) · ∇_e J`` of the attacker's objective
      ``J`` at the current sequence (white box: the attacker knows the model).
      ``target=None``: ``J`` is the cross-entropy of the model's clean top ``k`` (the
      attacker does not know the held-out item); ``target=t``: ``J = log p(t)``.
    * ``method="random"``: the same number of positions at random, each replaced by a
      uniformly random item (the control).
    """
    r = _check_budget(r)
    if method not in ("gradient", "random"):
        raise ValueError(f"method must be 'gradient' or 'random', got {method!r}")
    seqs = model._check(seqs)
    if bool((seqs == PAD).all(1).any()):
        raise ValueError("a sequence is empty (all padding): there is no history to substitute")
    if target is not None and not 0 <= int(target) < model.n_items:
        raise ValueError(f"target must be an item index in [0, {model.n_items}), got {target!r}")
    if forbid is not None:
        forbid = torch.as_tensor(forbid, dtype=torch.int64, device=seqs.device).view(len(seqs), -1)
    path = [seqs.clone()]
    if r == 0:
        return path
    if method == "random":
        return _random_path(model, seqs, r, forbid, seed)
    was_training = model.training
    model.eval()
    try:
        chunk = chunk or max(1, int(2e7 // (seqs.shape[1] * model.n_items)))
        parts = [_gradient_path(model, seqs[s:s + chunk], r, target, k,
                                None if forbid is None else forbid[s:s + chunk])
                 for s in range(0, len(seqs), chunk)]
    finally:
        model.train(was_training)
    return [seqs.clone()] + [torch.cat([p[step] for p in parts]) for step in range(1, r + 1)]


def _gradient_path(model, seqs, r, target, k, forbid) -> list[torch.Tensor]:
    table = model.item.weight.detach()
    current = seqs.clone()
    with torch.no_grad():
        clean_top = model.scores(seqs).topk(k, dim=1).indices if target is None else None
    free = current != PAD  # positions still allowed to change
    banned = None
    if forbid is not None:  # [B, n_items]: items that may not be inserted (-1: none)
        banned = torch.zeros(len(seqs), model.n_items, dtype=torch.bool, device=seqs.device)
        row, col = (forbid >= 0).nonzero(as_tuple=True)
        banned[row, forbid[row, col]] = True
    rows = torch.arange(len(seqs), device=seqs.device)
    path = [seqs.clone()]
    for _ in range(r):
        embedded = table[current].clone().requires_grad_(True)
        objective = _attack_objective(model, current, embedded, target, clean_top)
        (grad,) = torch.autograd.grad(objective, embedded)
        gain = substitution_gain(grad, table, current)
        gain[~free] = float("-inf")
        gain.scatter_(2, (current - 1).clamp(min=0).unsqueeze(-1), float("-inf"))
        if target is not None:
            gain[..., target] = float("-inf")
        if banned is not None:
            gain.masked_fill_(banned.unsqueeze(1), float("-inf"))
        best = gain.flatten(1).argmax(1)
        position, item = best // model.n_items, best % model.n_items
        can = torch.isfinite(gain.flatten(1)[rows, best])
        current = current.clone()
        current[rows[can], position[can]] = item[can] + 1
        free[rows[can], position[can]] = False
        path.append(current.clone())
    return path


def _random_path(model, seqs, r, forbid, seed) -> list[torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    keys = torch.rand(seqs.shape, generator=g).to(seqs.device)
    keys[seqs == PAD] = 2.0  # real positions first, in random order
    order = keys.argsort(dim=1)
    rows = torch.arange(len(seqs), device=seqs.device)
    current, path = seqs.clone(), [seqs.clone()]
    for step in range(r):
        if step >= seqs.shape[1]:
            path.append(current.clone())
            continue
        position = order[:, step]
        old = current[rows, position]
        new = torch.randint(model.n_items, (len(seqs),), generator=g).to(seqs.device) + 1
        bad = new == old
        if forbid is not None:
            bad |= (forbid == (new - 1).unsqueeze(1)).any(1)
        while bool(bad.any()):
            new[bad] = torch.randint(model.n_items, (int(bad.sum()),), generator=g).to(seqs.device) + 1
            bad = new == old
            if forbid is not None:
                bad |= (forbid == (new - 1).unsqueeze(1)).any(1)
        ok = old != PAD
        current = current.clone()
        current[rows[ok], position[ok]] = new[ok]
        path.append(current.clone())
    return path


@torch.no_grad()
def target_ranks(model: SASRec, inputs: torch.Tensor, task: RankingTask, target: int) -> torch.Tensor:
    """The rank of ``target`` (0 = first) in each ranking of ``task``, the user's known items
    excluded as in :func:`advlib.recsys.evaluate`, for the users who have not interacted with
    it (neither known nor held out). ``inputs`` are the rows of ``task.users``, in that order."""
    if len(inputs) != len(task.users):
        raise ValueError("inputs must hold one sequence per user of the task")
    if not 0 <= int(target) < model.n_items:
        raise ValueError(f"target must be an item index in [0, {model.n_items}), got {target!r}")
    fair = ~task.exclude[:, target] & ~task.targets[:, target]
    if not bool(fair.any()):
        raise ValueError(f"every user of the task already knows item {target}")
    scores = sequence_scores(model, inputs)(torch.arange(len(inputs), device=inputs.device))
    scores = scores.masked_fill(task.exclude.to(scores.device), float("-inf"))
    rank = (scores > scores[:, target:target + 1]).sum(1)
    return rank[fair.to(rank.device)]


def target_hit_rate(model: SASRec, inputs: torch.Tensor, task: RankingTask, target: int,
                    k: int = 10) -> float:
    """Share of the users of :func:`target_ranks` who have ``target`` in their top ``k``."""
    return (target_ranks(model, inputs, task, target) < k).double().mean().item()
