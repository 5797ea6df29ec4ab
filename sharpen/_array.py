"""Internal: numpy <-> torch plumbing so each formula is written once (in torch) and accepts both.

Numpy inputs are wrapped with ``torch.from_numpy`` (no copy) and results converted back, so a caller gets
the library it passed in.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch


def is_torch(x: Any) -> bool:
    return isinstance(x, torch.Tensor)


def as_float_tensor(x: Any, name: str) -> torch.Tensor:
    """``x`` as a floating torch tensor of at least float32 (float64 kept), validated finite."""
    if x is None:
        raise ValueError(f"{name}: required, got None")
    t = x if is_torch(x) else torch.from_numpy(np.asarray(x))
    if not (t.is_floating_point()):
        t = t.to(torch.float64)
    elif t.dtype in (torch.float16, torch.bfloat16):
        t = t.to(torch.float32)
    if t.numel() and not bool(torch.isfinite(t).all()):
        raise ValueError(f"{name}: contains NaN or inf")
    return t


def as_index_tensor(x: Any, name: str) -> torch.Tensor:
    """``x`` as an int64 torch tensor."""
    if x is None:
        raise ValueError(f"{name}: required, got None")
    t = x if is_torch(x) else torch.from_numpy(np.asarray(x))
    if t.is_floating_point() or t.dtype == torch.bool:
        raise ValueError(f"{name}: must hold integer token ids, got dtype {t.dtype}")
    return t.to(torch.int64)


def as_mask_tensor(x: Any, name: str) -> torch.Tensor:
    """``x`` as a bool torch tensor; only 0/1 (or bool) values are allowed."""
    t = x if is_torch(x) else torch.from_numpy(np.asarray(x))
    if t.dtype != torch.bool:
        if not bool(((t == 0) | (t == 1)).all()):
            raise ValueError(f"{name}: must hold only 0/1 or booleans")
        t = t != 0
    return t


def like_input(result: torch.Tensor, reference: Any) -> Any:
    """Return ``result`` in the library of ``reference`` (numpy array or torch tensor)."""
    if is_torch(reference):
        return result
    return result.detach().cpu().numpy()
