"""Data readers: the hand-written MNIST idx / CIFAR ImageFolder readers against torchvision's.

Prints ratios measured in the same run (1 torch thread, best of ``--repeat``):

- MNIST idx: ``_read_idx`` (numpy ``frombuffer``) vs ``torchvision.datasets.mnist``'s
  ``read_image_file`` / ``read_label_file``, on the 60,000 training images;
- CIFAR-10 JPEG tree: the PIL loop of sgdyn 0.1 vs ``torchvision.datasets.ImageFolder`` (PIL
  loader, what ``load_dataset`` now uses) vs ImageFolder with ``torchvision.io.decode_image``
  as its loader (faster, but deprecated since torchvision 0.29), on ``--n-per-class`` images
  per class.

    python bench/bench_data_readers.py --root ../shared/data --n-per-class 500
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import torch


def _best(fn, repeat):
    best = float("inf")
    out = None
    for _ in range(repeat):
        t = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - t)
    return best, out


def bench_mnist(root: Path, repeat: int) -> None:
    from torchvision.datasets.mnist import read_image_file, read_label_file

    from sgdyn.validation.data.datasets import _read_idx

    raw = root / "MNIST" / "raw"
    img, lbl = raw / "train-images-idx3-ubyte", raw / "train-labels-idx1-ubyte"
    t_own, own = _best(lambda: (_read_idx(img, 3), _read_idx(lbl, 1)), repeat)
    t_tv, tv = _best(lambda: (read_image_file(str(img)), read_label_file(str(lbl))), repeat)
    assert np.array_equal(own[0], tv[0].numpy()) and np.array_equal(own[1], tv[1].numpy())
    print(
        f"MNIST idx 60k: own {t_own * 1e3:.1f} ms, torchvision {t_tv * 1e3:.1f} ms "
        f"(torchvision / own = {t_tv / t_own:.2f}); identical arrays"
    )


def bench_cifar(root: Path, n_per_class: int, repeat: int) -> None:
    import tempfile
    import warnings

    from PIL import Image
    from torchvision.datasets import ImageFolder
    from torchvision.io import ImageReadMode, decode_image, read_file

    warnings.filterwarnings("ignore", category=DeprecationWarning)

    src = root / "cifar10-jpeg" / "train"
    with tempfile.TemporaryDirectory() as tmp:
        sub = Path(tmp) / "train"
        for cls in sorted(p.name for p in src.iterdir()):
            (sub / cls).mkdir(parents=True)
            for f in sorted((src / cls).iterdir())[:n_per_class]:
                (sub / cls / f.name).symlink_to(f.resolve())

        def own():
            xs = []
            for cls in sorted(p.name for p in sub.iterdir()):
                for f in sorted((sub / cls).iterdir()):
                    with Image.open(f) as im:
                        xs.append(np.asarray(im.convert("RGB"), dtype=np.uint8))
            return np.stack(xs)

        def tv_pil():
            ds = ImageFolder(str(sub))
            return np.stack([np.asarray(ds[i][0], dtype=np.uint8) for i in range(len(ds))])

        def tv_io():
            ds = ImageFolder(
                str(sub), loader=lambda p: decode_image(read_file(p), ImageReadMode.RGB)
            )
            return torch.stack([ds[i][0] for i in range(len(ds))]).permute(0, 2, 3, 1).numpy()

        t_own, a = _best(own, repeat)
        t_pil, b = _best(tv_pil, repeat)
        t_io, c = _best(tv_io, repeat)
        assert np.array_equal(a, b)
        diff = np.abs(a.astype(int) - c.astype(int))
        n = a.shape[0]
        print(
            f"CIFAR-10 JPEG {n} images: own PIL loop {t_own:.2f} s, ImageFolder (PIL) "
            f"{t_pil:.2f} s ({t_pil / t_own:.2f}x own), ImageFolder + decode_image {t_io:.2f} s "
            f"({t_io / t_own:.2f}x own); decode_image vs PIL pixels: max |diff| {diff.max()}, "
            f"mean {diff.mean():.3f}"
        )


# -- pytest-benchmark entry points (MNIST idx, both readers; skipped without the data) --------
_ROOT = Path(__file__).resolve().parents[1] / ".." / "shared" / "data"
_RAW = _ROOT / "MNIST" / "raw"


def _mnist_files():
    import pytest

    img, lbl = _RAW / "train-images-idx3-ubyte", _RAW / "train-labels-idx1-ubyte"
    if not (img.exists() and lbl.exists()):
        pytest.skip(f"MNIST idx files not found under {_RAW}")
    return img, lbl


def test_bench_mnist_idx_own(benchmark):
    from sgdyn.validation.data.datasets import _read_idx

    img, lbl = _mnist_files()
    x, y = benchmark(lambda: (_read_idx(img, 3), _read_idx(lbl, 1)))
    assert x.shape == (60000, 28, 28) and y.shape == (60000,)


def test_bench_mnist_idx_torchvision(benchmark):
    from torchvision.datasets.mnist import read_image_file, read_label_file

    img, lbl = _mnist_files()
    x, y = benchmark(lambda: (read_image_file(str(img)), read_label_file(str(lbl))))
    assert tuple(x.shape) == (60000, 28, 28) and tuple(y.shape) == (60000,)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--root", type=Path, default=Path("../shared/data"))
    ap.add_argument("--n-per-class", type=int, default=500)
    ap.add_argument("--repeat", type=int, default=3)
    a = ap.parse_args(argv)
    torch.set_num_threads(1)
    bench_mnist(a.root, a.repeat)
    bench_cifar(a.root, a.n_per_class, a.repeat)


if __name__ == "__main__":
    main()
