r"""Training matrix factorisation with BPR, and adversarially with APR.

Defined in chapter 5.

:func:`train_bpr` minimises the BPR loss with Adam on mini-batches of (user, positive,
negative) triples, one fresh uniform negative per training interaction and epoch.
:func:`train_apr` is Adversarial Personalized Ranking (He et al. 2018): on every mini-batch,

1. the gradient ``g`` of the batch's BPR loss with respect to the embedding tables gives, per
   user row and per item row, the worst-case direction of a small change of that row;
   :func:`apr_delta` scales it to length ``eps``: ``Δ = eps · g / ‖g‖`` (rows with no gradient
   stay unperturbed);
2. the model descends on ``BPR(P, Q) + reg_adv · BPR(P + ΔP, Q + ΔQ)``, with ``Δ`` held fixed.

APR is meant to start from a converged BPR model (pass it as ``model``); ``model=None`` starts
from scratch, which the chapter shows to be a mistake.

Both keep the model of the epoch with the best validation NDCG@10 (early stopping with
``patience`` evaluations without improvement) and report test numbers only for that epoch;
``watch`` records a second task (the test set) on every evaluation for the leakage box, and is
never used to choose anything.
"""
from __future__ import annotations

import copy
import math
import time
from dataclasses import dataclass, field

import torch

from ..runtime import progress as progress_bar
from ._threads import cpu_threads
from .data import Interactions
from .metrics import RankingTask, evaluate
from .models import MF, bpr_loss
from .sampling import PairSet, sample_negatives

__all__ = ["TrainResult", "train_bpr", "train_apr", "apr_delta", "apr_perturbation"]


@dataclass
class TrainResult:
    """A trained model and its history. Defined in chapter 5.

    ``history``: one dict per evaluation (``epoch``, ``loss``: mean training loss of that epoch,
    ``valid``: validation NDCG@10, ``watch``: NDCG@10 of the watched task if any).
    ``best_epoch`` is the epoch whose model is returned (0 = the starting model);
    ``train_seconds`` counts the optimisation only, ``seconds`` includes the evaluations.
    """

    model: MF
    history: list = field(default_factory=list)
    best_epoch: int = 0
    best_valid: float = float("nan")
    epochs_run: int = 0
    train_seconds: float = 0.0
    seconds: float = 0.0

    def seconds_per_epoch(self) -> float:
        return self.train_seconds / max(self.epochs_run, 1)


def _check_eps(eps, name: str = "eps") -> float:
    if isinstance(eps, bool) or not isinstance(eps, (int, float)) or not math.isfinite(eps) or eps < 0:
        raise ValueError(f"{name} must be a finite number >= 0, got {eps!r}")
    return float(eps)


def apr_delta(grad: torch.Tensor, eps) -> torch.Tensor:
    """APR's perturbation of an embedding table: every row of ``grad`` scaled to length
    ``eps`` (``eps · g / ‖g‖``); a row whose gradient is zero gets no perturbation.

    ``eps`` is a number, or a tensor with one value per row."""
    if isinstance(eps, torch.Tensor):
        if eps.dim() > 1 or (eps.dim() == 1 and len(eps) != len(grad)) or bool((eps < 0).any()) \
                or not bool(torch.isfinite(eps).all()):
            raise ValueError("eps must be >= 0 and finite, one value or one per row")
        eps = eps.to(grad).view(-1, 1) if eps.dim() == 1 else eps.to(grad)
    else:
        eps = _check_eps(eps)
    if grad.dim() != 2:
        raise ValueError(f"grad must be a [rows, dim] table, got shape {tuple(grad.shape)}")
    norm = grad.norm(dim=1, keepdim=True)
    return torch.where(norm > 0, eps * grad / norm.clamp(min=1e-30), torch.zeros_like(grad))


def apr_perturbation(user_table: torch.Tensor, item_table: torch.Tensor, user: torch.Tensor,
                     pos: torch.Tensor, neg: torch.Tensor, eps) -> tuple[torch.Tensor, torch.Tensor]:
    """``(ΔP, ΔQ)``: per-row worst-case directions of the BPR loss of the triples, length ``eps``
    (detached). Rows that the triples do not touch get zero."""
    _check_eps(eps) if not isinstance(eps, torch.Tensor) else None
    P = user_table.detach().requires_grad_(True)
    Q = item_table.detach().requires_grad_(True)
    grad_p, grad_q = torch.autograd.grad(bpr_loss(P, Q, user, pos, neg), (P, Q))
    return apr_delta(grad_p, eps), apr_delta(grad_q, eps)


def _batch_loss(model, u, i, j, adversarial: bool, eps: float, reg_adv: float) -> torch.Tensor:
    """BPR loss of one batch, plus ``reg_adv`` · BPR under APR's perturbation when
    ``adversarial``. :class:`MF` is perturbed on its two tables. Any other model describes
    where it is perturbed: ``adv_inputs()`` returns ``(user_input, item_input)`` (``None``:
    not perturbed), tensors in the graph of ``tables_from(user_input, item_input)``, which
    returns the user and item tables (e.g. the raw text features of a content model, chapter 7).
    """
    if not hasattr(model, "adv_inputs"):
        loss = bpr_loss(model.user, model.item, u, i, j)
        if adversarial:
            grad_p, grad_q = torch.autograd.grad(loss, (model.user, model.item),
                                                 retain_graph=True)
            dp, dq = apr_delta(grad_p, eps), apr_delta(grad_q, eps)
            loss = loss + reg_adv * bpr_loss(model.user + dp, model.item + dq, u, i, j)
        return loss
    inputs = model.adv_inputs()
    loss = bpr_loss(*model.tables_from(*inputs), u, i, j)
    if adversarial:
        moved = [x for x in inputs if x is not None]
        grads = iter(torch.autograd.grad(loss, moved, retain_graph=True))
        perturbed = [None if x is None else x + apr_delta(next(grads), eps) for x in inputs]
        loss = loss + reg_adv * bpr_loss(*model.tables_from(*perturbed), u, i, j)
    return loss


def _positive_int(value, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")
    return value


def _fit(model: MF, train: Interactions, n_users: int, n_items: int, *, adversarial: bool,
         eps: float, reg_adv: float, epochs: int, batch_size: int, lr: float,
         weight_decay: float, seed: int, valid: RankingTask | None, watch: RankingTask | None,
         patience: int, eval_every: int, device, progress: bool, desc: str,
         threads: int | None = 1) -> TrainResult:
    device = torch.device(device) if device is not None else model.user.device
    with cpu_threads(threads, device):
        return _fit_loop(model, train, n_users, n_items, adversarial=adversarial, eps=eps,
                         reg_adv=reg_adv, epochs=epochs, batch_size=batch_size, lr=lr,
                         weight_decay=weight_decay, seed=seed, valid=valid, watch=watch,
                         patience=patience, eval_every=eval_every, device=device,
                         progress=progress, desc=desc)


def _fit_loop(model: MF, train: Interactions, n_users: int, n_items: int, *, adversarial: bool,
              eps: float, reg_adv: float, epochs: int, batch_size: int, lr: float,
              weight_decay: float, seed: int, valid: RankingTask | None,
              watch: RankingTask | None, patience: int, eval_every: int, device, progress: bool,
              desc: str) -> TrainResult:
    _positive_int(epochs, "epochs")
    _positive_int(batch_size, "batch_size")
    _positive_int(eval_every, "eval_every")
    _positive_int(patience, "patience")
    if not lr > 0 or not math.isfinite(lr):
        raise ValueError(f"lr must be positive, got {lr!r}")
    _check_eps(weight_decay, "weight_decay")
    if len(train) == 0:
        raise ValueError("the training set is empty")
    train.check(n_users, n_items, "train")
    if model.n_users != n_users or model.n_items != n_items:
        raise ValueError(f"the model has {model.n_users} users × {model.n_items} items, the data "
                         f"{n_users} × {n_items}")
    model = model.to(device)
    train = train.to(device)
    valid = valid.to(device) if valid is not None else None
    watch = watch.to(device) if watch is not None else None
    positives = PairSet(train, n_users, n_items)
    generator = torch.Generator().manual_seed(seed)
    opt = torch.optim.Adam(model.parameters(), lr=lr, weight_decay=weight_decay)
    result = TrainResult(model)
    start = time.perf_counter()

    def checkpoint(epoch: int, loss: float) -> bool:
        """Evaluate; keep the best model; True when patience has run out."""
        model.eval()
        entry = {"epoch": epoch, "loss": loss, "valid": evaluate(model, valid)["ndcg"]}
        if watch is not None:
            entry["watch"] = evaluate(model, watch)["ndcg"]
        result.history.append(entry)
        if entry["valid"] > result.best_valid or math.isnan(result.best_valid):
            result.best_valid, result.best_epoch = entry["valid"], epoch
            best_state[0] = copy.deepcopy(model.state_dict())
        model.train()
        waited = (epoch - result.best_epoch) // eval_every
        return waited >= patience

    best_state = [None]
    if valid is not None:
        checkpoint(0, float("nan"))
    bar = progress_bar(range(1, epochs + 1), enabled=progress, desc=desc, leave=False)
    for epoch in bar:
        tick = time.perf_counter()
        order = torch.randperm(len(train), generator=generator).to(device)
        user, pos = train.user[order], train.item[order]
        neg = sample_negatives(user, positives, generator)
        total = 0.0
        for s in range(0, len(train), batch_size):
            u, i, j = user[s:s + batch_size], pos[s:s + batch_size], neg[s:s + batch_size]
            loss = _batch_loss(model, u, i, j, adversarial and reg_adv > 0 and eps > 0,
                               eps, reg_adv)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            total += loss.item() * len(u)
        result.train_seconds += time.perf_counter() - tick
        result.epochs_run = epoch
        loss_mean = total / len(train)
        if not math.isfinite(loss_mean):
            raise FloatingPointError(f"the training loss diverged at epoch {epoch}: lower lr")
        if valid is not None and epoch % eval_every == 0:
            if checkpoint(epoch, loss_mean):
                break
            bar.set_postfix(valid_ndcg=f"{result.history[-1]['valid']:.4f}", refresh=False)
    if valid is not None and best_state[0] is not None:
        model.load_state_dict(best_state[0])
    elif valid is None:
        result.best_epoch = result.epochs_run
    model.eval()
    result.seconds = time.perf_counter() - start
    return result


def train_bpr(train: Interactions, n_users: int, n_items: int, *, dim: int = 64,
              init_std: float = 0.01, epochs: int = 300, batch_size: int = 4096,
              lr: float = 5e-3, weight_decay: float = 2e-5, seed: int = 0,
              valid: RankingTask | None = None, watch: RankingTask | None = None,
              patience: int = 4, eval_every: int = 5, device=None, progress: bool = False,
              model: MF | None = None, threads: int | None = 1) -> TrainResult:
    """BPR-MF trained with Adam; early stopping on ``valid`` NDCG@10 when given.

    The defaults are the chapter's recipe for MovieLens-100K (small initialisation, large
    batches, a little weight decay: NDCG@10 ≈ 0.30 in about 50 epochs). ``model`` continues
    training a copy of an existing model; by default a fresh
    ``MF(n_users, n_items, dim, init_std, seed)``. Any model with a ``user`` table, an ``item``
    table, ``n_users``, ``n_items`` and ``scores`` trains the same way (chapter 7's text towers,
    :class:`advlib.recsys.text.TextRec`). ``threads``: torch CPU threads while
    training on the CPU (restored afterwards; ``None`` keeps torch's setting): one is fastest
    for tables this small. Defined in chapter 5.
    """
    model = MF(n_users, n_items, dim, init_std, seed) if model is None else copy.deepcopy(model)
    return _fit(model, train, n_users, n_items, adversarial=False, eps=0.0, reg_adv=0.0,
                epochs=epochs, batch_size=batch_size, lr=lr, weight_decay=weight_decay, seed=seed,
                valid=valid, watch=watch, patience=patience, eval_every=eval_every, device=device,
                progress=progress, desc="BPR", threads=threads)


def train_apr(model: MF | None, train: Interactions, n_users: int, n_items: int, *,
              eps: float = 0.5, reg_adv: float = 1.0, dim: int = 64, init_std: float = 0.01,
              epochs: int = 100, batch_size: int = 4096, lr: float = 1e-3,
              weight_decay: float = 2e-5, seed: int = 0, valid: RankingTask | None = None,
              watch: RankingTask | None = None, patience: int = 4, eval_every: int = 5,
              device=None, progress: bool = False, threads: int | None = 1) -> TrainResult:
    """APR: BPR + ``reg_adv`` · BPR under the per-row worst-case perturbation of size ``eps``.

    ``model``: the converged BPR model to start from (a copy is trained); ``None`` starts from a
    fresh ``MF(n_users, n_items, dim, init_std, seed)``. A model other than :class:`MF` says
    where it is perturbed (``adv_inputs`` / ``tables_from``, see :func:`_batch_loss`): chapter
    7's text towers perturb each item's raw text vector. The defaults: the paper's ``eps`` and
    ``reg_adv``, and a learning rate 5 times lower than BPR's. Defined in chapter 5.
    """
    eps = _check_eps(eps)
    reg_adv = _check_eps(reg_adv, "reg_adv")
    model = MF(n_users, n_items, dim, init_std, seed) if model is None else copy.deepcopy(model)
    return _fit(model, train, n_users, n_items, adversarial=True, eps=eps, reg_adv=reg_adv,
                epochs=epochs, batch_size=batch_size, lr=lr, weight_decay=weight_decay, seed=seed,
                valid=valid, watch=watch, patience=patience, eval_every=eval_every, device=device,
                progress=progress, desc="APR", threads=threads)
