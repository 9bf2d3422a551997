"""Data loading (embedded MNIST, digits, MNIST/CIFAR folders) and the paper's networks."""

from pathlib import Path

import numpy as np
import pytest
import torch

from sgdyn.validation.data import CIFAR10_CLASSES, DataError, load_dataset
from sgdyn.validation.models import MLP, LeNetCIFAR, LeNetMNIST, build_model

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"


def test_embedded_mnist_subset():
    ds = load_dataset("mnist5k")
    assert ds.x.shape == (5000, 784) and ds.x.dtype == torch.float32
    assert float(ds.x.min()) == 0.0 and float(ds.x.max()) == 1.0
    assert torch.equal(torch.bincount(ds.y), torch.full((10,), 500))


def test_mnist_without_root_falls_back_and_says_so(caplog):
    with caplog.at_level("WARNING"):
        ds = load_dataset("mnist")
    assert ds.name == "mnist5k"
    assert "embedded" in caplog.text


def test_digits_and_class_subset():
    ds = load_dataset("digits", classes=[0, 1])
    assert ds.x.shape[1] == 64
    assert set(ds.y.tolist()) == {0, 1}
    assert float(ds.x.max()) <= 1.0
    with pytest.raises(DataError, match="0..9"):
        load_dataset("digits", classes=[12])


@pytest.mark.skipif(not (SHARED / "MNIST" / "raw").is_dir(), reason="shared MNIST copy absent")
def test_full_mnist_from_shared_folder():
    ds = load_dataset("mnist", SHARED)
    assert ds.x.shape == (60000, 784)
    assert torch.bincount(ds.y)[1] == 6742
    assert abs(float(ds.x.mean()) - 0.1307) < 1e-3
    test = load_dataset("mnist", SHARED / "MNIST", train=False)
    assert test.x.shape == (10000, 784)


def test_missing_and_corrupt_mnist_folder(tmp_path):
    with pytest.raises(DataError, match="not a folder"):
        load_dataset("mnist", tmp_path / "nope")
    with pytest.raises(DataError, match="MNIST/raw"):
        load_dataset("mnist", tmp_path)
    raw = tmp_path / "MNIST" / "raw"
    raw.mkdir(parents=True)
    header = bytes([0, 0, 8, 3]) + (10).to_bytes(4, "big") + (28).to_bytes(4, "big") * 2
    (raw / "train-images-idx3-ubyte").write_bytes(header + bytes(100))  # truncated
    (raw / "train-labels-idx1-ubyte").write_bytes(
        bytes([0, 0, 8, 1]) + (10).to_bytes(4, "big") + bytes(10)
    )
    with pytest.raises(DataError, match="truncated or corrupt"):
        load_dataset("mnist", tmp_path)
    (raw / "train-images-idx3-ubyte").write_bytes(b"garbage!" * 10)
    with pytest.raises(DataError, match="magic"):
        load_dataset("mnist", tmp_path)


def _tiny_cifar_tree(root: Path, n=2, corrupt=False):
    from PIL import Image

    rng = np.random.default_rng(0)
    for cls in CIFAR10_CLASSES:
        d = root / "train" / cls
        d.mkdir(parents=True)
        for k in range(n):
            Image.fromarray(rng.integers(0, 255, (32, 32, 3), dtype=np.uint8)).save(d / f"{k}.png")
    if corrupt:
        (root / "train" / "cat" / "bad.jpg").write_bytes(b"not an image")


def test_cifar_imagefolder(tmp_path):
    _tiny_cifar_tree(tmp_path)
    ds = load_dataset("cifar10", tmp_path)
    assert ds.x.shape == (20, 3072) and ds.image_shape == (3, 32, 32)
    assert torch.equal(torch.bincount(ds.y), torch.full((10,), 2))


def test_cifar_first_per_class_reads_only_those_files(tmp_path):
    _tiny_cifar_tree(tmp_path, n=3)
    full = load_dataset("cifar10", tmp_path)
    sub = load_dataset("cifar10", tmp_path, per_class=2)  # reads 2 files per class folder
    ref = full.first_per_class(2)
    assert sub.x.shape == (20, 3072) and torch.equal(torch.bincount(sub.y), torch.full((10,), 2))
    assert torch.equal(sub.x, ref.x) and torch.equal(sub.y, ref.y)
    assert sub.name == "cifar10[2/class]"
    # the samples kept are the first of each class in stored order
    first_cat = torch.nonzero(full.y == CIFAR10_CLASSES.index("cat")).flatten()[:2]
    assert torch.equal(sub.x[sub.y == CIFAR10_CLASSES.index("cat")], full.x[first_cat])
    with pytest.raises(DataError, match="fewer than per_class=4"):
        load_dataset("cifar10", tmp_path, per_class=4)
    with pytest.raises(DataError, match="per_class must be >= 1"):
        load_dataset("digits", per_class=0)
    d = load_dataset("digits", per_class=10)  # in-memory sets take it too
    assert len(d) == 100 and torch.equal(torch.bincount(d.y), torch.full((10,), 10))


def test_cifar_errors(tmp_path):
    with pytest.raises(DataError, match="--data-root"):
        load_dataset("cifar10")
    with pytest.raises(DataError, match="no CIFAR-10"):
        load_dataset("cifar10", tmp_path)
    _tiny_cifar_tree(tmp_path, corrupt=True)
    with pytest.raises(DataError, match="cannot read image"):
        load_dataset("cifar10", tmp_path)


@pytest.mark.slow
@pytest.mark.skipif(not (SHARED / "cifar10-jpeg").is_dir(), reason="shared CIFAR-10 copy absent")
def test_cifar_test_split_from_shared_folder():
    ds = load_dataset("cifar10", SHARED / "cifar10-jpeg", train=False)
    assert ds.x.shape == (10000, 3072)
    means = ds.images().mean(dim=(0, 2, 3))
    assert torch.allclose(means, torch.tensor([0.4948, 0.4849, 0.4507]), atol=2e-3)


def test_models_match_the_paper():
    mlp = build_model("mlp", 784)
    assert [tuple(p.shape) for p in mlp.parameters()] == [(50, 784), (50, 50), (10, 50)]
    assert dict(mlp.named_parameters())["layers.1.weight"].numel() == 2500
    deep = MLP((784, 50, 50, 50, 50, 10))
    assert deep(torch.zeros(3, 784)).shape == (3, 10)
    assert LeNetMNIST()(torch.zeros(2, 784)).shape == (2, 10)
    assert LeNetMNIST().fc.in_features == 1568
    net = LeNetCIFAR()
    assert net(torch.zeros(2, 3072)).shape == (2, 10)
    assert (net.fc1.in_features, net.fc2.in_features, net.fc3.in_features) == (400, 120, 84)
    with pytest.raises(ValueError, match="784"):
        build_model("lenet-mnist", 64)


def _write_batches(folder: Path, obj_for_first=None):
    import pickle

    folder.mkdir(parents=True)
    rng = np.random.default_rng(1)
    for i, name in enumerate([f"data_batch_{k}" for k in range(1, 6)] + ["test_batch"]):
        d = {
            "batch_label": name,
            "labels": [int(v) for v in rng.integers(0, 10, 4)],
            "data": rng.integers(0, 256, (4, 3072), dtype=np.uint8),
            "filenames": [f"{name}_{k}.png" for k in range(4)],
        }
        with open(folder / name, "wb") as fh:
            pickle.dump(obj_for_first if (i == 0 and obj_for_first is not None) else d, fh, 2)


class _Payload:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        import os

        return (os.mkdir, (str(self.marker),))


def test_cifar_python_batches_are_read_without_running_code(tmp_path):
    root = tmp_path / "ok"
    _write_batches(root / "cifar-10-batches-py")
    ds = load_dataset("cifar10", root)
    assert ds.x.shape == (20, 3072) and ds.y.dtype == torch.int64
    test = load_dataset("cifar10", root, train=False)
    assert test.x.shape == (4, 3072)
    # a batch whose unpickling would create a folder (any call): refused, nothing ran
    marker = tmp_path / "PWNED"
    bad = tmp_path / "bad"
    _write_batches(bad / "cifar-10-batches-py", {"data": _Payload(marker), "labels": []})
    with pytest.raises(DataError, match="not a plain CIFAR-10 batch.*posix.mkdir|os.mkdir"):
        load_dataset("cifar10", bad)
    assert not marker.exists()


def test_cifar_imagefolder_errors_name_the_file(tmp_path):
    from PIL import Image

    _tiny_cifar_tree(tmp_path)
    Image.fromarray(np.zeros((20, 20, 3), np.uint8)).save(tmp_path / "train" / "dog" / "small.png")
    with pytest.raises(DataError, match=r"small.png is \(3, 20, 20\)"):
        load_dataset("cifar10", tmp_path)
    empty = tmp_path / "e"
    _tiny_cifar_tree(empty)
    for f in (empty / "train" / "frog").iterdir():
        f.unlink()
    with pytest.raises(DataError, match="frog"):
        load_dataset("cifar10", empty)
