"""Folder images read from disk as batches need them, instead of loaded whole.

:class:`FolderImages` stands where a data set's ``images`` array stands: it
has the array's ``shape`` and ``len``, and ``images[index]`` (an index array,
as the trainer draws a batch) reads, resizes and scales those files into an
``(n, H, W, D)`` float32 batch, the numbers :func:`~volnet.data.load_folder`
would have loaded. Only file names are kept in memory.

The trainer hands it each epoch's remaining batches in their seeded order
(:meth:`FolderImages.read_ahead`); with ``workers > 0`` a PyTorch
``DataLoader`` reads them in that many processes, a few batches ahead of the
step, and ``images[index]`` takes the batch read for ``index``. Any other
index (validation, a batch out of the planned order) is read in this process.
Order, augmentation draws and normalisation are the trainer's, unchanged, so a
streamed run is the in-memory run.

Example:
    >>> images = load_folder("flowers", size=32, stream=True).images   # doctest: +SKIP
    >>> images.shape, images[np.arange(4)].shape                         # doctest: +SKIP
    ((3670, 32, 32, 3), (4, 32, 32, 3))
"""

from __future__ import annotations

from collections import deque

import numpy as np

from .errors import DataError
from .bundled import bytes_to_unit
from .images import pillow, read_pixels

# Batches each reading process keeps ready (the DataLoader's prefetch_factor).
READ_AHEAD_PER_WORKER = 2


class _Reader:
    """Picklable: reads one file as uint8 pixels, or says why it could not (an error crosses processes as text)."""

    def __init__(self, paths, size, grayscale, resize):
        self.paths, self.size, self.resize = paths, size, resize
        self.mode = "L" if grayscale else "RGB"

    def __len__(self):
        return len(self.paths)

    def __getitem__(self, i):
        try:
            return read_pixels(pillow(), self.paths[i], self.mode, self.size, self.resize, self.paths[0]), None
        except DataError as error:
            return None, str(error)


def _stack(items) -> tuple[np.ndarray | None, str | None]:
    """One batch of ``_Reader`` items: the stacked uint8 pixels, or the first file's error."""
    errors = [error for _, error in items if error is not None]
    if errors:
        return None, errors[0]
    return np.stack([pixels for pixels, _ in items]), None


def _checked(pixels, error):
    if error is not None:
        raise DataError(error)
    return pixels


class FolderImages:
    """The images of a folder data set, ``(N, H, W, D)`` float32 in [0, 1], read from disk when indexed.

    Args:
        paths: the image files, in the data set's order.
        size: ``(H, W)`` every image becomes.
        grayscale: ``D = 1`` instead of RGB ``D = 3``. Default: False
        resize: resize images of another size (``--size`` was given); else such
            an image is an error, as when loading. Default: True
        workers: processes reading batches ahead (PyTorch ``DataLoader``); 0
            reads in this process. Default: 0

    Raises (when a batch is read):
        DataError: a file is unreadable or, without ``resize``, of another size.
    """

    dtype = np.dtype(np.float32)
    ndim = 4

    def __init__(self, paths, size, grayscale: bool = False, *, resize: bool = True, workers: int = 0):
        self.paths, self.grayscale, self.resize, self.workers = list(paths), grayscale, resize, workers
        self.size = tuple(size)
        self.shape = (len(self.paths), *self.size, 1 if grayscale else 3)
        self._planned: deque[np.ndarray] = deque()
        self._batches = None

    def __len__(self) -> int:
        return len(self.paths)

    def _reader(self) -> _Reader:
        return _Reader(self.paths, self.size, self.grayscale, self.resize)

    def subset(self, index) -> FolderImages:
        """The images at ``index`` (integer indices), still on disk."""
        return FolderImages([self.paths[i] for i in np.asarray(index)], self.size, self.grayscale,
                            resize=self.resize, workers=self.workers)

    def read_ahead(self, batches) -> None:
        """The index arrays the next ``images[index]`` calls will ask for, in order: read them ahead.

        Without workers nothing is read ahead (each batch is read when asked for).
        """
        self._planned = deque(np.asarray(index) for index in batches)
        self._batches = None
        if self.workers > 0 and self._planned:
            from torch.utils.data import DataLoader

            self._batches = iter(DataLoader(self._reader(), batch_sampler=[p.tolist() for p in self._planned],
                                            num_workers=self.workers, collate_fn=_stack,
                                            prefetch_factor=READ_AHEAD_PER_WORKER))

    def _pixels(self, index: np.ndarray) -> np.ndarray:
        """uint8 ``(n, H, W, D)``: the batch read ahead for ``index`` when it is the next planned one, else read now."""
        if self._planned and np.array_equal(self._planned[0], index):
            self._planned.popleft()
            if self._batches is not None:
                pixels, error = next(self._batches)
                return _checked(pixels, error)
        if not len(index):
            return np.empty((0, *self.shape[1:]), np.uint8)
        reader = self._reader()
        return _checked(*_stack([reader[i] for i in index]))

    def __getitem__(self, index) -> np.ndarray:
        """``images[index]``: a batch ``(n, H, W, D)`` for an index array, slice or mask; ``(H, W, D)`` for an int."""
        if isinstance(index, (int, np.integer)):
            return self[np.array([index])][0]
        return bytes_to_unit(self._pixels(np.arange(len(self))[index]))

    def batches(self, batch_size: int):
        """Every image once, in order, as float32 batches of ``batch_size`` (read ahead by the workers)."""
        plan = [np.arange(start, min(start + batch_size, len(self))) for start in range(0, len(self), batch_size)]
        self.read_ahead(plan)
        for index in plan:
            yield self[index]

    def __repr__(self) -> str:
        return f"FolderImages({len(self)} files as {'x'.join(map(str, self.shape[1:]))}, workers={self.workers})"
