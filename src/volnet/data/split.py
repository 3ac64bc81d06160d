"""Hold out part of a training set for validation."""

from __future__ import annotations

import numpy as np

from .bundled import Dataset
from .errors import DataError


def split_validation(data: Dataset, fraction: float, seed: int = 0) -> tuple[Dataset, Dataset | None]:
    """``(train, val)``: a seeded, class-stratified ``fraction`` of ``data`` becomes the validation set.

    ``fraction=0`` returns ``(data, None)``.
    """
    if not 0 <= fraction < 1:
        raise DataError(f"validation fraction must be in [0, 1), got {fraction}")
    if fraction == 0:
        return data, None
    rng = np.random.default_rng(seed)
    held = np.concatenate([
        members[: int(round(fraction * len(members)))]
        for members in (rng.permutation(np.flatnonzero(data.labels == c)) for c in np.unique(data.labels))
    ])
    mask = np.zeros(len(data.labels), dtype=bool)
    mask[held] = True
    if not mask.any():
        smallest = int(np.bincount(data.labels).max())
        raise DataError(f"--val-split {fraction} (val_split) holds out no image: {fraction} of each class's images "
                        f"rounds to 0 (the largest class has {smallest}); pass a larger --val-split, or 0 to train "
                        "without validation")
    if mask.all():
        raise DataError(f"--val-split {fraction} (val_split) holds out all {len(data.labels)} images, leaving none "
                        "to train on; pass a smaller --val-split")

    def subset(m):
        if hasattr(data.images, "subset"):  # images on disk (FolderImages): keep the file names only
            return Dataset(data.images.subset(np.flatnonzero(m)), data.labels[m], data.classes)
        return Dataset(data.images[m], data.labels[m], data.classes)

    return subset(~mask), subset(mask)
