"""One CPU thread for the small tensor operations of the recommender code.

Defined in chapter 5. The embedding tables of MovieLens-100K are small (a few hundred kB), so
torch's thread pool has nothing to split; on a shared machine it waits for a busy core at every
operation instead, and training was measured 10 to 30 times slower with a 2-thread pool on a
busy 2-core machine than with one thread. :func:`cpu_threads` sets the count for a block and
restores it afterwards; on a GPU it changes nothing.
"""
from __future__ import annotations

from contextlib import contextmanager

import torch


@contextmanager
def cpu_threads(threads: int | None, device=None):
    """Use ``threads`` torch CPU threads inside the block (``None``: leave torch's setting)."""
    if threads is not None and (isinstance(threads, bool) or not isinstance(threads, int)
                                or threads < 1):
        raise ValueError(f"threads must be a positive integer or None, got {threads!r}")
    on_gpu = device is not None and torch.device(device).type != "cpu"
    if threads is None or on_gpu or threads == torch.get_num_threads():
        yield
        return
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(before)
