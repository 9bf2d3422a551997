"""Datasets: the embedded MNIST subset, torchvision-layout MNIST / CIFAR-10 folders, 8x8 digits."""

from .datasets import CIFAR10_CLASSES, MNIST_FILES, ArrayDataset, DataError, load_dataset
from .tensors import as_tensors

__all__ = [
    "CIFAR10_CLASSES",
    "MNIST_FILES",
    "ArrayDataset",
    "DataError",
    "as_tensors",
    "load_dataset",
]
