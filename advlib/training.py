"""Training a classifier: the plain loop every later chapter starts from.

Defined in chapter 3; chapter 4 extends it.

:func:`train` is standard (non-adversarial) training: Adam, shuffled mini-batches, the
cross-entropy of the clean inputs. It trains the model in place and hands it back in **eval
mode**: a model left in train mode keeps its dropout on when it is attacked and evaluated, a
pitfall chapter 3 demonstrates.
"""
from __future__ import annotations

import copy
import hashlib
import json
import numbers
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, NamedTuple

import torch
import torch.nn.functional as F

from .attacks import _check_count, _check_eps, _check_positive
from .attacks import eval_mode as _eval_mode
from .attacks import pgd as _pgd
from .runtime import progress as _progress

__all__ = ["train"]


def train(model, x, y, epochs: int, *, lr: float = 1e-3, batch_size: int = 100,
          generator: torch.Generator | None = None, show_progress: bool = False) -> list[float]:
    """Train ``model`` on ``(x, y)`` for ``epochs`` passes of shuffled mini-batches with Adam
    (learning rate ``lr``), minimising the cross-entropy of the logits. The batch order is drawn
    from ``generator`` (a CPU ``torch.Generator``) when given, so a seed reproduces the run.

    The model is trained in place, on the device of ``x``, and left in eval mode. Returns the
    mean training loss of each epoch.
    """
    for name, value in (("epochs", epochs), ("batch_size", batch_size)):
        if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 1:
            raise ValueError(f"{name} must be an integer ≥ 1, got {value!r}")
    if not isinstance(x, torch.Tensor) or not isinstance(y, torch.Tensor) or x.dim() < 2 \
            or y.dim() != 1 or len(x) != len(y) or len(y) == 0:
        raise ValueError("x must be a non-empty batch [N, ...] and y must hold N class indices")
    if isinstance(lr, bool) or not isinstance(lr, numbers.Real) or not lr > 0:
        raise ValueError(f"lr must be a number > 0, got {lr!r}")
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    history = []
    model.train()
    for _ in _progress(range(epochs), enabled=show_progress, desc="epochs", leave=False):
        total = 0.0
        for idx in torch.randperm(len(y), generator=generator).split(batch_size):
            idx = idx.to(x.device)
            opt.zero_grad()
            loss = F.cross_entropy(model(x[idx]), y[idx])
            loss.backward()
            opt.step()
            total += loss.item() * len(idx)
        history.append(total / len(y))
    model.eval()
    return history


# =========================================================================== chapter 4
# Adversarial training: one epoch function for every method, the catastrophic-overfitting guard,
# cost accounting, saved models, and the chapter's exercise checks.

__all__ += ["TrainingAttack", "pgd_at", "fgsm_rs", "trades", "run_epoch", "EpochResult",
            "OverfittingGuard", "first_collapse", "adversarial_train", "grad_evals_per_example",
            "trades_loss",
            "save_model", "load_model", "file_sha256",
            "check_fgsm_rs_delta", "check_trades_loss", "check_stronger_evaluation",
            "check_grad_evals"]


@dataclass(frozen=True)
class TrainingAttack:
    """How adversarial training perturbs a batch. ``kind``: ``"pgd"`` (Madry et al.),
    ``"fgsm_rs"`` (Wong et al.: one FGSM step of size ``alpha`` from a uniform random start) or
    ``"trades"`` (Zhang et al.: PGD on the KL divergence, loss CE + ``beta``·KL). ℓ∞ only."""

    kind: str
    eps: float
    alpha: float
    steps: int = 1
    beta: float = 6.0

    @property
    def grad_evals(self) -> int:
        """Input-gradient evaluations per example to craft one perturbation."""
        return 1 if self.kind == "fgsm_rs" else self.steps

    def describe(self) -> str:
        if self.kind == "fgsm_rs":
            return f"FGSM-RS (ε={self.eps:g}, α={self.alpha:g})"
        name = "PGD-AT" if self.kind == "pgd" else f"TRADES (β={self.beta:g})"
        return f"{name} (ε={self.eps:g}, α={self.alpha:g}, {self.steps} steps)"


def pgd_at(eps: float, alpha: float | None = None, steps: int = 10) -> TrainingAttack:
    """PGD adversarial training (Madry et al., 2018): ``steps`` of size ``alpha`` (default
    ``2.5·eps/steps``) from a random start in the ℓ∞ ball of radius ``eps``."""
    eps, steps = _check_eps(eps), _check_count("steps", steps)
    alpha = 2.5 * eps / steps if alpha is None else _check_positive("alpha", alpha)
    return TrainingAttack("pgd", eps, alpha, steps)


def fgsm_rs(eps: float, alpha: float | None = None) -> TrainingAttack:
    """FGSM with a random start (Wong et al., 2020): ``delta ~ U[-eps, eps]``, one step of size
    ``alpha`` (default ``1.25·eps``) along the gradient's sign, projected back to the ball."""
    eps = _check_eps(eps)
    alpha = 1.25 * eps if alpha is None else _check_positive("alpha", alpha)
    return TrainingAttack("fgsm_rs", eps, alpha, 1)


def trades(eps: float, alpha: float | None = None, steps: int = 10,
           beta: float = 6.0) -> TrainingAttack:
    """TRADES (Zhang et al., 2019): ``steps`` of ℓ∞ PGD on ``KL(f(x) ‖ f(x+δ))`` from a tiny
    Gaussian start, then the loss ``CE(f(x), y) + beta · KL(f(x) ‖ f(x+δ))``."""
    eps, steps = _check_eps(eps), _check_count("steps", steps)
    alpha = 2.5 * eps / steps if alpha is None else _check_positive("alpha", alpha)
    return TrainingAttack("trades", eps, alpha, steps, _check_positive("beta", beta))


def trades_loss(logits_clean: torch.Tensor, logits_adv: torch.Tensor, y: torch.Tensor,
                beta: float) -> torch.Tensor:
    """Per-example TRADES loss: ``CE(logits_clean, y) + beta · KL(p_clean ‖ p_adv)``."""
    kl = F.kl_div(F.log_softmax(logits_adv, 1), F.log_softmax(logits_clean, 1),
                  reduction="none", log_target=True).sum(1)
    return F.cross_entropy(logits_clean, y, reduction="none") + beta * kl


def _uniform(x, eps, generator):
    u = torch.rand(x.shape, generator=generator, device="cpu" if generator is None
                   else generator.device)
    return ((2 * u - 1) * eps).to(x.device)


def _perturb(model, x, y, attack: TrainingAttack, generator):
    """The training perturbation ``x + delta`` of a batch (detached), model in eval mode."""
    if attack.eps == 0:
        return x.detach().clone()
    if attack.kind == "pgd":
        return _pgd(model, x, y, attack.eps, attack.alpha, attack.steps, generator=generator)
    with _eval_mode(model), torch.enable_grad():
        if attack.kind == "fgsm_rs":
            delta = _uniform(x, attack.eps, generator)
            delta = (torch.clamp(x + delta, 0, 1) - x).requires_grad_(True)
            loss = F.cross_entropy(model(x + delta), y)
            (grad,) = torch.autograd.grad(loss, delta)
            delta = torch.clamp(delta.detach() + attack.alpha * grad.sign(), -attack.eps,
                                attack.eps)
            return torch.clamp(x + delta, 0, 1).detach()
        # TRADES: maximise the KL divergence from the clean prediction.
        with torch.no_grad():
            log_p = F.log_softmax(model(x), 1)
        noise = torch.randn(x.shape, generator=generator, device="cpu" if generator is None
                            else generator.device).to(x.device)
        x_adv = torch.clamp(x + 0.001 * noise, 0, 1)
        for _ in range(attack.steps):
            x_adv.requires_grad_(True)
            kl = F.kl_div(F.log_softmax(model(x_adv), 1), log_p, reduction="sum",
                          log_target=True)
            (grad,) = torch.autograd.grad(kl, x_adv)
            x_adv = x_adv.detach() + attack.alpha * grad.sign()
            x_adv = torch.clamp(torch.min(torch.max(x_adv, x - attack.eps), x + attack.eps), 0, 1)
        return x_adv.detach()


class EpochResult(NamedTuple):
    """One pass over the data. ``loss``: mean training objective; ``acc``: accuracy on the
    inputs the model was trained (or evaluated) on, i.e. on the perturbed ones for adversarial
    training; ``grad_evals``: gradient evaluations per example (input gradients of the attack
    plus one parameter gradient when training); ``seconds``: wall time; ``n``: examples."""

    loss: float
    acc: float
    grad_evals: float
    seconds: float
    n: int


def grad_evals_per_example(attack: TrainingAttack | None, training: bool = True) -> int:
    """Gradient evaluations per example and epoch: the attack's input gradients, plus one
    gradient with respect to the parameters when training (0 + 1 for standard training)."""
    return (0 if attack is None else attack.grad_evals) + int(training)


def run_epoch(model, x, y, attack: TrainingAttack | None = None, *, opt=None, scheduler=None,
              batch_size: int = 100, generator: torch.Generator | None = None) -> EpochResult:
    """One pass over ``(x, y)``. With an optimiser ``opt`` it **trains** (shuffled mini-batches,
    drawn from ``generator``; model in train mode for the update); without it it **evaluates**
    (in order, eval mode, no parameter changes). ``attack`` is ``None`` (standard, clean inputs)
    or a :class:`TrainingAttack` (:func:`pgd_at`, :func:`fgsm_rs`, :func:`trades`). A learning-rate
    ``scheduler`` steps after every update.

    The model is left in eval mode. Returns an :class:`EpochResult`.
    """
    batch_size = _check_count("batch_size", batch_size)
    if not isinstance(x, torch.Tensor) or not isinstance(y, torch.Tensor) or x.dim() < 2 \
            or y.dim() != 1 or len(x) != len(y) or len(y) == 0:
        raise ValueError("x must be a non-empty batch [N, ...] and y must hold N class indices")
    if attack is not None and not isinstance(attack, TrainingAttack):
        raise ValueError("attack must be None or a TrainingAttack (pgd_at, fgsm_rs, trades)")
    training = opt is not None
    start = time.perf_counter()
    order = torch.randperm(len(y), generator=generator) if training else torch.arange(len(y))
    total_loss, correct, grads = 0.0, 0, 0
    for idx in order.split(batch_size):
        idx = idx.to(x.device)
        xb, yb = x[idx], y[idx]
        x_in = xb if attack is None else _perturb(model, xb, yb, attack, generator)
        grads += len(idx) * grad_evals_per_example(attack, training)
        model.train(training)
        with torch.set_grad_enabled(training):
            if attack is not None and attack.kind == "trades":
                logits_clean, logits = model(xb), model(x_in)
                losses = trades_loss(logits_clean, logits, yb, attack.beta)
            else:
                logits = model(x_in)
                losses = F.cross_entropy(logits, yb, reduction="none")
            loss = losses.mean()
        if training:
            opt.zero_grad()
            loss.backward()
            opt.step()
            if scheduler is not None:
                scheduler.step()
        total_loss += loss.item() * len(idx)
        correct += (logits.argmax(1) == yb).sum().item()
    model.eval()
    return EpochResult(total_loss / len(y), correct / len(y), grads / len(y),
                       time.perf_counter() - start, len(y))


def first_collapse(history: list[float], max_drop: float = 0.20) -> int | None:
    """The first epoch (1-based; ``history[0]`` is the model before training) whose robust
    accuracy fell by more than ``max_drop`` below the epoch before: the one
    :class:`OverfittingGuard` rolls back. None if there is none."""
    for epoch in range(1, len(history)):
        if history[epoch - 1] - history[epoch] > max_drop:
            return epoch
    return None


class OverfittingGuard:
    """Wong et al.'s guard against catastrophic overfitting of FGSM training: after each epoch,
    PGD accuracy on a fixed training batch ``(x, y)``; if it falls by more than ``max_drop``
    below the previous epoch's, put back the previous epoch's weights and stop.

    :meth:`check` returns True when it rolled back. ``history`` holds the accuracy of every
    check, ``rolled_back_at`` the epoch (1-based) that was undone, or None.
    """

    def __init__(self, x, y, eps: float, *, steps: int = 10, alpha: float | None = None,
                 max_drop: float = 0.20, generator: torch.Generator | None = None):
        self.x, self.y, self.eps = x, y, _check_eps(eps)
        self.steps = _check_count("steps", steps)
        self.alpha = 2.5 * self.eps / self.steps if alpha is None else alpha
        self.max_drop, self.generator = max_drop, generator
        self.history: list[float] = []
        self.rolled_back_at: int | None = None
        self._best_state = None

    def robust_accuracy(self, model) -> float:
        x_adv = _pgd(model, self.x, self.y, self.eps, self.alpha, self.steps,
                     generator=self.generator)
        with torch.no_grad(), _eval_mode(model):
            return (model(x_adv).argmax(1) == self.y).float().mean().item()

    def check(self, model) -> bool:
        self.history.append(self.robust_accuracy(model))
        if first_collapse(self.history, self.max_drop) == len(self.history) - 1 \
                and self._best_state is not None:
            model.load_state_dict(self._best_state)
            self.rolled_back_at = len(self.history) - 1
            return True
        self._best_state = copy.deepcopy(model.state_dict())
        return False


def cyclic_lr(opt, lr_max: float, total_steps: int):
    """Wong et al.'s triangular schedule: the learning rate rises linearly from 0 to ``lr_max``
    over the first half of ``total_steps`` updates and falls back to 0 over the second half."""
    half = total_steps / 2

    def factor(step):
        return max(0.0, 1 - abs(step + 1 - half) / half)

    for group in opt.param_groups:
        group["lr"] = lr_max
    return torch.optim.lr_scheduler.LambdaLR(opt, factor)


def adversarial_train(model, x, y, epochs: int, attack: TrainingAttack | None = None, *,
                      lr: float = 1e-3, schedule: str = "constant", batch_size: int = 100,
                      generator: torch.Generator | None = None,
                      guard: OverfittingGuard | None = None,
                      show_progress: bool = False) -> list[EpochResult]:
    """Train ``model`` with Adam for up to ``epochs`` calls of :func:`run_epoch`; ``schedule``
    is ``"constant"`` (learning rate ``lr``) or ``"cyclic"`` (:func:`cyclic_lr` peaking at
    ``lr``). With a ``guard`` (:class:`OverfittingGuard`) the starting model is checked first,
    then each epoch; a rollback ends training with the previous weights. Returns the epochs'
    results."""
    epochs = _check_count("epochs", epochs)
    batch_size = _check_count("batch_size", batch_size)
    if schedule not in ("constant", "cyclic"):
        raise ValueError(f"schedule must be 'constant' or 'cyclic', got {schedule!r}")
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    scheduler = None
    if schedule == "cyclic":
        scheduler = cyclic_lr(opt, lr, epochs * -(-len(y) // batch_size))
    if guard is not None:
        guard.check(model)
    history = []
    for _ in _progress(range(epochs), enabled=show_progress, desc="epochs", leave=False):
        history.append(run_epoch(model, x, y, attack, opt=opt, scheduler=scheduler,
                                 batch_size=batch_size, generator=generator))
        if guard is not None and guard.check(model):
            break
    model.eval()
    return history


# --------------------------------------------------------------------------- saved models

def file_sha256(path) -> str:
    """Hex SHA-256 of a file."""
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def save_model(model, path, **metadata) -> dict:
    """Save ``model``'s state dict to ``path`` (``.pt``) and ``metadata`` plus the file's SHA-256
    to ``path`` with suffix ``.json``. Returns the metadata written."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().cpu() for k, v in model.state_dict().items()}
    torch.save(state, path)
    meta = dict(metadata, file=path.name, sha256=file_sha256(path))
    path.with_suffix(".json").write_text(json.dumps(meta, indent=2, sort_keys=True) + "\n")
    return meta


def load_model(model, path, map_location=None) -> dict:
    """Check the SHA-256 recorded next to ``path``, then load the weights into ``model`` with
    ``torch.load(weights_only=True)``. Returns the metadata; the model is left in eval mode."""
    path = Path(path)
    meta = json.loads(path.with_suffix(".json").read_text())
    digest = file_sha256(path)
    if digest != meta["sha256"]:
        raise ValueError(f"{path.name}: SHA-256 {digest} differs from the recorded "
                         f"{meta['sha256']}; the file is corrupt or was replaced")
    model.load_state_dict(torch.load(path, map_location=map_location, weights_only=True))
    model.eval()
    return meta


# --------------------------------------------------------------------------- exercise checks

def _answer(fn: Callable, *args):
    from .attacks import _answer as answer
    return answer(fn, *args)


def _toy():
    from .attacks import _toy_classifier, _toy_images
    return _toy_classifier(), *_toy_images()


def check_fgsm_rs_delta(my_fgsm_rs: Callable) -> bool:
    """Exercise 4.1: ``my_fgsm_rs(model, x, y, eps, alpha, generator)`` returns FGSM-RS examples:
    inside the ε-ball and [0, 1], random (two generators differ), and about as damaging as
    advlib's FGSM-RS on a toy model (far more than the random start alone)."""
    from .exercises import check

    def assertions():
        model, x, y = _toy()
        eps, alpha = 0.1, 0.125
        a = _answer(my_fgsm_rs, model, x, y, eps, alpha, torch.Generator().manual_seed(1))
        b = _answer(my_fgsm_rs, model, x, y, eps, alpha, torch.Generator().manual_seed(2))
        assert isinstance(a, torch.Tensor) and a.shape == x.shape, "return x + delta, shaped like x"
        assert (a - x).abs().max() <= eps + 1e-6, "delta leaves the ε-ball: clamp it to [-ε, ε]"
        assert a.min() >= 0 and a.max() <= 1, "x + delta leaves [0, 1]: clamp the image"
        assert not torch.equal(a, b), "two random starts gave the same result: use the generator"
        ref = _perturb(model, x, y, fgsm_rs(eps, alpha), torch.Generator().manual_seed(1))
        start = torch.clamp(x + _uniform(x, eps, torch.Generator().manual_seed(1)), 0, 1)
        loss = lambda z: F.cross_entropy(model(z), y).item()  # noqa: E731
        with torch.no_grad():
            mine, theirs, rand = loss(a), loss(ref), loss(start)
        assert mine >= rand + 0.5 * (theirs - rand), \
            f"the step barely raises the loss ({mine:.3f} vs {theirs:.3f}): step along the sign"
    return check("4.1", assertions)


def check_trades_loss(my_trades_loss: Callable) -> bool:
    """Exercise 4.2: ``my_trades_loss(logits_clean, logits_adv, y, beta)`` returns the mean
    TRADES loss ``CE(clean, y) + beta · KL(p_clean ‖ p_adv)``."""
    from .exercises import check

    def assertions():
        g = torch.Generator().manual_seed(0)
        clean, adv = torch.randn(32, 10, generator=g) * 3, torch.randn(32, 10, generator=g) * 3
        y = torch.randint(0, 10, (32,), generator=g)
        for beta in (0.0, 1.0, 6.0):
            got = _answer(my_trades_loss, clean, adv, y, beta)
            want = trades_loss(clean, adv, y, beta).mean()
            assert isinstance(got, torch.Tensor) and got.numel() == 1, "return one number (mean)"
            assert torch.allclose(got.float(), want, atol=1e-4), \
                f"beta={beta}: got {got.item():.4f}, expected {want.item():.4f} " \
                "(KL(p_clean ‖ p_adv): the clean distribution comes first)"
    return check("4.2", assertions)


def check_stronger_evaluation(my_robust_accuracy: Callable, model, x, y, eps: float) -> bool:
    """Exercise 4.3: ``my_robust_accuracy(model, x, y, eps)`` returns the accuracy under an attack
    at least as strong as PGD-20 without restarts, and not below what far stronger PGD runs
    (100 steps; cross-entropy with 5 restarts, CW margin with 2) leave, less 5 points (it must
    still be a real measurement)."""
    from .exercises import check
    from .evaluation import robust_accuracy

    def assertions():
        got = _answer(my_robust_accuracy, model, x, y, eps)
        got = float(got)
        g = torch.Generator().manual_seed(0)
        base = robust_accuracy(model, x, y, "pgd", eps, steps=20, random_start=False
                               ).accuracy.iloc[0]
        strong = min(robust_accuracy(model, x, y, "pgd", eps, steps=100, restarts=5,
                                     early_stop=True, generator=g).accuracy.iloc[0],
                     robust_accuracy(model, x, y, "pgd", eps, steps=100, restarts=2, loss="cw",
                                     early_stop=True, generator=g).accuracy.iloc[0])
        one = 1 / len(y)
        assert got <= base + one, f"{got:.3f} is above PGD-20's {base:.3f}: the attack is weaker"
        assert got >= strong - 0.05, f"{got:.3f} is far below a strong PGD's {strong:.3f}: " \
            "is the accuracy computed on the adversarial examples of the right labels?"
    return check("4.3", assertions)


def check_grad_evals(my_grad_evals: Callable) -> bool:
    """Exercise 4.4: ``my_grad_evals(method, steps)`` returns the gradient evaluations per example
    and training epoch of ``"standard"``, ``"fgsm_rs"``, ``"pgd"`` and ``"trades"``."""
    from .exercises import check

    def assertions():
        for steps in (1, 7, 10, 40):
            for method, attack in (("standard", None), ("fgsm_rs", fgsm_rs(0.1)),
                                   ("pgd", pgd_at(0.1, steps=steps)),
                                   ("trades", trades(0.1, steps=steps))):
                got, want = _answer(my_grad_evals, method, steps), \
                    grad_evals_per_example(attack)
                assert got == want, f"{method} with steps={steps}: got {got}, expected {want}"
    return check("4.4", assertions)
