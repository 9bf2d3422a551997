"""Whatever a user holds their data in, as one pair of in-memory tensors ``(x, y)``.

Probes that measure the full loss (Eq 1) evaluate every sample many times, so they keep the
data in memory on the model's device. :func:`as_tensors` accepts:

- an :class:`~sgdyn.validation.data.ArrayDataset` (``x`` as stored: flat features; pass
  ``(ds.images(), ds.y)`` to a model that wants image-shaped input);
- a pair ``(x, y)`` of tensors or arrays, ``x`` in the model's own input shape;
- a ``torch.utils.data.Dataset`` whose items are ``(x, y)`` (torchvision datasets, ``Subset``,
  ``TensorDataset``);
- a ``torch.utils.data.DataLoader`` over such a dataset (read once, in its order).
"""

from __future__ import annotations

import numpy as np
import torch

from sgdyn.kernels.memory import check_fits

from .datasets import ArrayDataset, DataError

__all__ = ["as_tensors"]


def as_tensors(data, *, max_bytes: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """``(x, y)`` with the samples along dim 0 (see the module doc for what ``data`` may be).

    ``max_bytes``: refuse (before reading it all) a dataset whose tensors would exceed it.
    """
    if isinstance(data, ArrayDataset):
        return data.x, data.y
    if isinstance(data, (tuple, list)) and len(data) == 2:
        x, y = (torch.as_tensor(np.asarray(v)) if not torch.is_tensor(v) else v for v in data)
        return _check(x, y)
    from torch.utils.data import DataLoader, Dataset

    if isinstance(data, DataLoader):
        batches = iter(data)
        n_total = _len_or_none(data.dataset)
    elif isinstance(data, Dataset):
        n_total = _len_or_none(data)
        if n_total is None:
            raise DataError("an iterable Dataset has no length: wrap it in a DataLoader")
        batches = iter(DataLoader(data, batch_size=512, shuffle=False))
    else:
        raise TypeError(
            "data must be an ArrayDataset, a pair (x, y) of tensors, a torch Dataset of (x, y) "
            f"items or a DataLoader; got {type(data).__name__}"
        )
    xs, ys = [], []
    for i, batch in enumerate(batches):
        if not isinstance(batch, (tuple, list)) or len(batch) < 2:
            raise DataError(
                "each batch / item must be (x, y); got "
                f"{type(batch).__name__}: give a Dataset that returns (input, target)"
            )
        x, y = torch.as_tensor(batch[0]), torch.as_tensor(batch[1])
        if i == 0 and max_bytes is not None and n_total is not None:
            per = (x.element_size() * x[0].numel() + y.element_size() * y[0].numel()) * 1.0
            need = per * n_total
            if need > max_bytes:
                check_fits(int(need), "cpu", "the data", "pass a Subset of it", max_bytes)
        xs.append(x)
        ys.append(y)
    if not xs:
        raise DataError("the dataset is empty")
    return _check(torch.cat(xs), torch.cat(ys))


def _len_or_none(ds):
    try:
        return len(ds)
    except TypeError:
        return None


def _check(x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    if x.ndim == 0 or y.ndim == 0:
        raise DataError(
            f"x and y need a sample dimension, got shapes {tuple(x.shape)}, {tuple(y.shape)}"
        )
    if x.shape[0] != y.shape[0]:
        raise DataError(f"{x.shape[0]} inputs but {y.shape[0]} targets")
    if x.shape[0] == 0:
        raise DataError("no samples")
    if x.is_floating_point() and not torch.isfinite(x).all():
        raise DataError("inputs contain NaN/Inf")
    return x, y
