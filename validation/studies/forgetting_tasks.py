"""Sequential tasks for the forgetting study (Methods, "Multi-task learning"): MNIST split into
class pairs (0,1), (2,3), ..., each a task with its own training and test samples.

The 10 outputs are shared by all tasks; test errors are computed with the argmax over all
10 outputs. The embedded subset (``mnist5k``) and ``digits`` have no test set, so a seeded
per-class hold-out (``test_fraction``) is used; with the full MNIST (``--data-root``) the
test set is MNIST's own t10k images.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from sgdyn.validation.data import ArrayDataset, load_dataset

PAIRS = ((0, 1), (2, 3), (4, 5), (6, 7), (8, 9))


@dataclass
class Task:
    """One task: its classes and training / test tensors."""

    classes: tuple[int, ...]
    x: torch.Tensor
    y: torch.Tensor
    x_test: torch.Tensor
    y_test: torch.Tensor

    @property
    def name(self) -> str:
        return "(" + ",".join(str(c) for c in self.classes) + ")"

    def to(self, device) -> Task:
        return Task(
            self.classes,
            self.x.to(device),
            self.y.to(device),
            self.x_test.to(device),
            self.y_test.to(device),
        )


def _check_classes(data: ArrayDataset, tasks, what: str) -> None:
    present = set(torch.unique(data.y).tolist())
    for t in tasks:
        missing = [c for c in t if c not in present]
        if missing:
            raise ValueError(
                f"task {tuple(t)}: class {missing[0]} has no samples in the {what} data "
                f"({data.name}, classes present {sorted(present)}); choose class pairs that "
                "the data holds or another dataset"
            )


def make_tasks(
    data: ArrayDataset,
    tasks=PAIRS,
    *,
    test: ArrayDataset | None = None,
    test_fraction: float = 0.2,
    per_class: int | None = None,
    seed: int = 0,
) -> list[Task]:
    """Split ``data`` into one :class:`Task` per class tuple in ``tasks``.

    ``test``: a separate test set (else a seeded per-class hold-out of ``test_fraction``).
    ``per_class``: keep at most this many training samples per class (quick runs).
    Raises ``ValueError`` for a task whose class is missing from the data.
    """
    tasks = [tuple(int(c) for c in t) for t in tasks]
    if not tasks or any(len(t) == 0 for t in tasks):
        raise ValueError("give at least one task with at least one class, e.g. 0,1")
    if not 0 < test_fraction < 1 and test is None:
        raise ValueError(f"test_fraction must be in (0, 1), got {test_fraction}")
    _check_classes(data, tasks, "training")
    if test is not None:
        _check_classes(test, tasks, "test")
    g = torch.Generator().manual_seed(int(seed))
    out = []
    for t in tasks:
        tr_idx, te_idx = [], []
        for c in t:
            idx = torch.nonzero(data.y == c).reshape(-1)
            idx = idx[torch.randperm(idx.numel(), generator=g)]
            if test is None:
                n_te = max(1, int(round(test_fraction * idx.numel())))
                if idx.numel() - n_te < 1:
                    raise ValueError(
                        f"class {c} has only {idx.numel()} samples: too few to hold out a "
                        "test set; use a larger dataset"
                    )
                te_idx.append(idx[:n_te])
                idx = idx[n_te:]
            if per_class is not None:
                idx = idx[:per_class]
            tr_idx.append(idx)
        tr = torch.cat(tr_idx)
        if test is None:
            te = torch.cat(te_idx)
            xt, yt = data.x[te], data.y[te]
        else:
            mask = torch.isin(test.y, torch.tensor(t))
            xt, yt = test.x[mask], test.y[mask]
        out.append(Task(t, data.x[tr], data.y[tr], xt, yt))
    return out


def load_tasks(
    dataset: str = "mnist5k",
    data_root=None,
    tasks=PAIRS,
    *,
    test_fraction: float = 0.2,
    per_class: int | None = None,
    seed: int = 0,
) -> list[Task]:
    """Load ``dataset`` (:func:`~sgdyn.validation.data.load_dataset`) and split it into tasks;
    the full MNIST (``mnist`` with a ``data_root``) uses its own test set."""
    data = load_dataset(dataset, data_root)
    test = None
    if dataset == "mnist" and data_root is not None and data.name != "mnist5k":
        test = load_dataset(dataset, data_root, train=False)
    return make_tasks(
        data, tasks, test=test, test_fraction=test_fraction, per_class=per_class, seed=seed
    )


def union(tasks: list[Task]) -> tuple[torch.Tensor, torch.Tensor]:
    """Training samples of all tasks together (the pre-training set)."""
    return torch.cat([t.x for t in tasks]), torch.cat([t.y for t in tasks])
