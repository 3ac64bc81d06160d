"""Data sets as ``(N, H, W, D)`` float32 images in [0, 1] with int64 labels.

* :func:`load` reads the bundled MNIST-5k, MNIST (IDX), CIFAR-10 (binary or
  python batches) and folders of images; :func:`fetch` downloads MNIST and
  CIFAR-10 into the cache, checking their published checksums.
* :mod:`volnet.data.augment`: random crops, flips, rotations, translations,
  colour jitter, cutout and per-channel normalisation, batched, with an
  explicit ``np.random.Generator``.
* Mini-batches: :func:`volnet.train.iterate_minibatches`.
"""

from .augment import (Augment, ColorJitter, Cutout, HorizontalFlip, Normalizer, RandomCrop, RandomRotation,
                      RandomTranslation)
from .bundled import Dataset
from .download import cache_dir, fetch
from .errors import DataError
from .idx import read_idx
from .loaders import load

__all__ = ["Augment", "ColorJitter", "Cutout", "DataError", "Dataset", "HorizontalFlip", "Normalizer", "RandomCrop",
           "RandomRotation", "RandomTranslation",
           "cache_dir", "fetch", "load", "read_idx"]
