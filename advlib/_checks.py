"""Argument checks shared by the modules that perturb inputs (chapters 1-3)."""
from __future__ import annotations

import math
import numbers

import torch


def check_eps(eps) -> float:
    """The radius of a perturbation ball as a float; ``ValueError`` with a plain message for a
    tensor of several values, a non-number, NaN, a negative or an infinite value."""
    if isinstance(eps, torch.Tensor):
        if eps.numel() != 1:
            raise ValueError(f"eps must be a single number, got a tensor of shape {tuple(eps.shape)}")
        eps = eps.item()
    if isinstance(eps, bool) or not isinstance(eps, numbers.Real):
        raise ValueError(f"eps must be a real number, got {eps!r}")
    eps = float(eps)
    if math.isnan(eps):
        raise ValueError("eps is NaN: the size of the perturbation must be a number ≥ 0")
    if eps < 0:
        raise ValueError(f"eps must be ≥ 0 (it is the radius of a ball), got {eps}")
    if math.isinf(eps):
        raise ValueError("eps must be finite (eps = 1 already allows any image in [0, 1])")
    return eps
