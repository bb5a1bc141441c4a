"""Checks shared across advlib: arguments of the modules that perturb inputs (chapters 1-3) and
the answers of the exercise checks (every chapter)."""
from __future__ import annotations

import math
import numbers
from typing import Callable

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


def check_images(x) -> None:
    """``x`` must be a float tensor ``[N, ...]`` of pixel values in [0, 1] (no NaN)."""
    if not isinstance(x, torch.Tensor):
        raise ValueError(f"x must be a torch.Tensor of images, got {type(x).__name__}")
    if x.dim() < 2:
        raise ValueError(f"x must be a batch [N, ...] of images, got shape {tuple(x.shape)}")
    if not x.is_floating_point():
        raise ValueError(f"x must hold floating-point pixels in [0, 1], got dtype {x.dtype}")
    if x.numel() and (torch.isnan(x).any() or x.min() < 0 or x.max() > 1):
        raise ValueError("x must hold pixel values in [0, 1] (no NaN): scale images by 1/255 "
                         "first and keep any normalisation inside the model")


def call_student(fn: Callable, *args):
    """Call a student's function: an unfinished stub propagates, any other error is a wrong
    answer (reported with its type and message)."""
    try:
        return fn(*args)
    except NotImplementedError:
        raise
    except Exception as error:  # noqa: BLE001 - reported to the student, not swallowed
        raise AssertionError(f"your function raised {type(error).__name__}: {error}") from error


def tensor_answer(answer, name: str, shape, finite_hint: str = "") -> torch.Tensor:
    """A student's answer must be a tensor of ``shape`` with finite values; returns it detached."""
    assert isinstance(answer, torch.Tensor), \
        f"{name} should return a torch.Tensor, got {type(answer).__name__}"
    assert tuple(answer.shape) == tuple(shape), \
        f"{name} should return shape {tuple(shape)}, got {tuple(answer.shape)}"
    if answer.is_floating_point():
        assert torch.isfinite(answer).all(), \
            f"{name} returned NaN or infinite values. {finite_hint}".strip()
    return answer.detach()
