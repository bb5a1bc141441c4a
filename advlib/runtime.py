"""Reproducibility and hardware: seeds, device choice and progress bars.

Used from chapter 1 onward.
"""
from __future__ import annotations

import os
import random
import warnings

import numpy as np
import torch
from tqdm.auto import tqdm


def set_seed(seed: int = 0, deterministic: bool = True) -> torch.Generator:
    """Seed Python, NumPy and PyTorch (CPU and CUDA) and return a seeded ``torch.Generator``.

    With ``deterministic=True`` cuDNN autotuning is off and PyTorch is asked for
    deterministic kernels (``warn_only`` so that an op without one warns instead of failing).
    """
    if not isinstance(seed, int) or isinstance(seed, bool) or seed < 0:
        raise ValueError(f"seed must be a non-negative integer, got {seed!r}")
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)  # also seeds every CUDA device
    if deterministic:
        # Required by cuBLAS for deterministic matrix products on CUDA >= 10.2.
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        torch.backends.cudnn.benchmark = False
        torch.backends.cudnn.deterministic = True
        torch.use_deterministic_algorithms(True, warn_only=True)
    return torch.Generator().manual_seed(seed)


class NoGPUWarning(UserWarning):
    """A GPU was asked for (or the ``gpu`` profile chosen) but CUDA is not available."""


def device(prefer: str = "auto", profile_name: str | None = None) -> torch.device:
    """Choose where tensors live: ``"auto"`` (CUDA when available), ``"cuda"`` or ``"cpu"``.

    Warns loudly when a GPU was expected (``prefer="cuda"`` or the ``gpu`` profile) and
    none is there, then falls back to the CPU so the notebook still runs.
    """
    if prefer not in ("auto", "cuda", "cpu"):
        raise ValueError(f"prefer must be 'auto', 'cuda' or 'cpu', got {prefer!r}")
    has_cuda = torch.cuda.is_available()
    wanted_gpu = prefer == "cuda" or profile_name == "gpu"
    if wanted_gpu and not has_cuda:
        message = ("\n" + "!" * 72 + "\n"
                   "  A GPU was expected but CUDA is not available: running on the CPU.\n"
                   "  In Colab: Runtime > Change runtime type > GPU, then run all again.\n"
                   "  On a laptop: set PROFILE = 'cpu' for a run sized for a CPU.\n"
                   + "!" * 72)
        warnings.warn(message, NoGPUWarning, stacklevel=2)
        print(message)
    if prefer == "cpu" or not has_cuda:
        return torch.device("cpu")
    return torch.device("cuda")


def progress(iterable=None, *, enabled: bool = True, **kwargs):
    """A ``tqdm.auto`` progress bar (a notebook widget in Jupyter, text elsewhere).

    ``enabled=False`` (the smoke profile) returns a bar that draws nothing; so does the
    environment variable ``TQDM_DISABLE=1`` (the book build sets it: a progress widget has
    no place in a static page).
    """
    off = os.environ.get("TQDM_DISABLE", "").strip().lower() in ("1", "true", "yes")
    return tqdm(iterable, disable=off or not enabled, dynamic_ncols=True, **kwargs)
