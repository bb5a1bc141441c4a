"""Training a classifier: the plain loop every later chapter starts from.

Defined in chapter 3; chapter 4 extends it.

:func:`train` is standard (non-adversarial) training: Adam, shuffled mini-batches, the
cross-entropy of the clean inputs. It trains the model in place and hands it back in **eval
mode**: a model left in train mode keeps its dropout on when it is attacked and evaluated, a
pitfall chapter 3 demonstrates.
"""
from __future__ import annotations

import numbers

import torch
import torch.nn.functional as F

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
