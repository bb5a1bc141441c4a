r"""Measuring robustness: clean accuracy, robust-accuracy tables and curves, and the sanity checks
that tell an honest evaluation from a broken one.

Defined in chapter 3; used by every later chapter.

* :func:`accuracy` — clean accuracy, in batches, in eval mode.
* :func:`robust_accuracy` — a tidy table (one row per ε) of accuracy under an attack, with the
  threat model beside every number (norm, ε, attack, steps, restarts).
* :func:`plot_robustness_curves` — accuracy against ε, one line per threat model.
* :func:`sanity_checks` — the checklist of Carlini et al. (2019, "On evaluating adversarial
  robustness") as a function: iterative beats single-step, more steps and restarts change little,
  accuracy falls with ε to about 0, white-box beats random noise, and the gradients are healthy
  (eval mode, deterministic outputs, logits rather than probabilities, no saturated softmax, the
  attack's loss really goes up).

An example counts as broken by PGD when the clean input or **any** PGD iterate (of any restart)
is misclassified: such an example cannot count as robust again (so robust accuracy never exceeds
clean accuracy, even when a random start lands on a correctly classified point). The iterates are checked for free (their logits
are computed for the gradient anyway), so the reported number is the same with and without
``early_stop`` — early stopping only skips the work on examples already broken. It can be a
little lower than the accuracy on the last iterates alone (what torchattacks and ART report), and
it is the stronger, correct evaluation.
"""
from __future__ import annotations

import math
import numbers
from typing import Callable, Sequence

import numpy as np
import pandas as pd
import torch

from . import attacks as _attacks
from .attacks import _check_eps, _check_inputs, _check_logits, _pgd, eval_mode

__all__ = ["accuracy", "robust_accuracy", "plot_robustness_curves", "sanity_checks",
           "TABLE_COLUMNS"]

TABLE_COLUMNS = ["attack", "norm", "eps", "steps", "restarts", "alpha", "accuracy", "n"]
_NAMES = {"fgsm": _attacks.fgsm, "pgd": _attacks.pgd, "noise": _attacks.random_noise,
          "random_noise": _attacks.random_noise, "zoo": _attacks.zoo}
_LABELS = {_attacks.fgsm: "FGSM", _attacks.pgd: "PGD", _attacks.random_noise: "noise",
           _attacks.zoo: "ZOO"}


def _check_batch_size(batch_size) -> int:
    if isinstance(batch_size, bool) or not isinstance(batch_size, numbers.Integral) \
            or batch_size < 1:
        raise ValueError(f"batch_size must be an integer ≥ 1, got {batch_size!r}")
    return int(batch_size)


def _batches(n: int, batch_size: int):
    for start in range(0, n, batch_size):
        yield slice(start, min(start + batch_size, n))


def _correct(model, x, y, batch_size) -> torch.Tensor:
    """Per-example correctness (bool), in eval mode, without gradients."""
    out = torch.zeros(x.shape[0], dtype=torch.bool, device=x.device)
    with eval_mode(model), torch.no_grad():
        for part in _batches(x.shape[0], batch_size):
            logits = model(x[part])
            _check_logits(logits, y[part])
            out[part] = logits.argmax(dim=1) == y[part].to(logits.device)
    return out


def accuracy(model, x, y, batch_size: int = 512) -> float:
    """Fraction of ``x`` that ``model`` classifies as ``y`` (eval mode, no gradients, in batches;
    the model's previous mode is restored)."""
    _check_inputs(x, y)
    batch_size = _check_batch_size(batch_size)
    if x.shape[0] == 0:
        raise ValueError("accuracy of an empty batch is undefined")
    return _correct(model, x, y, batch_size).float().mean().item()


def _resolve_attack(attack) -> tuple[Callable, str]:
    if isinstance(attack, str):
        key = attack.strip().lower()
        if key not in _NAMES:
            raise ValueError(f"unknown attack {attack!r}: pass a function or one of "
                             f"{', '.join(map(repr, _NAMES))}")
        attack = _NAMES[key]
    if not callable(attack):
        raise ValueError(f"attack must be a function or a name, got {attack!r}")
    return attack, _LABELS.get(attack, getattr(attack, "__name__", type(attack).__name__))


def _eps_list(eps) -> list[float]:
    if isinstance(eps, torch.Tensor):
        eps = eps.flatten().tolist()
    values = [eps] if isinstance(eps, numbers.Real) else list(eps)
    if not values:
        raise ValueError("eps must be a number or a non-empty list of numbers")
    return [_check_eps(e) for e in values]


def robust_accuracy(model, x, y, attack="pgd", eps: float | Sequence[float] = (0.0, 0.1, 0.2, 0.3),
                    *, batch_size: int = 512, **attack_kwargs) -> pd.DataFrame:
    r"""Accuracy of ``model`` on ``(x, y)`` under ``attack`` at each ``eps``: a tidy table.

    ``attack``: :func:`~advlib.attacks.pgd`, :func:`~advlib.attacks.fgsm`,
    :func:`~advlib.attacks.random_noise`, :func:`~advlib.attacks.zoo` (or their names ``"pgd"``,
    ``"fgsm"``, ``"noise"``, ``"zoo"``), or any function ``attack(model, x, y, eps, **kwargs)``
    returning adversarial examples. ``attack_kwargs`` go to the attack, e.g. ``steps=20,
    restarts=5, norm="l2", early_stop=True, generator=g``. For PGD, ``steps`` is required and
    ``alpha`` may be a number, a function of ε, or left out for Madry et al.'s ``2.5·ε/steps``.

    Returns a ``pandas.DataFrame`` with one row per ε and columns ``attack, norm, eps, steps,
    restarts, alpha, accuracy, n`` (``None`` where a field does not apply; ZOO adds ``queries``,
    the mean number of model queries per example). With PGD an example counts as broken when the
    clean input or any iterate fooled the model, so ``early_stop=True`` gives the same table,
    faster, and the accuracy never exceeds the clean accuracy.
    """
    _check_inputs(x, y)
    batch_size = _check_batch_size(batch_size)
    if x.shape[0] == 0:
        raise ValueError("robust accuracy of an empty batch is undefined")
    fn, label = _resolve_attack(attack)
    if attack_kwargs.get("targeted"):
        raise ValueError("robust_accuracy measures untargeted robustness: drop targeted=True")
    kwargs = dict(attack_kwargs)
    rows = []
    for e in _eps_list(eps):
        row = {"attack": label, "norm": None, "eps": e, "steps": None, "restarts": None,
               "alpha": None}
        if fn is _attacks.pgd:
            correct, row = _pgd_correct(model, x, y, e, kwargs, batch_size, row)
        elif fn is _attacks.fgsm:
            row.update(norm="linf", steps=1, restarts=1, alpha=e)
            x_adv = torch.cat([fn(model, x[p], y[p], e, **kwargs) for p in _batches(len(x), batch_size)])
            correct = _correct(model, x_adv, y, batch_size)
        elif fn is _attacks.random_noise:
            row.update(norm=kwargs.get("norm", "linf"))
            x_adv = torch.cat([fn(x[p], e, **kwargs) for p in _batches(len(x), batch_size)])
            correct = _correct(model, x_adv, y, batch_size)
        elif fn is _attacks.zoo:
            row.update(norm=kwargs.get("norm", "linf"))
            parts, used = [], []
            for p in _batches(len(x), batch_size):
                x_adv, q = fn(model, x[p], y[p], e, return_queries=True,
                              **{k: v for k, v in kwargs.items() if k != "return_queries"})
                parts.append(x_adv)
                used.append(q)
            correct = _correct(model, torch.cat(parts), y, batch_size)
            row["queries"] = torch.cat(used).float().mean().item()
        else:
            row.update(norm=kwargs.get("norm"), steps=kwargs.get("steps"),
                       restarts=kwargs.get("restarts"))
            x_adv = torch.cat([fn(model, x[p], y[p], e, **kwargs) for p in _batches(len(x), batch_size)])
            correct = _correct(model, x_adv, y, batch_size)
        row["accuracy"] = correct.float().mean().item()
        row["n"] = int(x.shape[0])
        rows.append(row)
    columns = TABLE_COLUMNS + (["queries"] if fn is _attacks.zoo else [])
    return pd.DataFrame(rows, columns=columns)


def _pgd_correct(model, x, y, eps, kwargs, batch_size, row):
    """Per-example "no PGD iterate fooled the model", and the table row's threat model."""
    kwargs = dict(kwargs)
    if "steps" not in kwargs:
        raise ValueError("PGD needs steps=... (state the threat model: norm, eps, steps, restarts)")
    steps = kwargs.pop("steps")
    alpha = kwargs.pop("alpha", None)
    if alpha is None:
        alpha = 2.5 * eps / steps if isinstance(steps, numbers.Real) and steps > 0 else steps
    elif callable(alpha):
        alpha = alpha(eps)
    # At eps = 0 PGD returns the input: any valid step size will do (the rule gives 0).
    step = 1.0 if eps == 0 and isinstance(alpha, numbers.Real) and alpha == 0 else alpha
    # The clean input lies in every ε-ball: an example the model gets wrong is never robust,
    # even when a random start happens to land on a correctly classified point.
    fooled = ~_correct(model, x, y, batch_size)
    for p in _batches(x.shape[0], batch_size):
        fooled[p] |= _pgd(model, x[p], y[p], eps, step, steps, track=True, **kwargs).fooled
    row.update(norm=kwargs.get("norm", "linf"), steps=int(steps),
               restarts=int(kwargs.get("restarts", 1)), alpha=float(alpha))
    return ~fooled, row


def plot_robustness_curves(table: pd.DataFrame, ax=None, **plot_kwargs):
    """Accuracy against ε from one or more :func:`robust_accuracy` tables (concatenate them),
    one line per threat model (attack, norm, steps, restarts). Returns the matplotlib axes."""
    import matplotlib.pyplot as plt

    missing = {"eps", "accuracy", "attack"} - set(table.columns)
    if missing:
        raise ValueError(f"the table lacks the columns {sorted(missing)}: use robust_accuracy")
    if ax is None:
        _, ax = plt.subplots(figsize=(5, 3.5))
    keys = [k for k in ("attack", "norm", "steps", "restarts") if k in table.columns]
    norms = set()
    for group, part in table.groupby(keys, dropna=False, sort=False):
        group = dict(zip(keys, group if isinstance(group, tuple) else (group,)))
        label = str(group["attack"])
        if _present(group.get("steps")) and group["attack"] not in ("FGSM",):
            label += f"-{int(group['steps'])}"
        if _present(group.get("restarts")) and int(group["restarts"]) > 1:
            label += f" ×{int(group['restarts'])} restarts"
        if _present(group.get("norm")):
            norms.add(group["norm"])
            label += f" ({'ℓ∞' if group['norm'] == 'linf' else 'ℓ2'})"
        part = part.sort_values("eps")
        ax.plot(part["eps"], part["accuracy"], marker="o", label=label, **plot_kwargs)
    norm_text = {"linf": " (ℓ∞)", "l2": " (ℓ2)"}.get(next(iter(norms)), "") if len(norms) == 1 else ""
    ax.set_xlabel("ε" + norm_text)
    ax.set_ylabel("accuracy")
    ax.set_ylim(-0.02, 1.02)
    ax.grid(alpha=0.3)
    ax.legend(frameon=False)
    return ax


def _present(value) -> bool:
    return value is not None and not (isinstance(value, float) and math.isnan(value))


# --------------------------------------------------------------------------- sanity checks

def sanity_checks(model, x, y, eps: float, *, norm: str = "linf", steps: int = 20,
                  alpha: float | None = None, restarts: int = 4, large_eps: float | None = None,
                  tolerance: float = 0.03, near_zero: float = 0.05,
                  generator: torch.Generator | None = None, batch_size: int = 512) -> pd.DataFrame:
    r"""Run the Carlini et al. (2019) checklist on ``model`` at radius ``eps`` and return one row
    per check: ``check, passed, measured, reference, criterion``.

    Gradient health (a broken evaluation fakes robustness; these rows say why):

    * ``eval_mode`` — no dropout or batch-norm layer was handed over in train mode;
    * ``deterministic`` — two forward passes on the same input agree, in the mode handed over and
      in eval mode (catches dropout left on, randomised "defences");
    * ``outputs_are_logits`` — the rows do not look like probabilities (in [0, 1], summing to 1):
      a softmax inside the model flattens the loss;
    * ``gradients_nonzero`` — at most 5 % of the examples have an exactly zero input gradient of the
      cross-entropy (hugely scaled logits saturate the softmax and the gradient underflows to 0);
    * ``loss_increases`` — PGD raises the cross-entropy of at least 90 % of the examples (with a
      saturated softmax the loss of confidently classified examples stays exactly where it is).

    Attack consistency (PGD with ``steps``, ``alpha`` = ``2.5·eps/steps`` unless given, no random
    start; the ``restarts`` run uses random starts from ``generator``):

    * ``pgd_beats_fgsm`` — PGD accuracy ≤ FGSM accuracy (+ one example);
    * ``more_steps_change_little`` — PGD-``4·steps`` within ``tolerance`` of PGD-``steps``;
    * ``more_restarts_change_little`` — PGD with ``restarts`` random restarts within ``tolerance``;
    * ``white_box_beats_noise`` — PGD accuracy ≤ accuracy under random noise of the same norm
      and size (+ one example);
    * ``accuracy_falls_with_eps`` — accuracy non-increasing over a grid of ε up to ``large_eps``
      (+ one example per step);
    * ``large_eps_breaks_model`` — accuracy ≤ ``near_zero`` at ``large_eps`` (default 0.5 in ℓ∞,
      ``0.5·√d`` in ℓ2), where any classifier can be fooled.

    ``all(table.passed)`` is the verdict; ``table.attrs["all_passed"]`` holds it too.
    """
    _check_inputs(x, y)
    eps = _check_eps(eps)
    if eps == 0:
        raise ValueError("sanity checks need eps > 0")
    _attacks._check_choice("norm", norm, _attacks.NORMS)
    steps = _attacks._check_count("steps", steps)
    restarts = _attacks._check_count("restarts", restarts)
    batch_size = _check_batch_size(batch_size)
    n = x.shape[0]
    if n == 0:
        raise ValueError("sanity checks need at least one example")
    d = x[0].numel()
    if large_eps is None:
        large_eps = 0.5 if norm == "linf" else 0.5 * math.sqrt(d)
    large_eps = _check_eps(large_eps)
    one = 1.0 / n
    rows = []

    def add(check, passed, measured, reference, criterion):
        rows.append({"check": check, "passed": bool(passed), "measured": measured,
                     "reference": reference, "criterion": criterion})

    base_alpha = alpha if alpha is not None else 2.5 * eps / steps

    def pgd_acc(e, k=steps, r=1, start=False):
        # At eps: the given step size (or 2.5·eps/steps), also for 4·steps. Elsewhere 2.5·e/k.
        a = base_alpha if e == eps else 2.5 * e / k
        kw = {"norm": norm, "restarts": r, "random_start": start, "early_stop": True}
        if start:
            kw["generator"] = generator
        table = robust_accuracy(model, x, y, "pgd", [e], batch_size=batch_size, steps=k,
                                alpha=a, **kw)
        return float(table["accuracy"].iloc[0])

    # --- gradient health -------------------------------------------------------------------
    modules = list(model.modules()) if hasattr(model, "modules") else []
    in_train = [type(m).__name__ for m in modules if m.training and isinstance(m, _MODE_DEPENDENT)]
    add("eval_mode", not in_train, float(len(in_train)), 0.0,
        "no dropout or batch-norm layer in train mode (call model.eval() before evaluating)"
        + (f"; in train mode: {', '.join(sorted(set(in_train)))}" if in_train else ""))

    probe = x[: min(n, 256)]
    # Forward passes in train mode update batch-norm statistics: put every buffer back after.
    saved = [(b, b.detach().clone()) for b in model.buffers()] if hasattr(model, "buffers") else []
    try:
        with torch.no_grad():
            first, second = model(probe), model(probe)
            with eval_mode(model):
                first_eval, second_eval = model(probe), model(probe)
    finally:
        with torch.no_grad():
            for buffer, value in saved:
                buffer.copy_(value)
    spread = max((first - second).abs().max().item(), (first_eval - second_eval).abs().max().item())
    scale = max(first.abs().max().item(), 1e-12)
    add("deterministic", spread <= 1e-5 * scale, spread, 0.0,
        "repeated forward passes give the same outputs (as handed over and in eval mode)")

    with eval_mode(model), torch.no_grad():
        out = first_eval
        rows_sum = out.sum(dim=1)
        looks_prob = bool(((out >= 0) & (out <= 1)).all() and (rows_sum - 1).abs().max() < 1e-3)
    add("outputs_are_logits", not looks_prob, float(looks_prob), 0.0,
        "outputs are not probabilities (rows in [0, 1] summing to 1): return logits")

    with eval_mode(model), torch.enable_grad():
        xg = probe.detach().clone().requires_grad_(True)
        loss = torch.nn.functional.cross_entropy(model(xg), y[: probe.shape[0]], reduction="sum")
        (grad,) = torch.autograd.grad(loss, xg)
    zero_frac = (grad.reshape(grad.shape[0], -1).abs().amax(dim=1) == 0).float().mean().item()
    add("gradients_nonzero", zero_frac <= 0.05, zero_frac, 0.05,
        "fraction of examples whose input gradient is exactly 0 (saturated softmax)")

    with torch.no_grad(), eval_mode(model):
        x_adv = torch.cat([_attacks.pgd(model, x[p], y[p], eps, base_alpha, steps, norm=norm,
                                        random_start=False) for p in _batches(n, batch_size)])
        ce = torch.nn.functional.cross_entropy
        clean_loss = torch.cat([ce(model(x[p]), y[p], reduction="none") for p in _batches(n, batch_size)])
        adv_loss = torch.cat([ce(model(x_adv[p]), y[p], reduction="none") for p in _batches(n, batch_size)])
    rose = (adv_loss > clean_loss).float().mean().item()
    add("loss_increases", rose >= 0.9, rose, 0.9,
        f"fraction of examples whose cross-entropy PGD-{steps} raised (mean "
        f"{clean_loss.mean().item():.3g} → {adv_loss.mean().item():.3g}) ≥ 0.9")

    # --- attack consistency ----------------------------------------------------------------
    pgd_k = pgd_acc(eps)
    fgsm = float(robust_accuracy(model, x, y, "fgsm", [eps], batch_size=batch_size)["accuracy"].iloc[0]) \
        if norm == "linf" else _fgm_l2_acc(model, x, y, eps, batch_size)
    add("pgd_beats_fgsm", pgd_k <= fgsm + one + 1e-9, pgd_k, fgsm,
        f"PGD-{steps} accuracy ≤ single-step ({'FGSM' if norm == 'linf' else 'FGM ℓ2'}) accuracy")

    pgd_4k = pgd_acc(eps, k=4 * steps)
    add("more_steps_change_little", abs(pgd_4k - pgd_k) <= tolerance, pgd_4k, pgd_k,
        f"|PGD-{4 * steps} − PGD-{steps}| ≤ {tolerance}")

    pgd_r = pgd_acc(eps, r=restarts, start=True)
    add("more_restarts_change_little", abs(pgd_r - pgd_k) <= tolerance, pgd_r, pgd_k,
        f"|PGD-{steps} × {restarts} random restarts − PGD-{steps}| ≤ {tolerance}")

    noise = float(robust_accuracy(model, x, y, "noise", [eps], batch_size=batch_size, norm=norm,
                                  generator=generator)["accuracy"].iloc[0])
    add("white_box_beats_noise", pgd_k <= noise + one + 1e-9, pgd_k, noise,
        "PGD accuracy ≤ accuracy under random noise of the same size")

    grid = sorted(set(np.linspace(0.0, large_eps, 6).tolist()) | {eps})
    curve = [pgd_acc(e) if e > 0 else accuracy(model, x, y, batch_size) for e in grid]
    rises = max((b - a for a, b in zip(curve, curve[1:])), default=0.0)
    add("accuracy_falls_with_eps", rises <= one + 1e-9, rises, 0.0,
        "accuracy non-increasing in ε: largest rise between grid points "
        f"ε = {', '.join(f'{e:g}' for e in grid)}")
    add("large_eps_breaks_model", curve[-1] <= near_zero, curve[-1], near_zero,
        f"PGD accuracy at ε = {large_eps:g} is about 0 (≤ {near_zero})")

    table = pd.DataFrame(rows, columns=["check", "passed", "measured", "reference", "criterion"])
    table.attrs["all_passed"] = bool(table["passed"].all())
    return table


# Layers that behave differently in train mode. A custom layer that reads ``self.training`` is
# not in this list: the ``deterministic`` check catches the random ones.
_MODE_DEPENDENT = (torch.nn.modules.dropout._DropoutNd, torch.nn.modules.batchnorm._NormBase)


def _fgm_l2_acc(model, x, y, eps, batch_size):
    """Single-step ℓ2 attack (fast gradient method): one normalised-gradient step of length ε."""
    correct = []
    for p in _batches(x.shape[0], batch_size):
        x_adv = _attacks.pgd(model, x[p], y[p], eps, eps, 1, norm="l2", random_start=False)
        correct.append(_correct(model, x_adv, y[p], batch_size))
    return torch.cat(correct).float().mean().item()
