"""A scoped single-thread setting for torch.

The simulator calls :mod:`sharpen.rewards` (torch) on tiny tensors thousands of times. On a busy 2-core machine
torch's intra-op thread pool makes such calls 10-30x slower (measured: ``torch.isfinite`` on a (512, 12, 7) tensor
22 ms with the default pool vs 0.3 ms on one thread), so simulator loops run torch on one thread and restore the
caller's setting afterwards.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch

__all__ = ["torch_single_thread"]


@contextmanager
def torch_single_thread() -> Iterator[None]:
    """Run the block with ``torch.set_num_threads(1)``; restore the previous thread count on exit."""
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(old)
