"""A trained network for use from Python: ``volnet.load(path)``, ``model.predict(images)``, ``model.save(path)``.

:class:`Model` is the reading side of a checkpoint, as :class:`volnet.train.Trainer`
is the writing side: the network with its weights, the normalisation it was
trained with, the class names, and the checkpoint's metadata, kept so that a
saved copy is again a checkpoint that ``volnet eval``, ``volnet predict`` and
``volnet train --resume`` read. It lives in ``train/`` beside the checkpoint
format (:mod:`volnet.train.checkpoint`) that it reads and writes.

Example::

    >>> model = volnet.load("runs/demo/checkpoint.safetensors")
    >>> model.predict(volnet.data.load("mnist5k", split="test").images[:4]).shape
    (4, 10)
"""

from __future__ import annotations

from dataclasses import dataclass
from html import escape
from pathlib import Path

import numpy as np

from ..ops import softmax
from ..data.augment import Normalizer
from . import checkpoint as ckpt
from .loop import predict as predict_scores


@dataclass(frozen=True)
class FilePrediction:
    """One image file's prediction (:meth:`Model.predict_files`).

    Attributes:
        path: the file read.
        probabilities: ``(classes,)``, summing to 1: what :meth:`Model.predict` gives for the image.
        note: how the file was converted to fit the net (``"converted RGBA to grayscale, resized 480x640
            to 28x28 (H x W)"``, what ``volnet predict`` prints), "" when it already fitted.
        classes: the model's class names.
    """

    path: Path
    probabilities: np.ndarray
    note: str
    classes: tuple[str, ...]

    def top(self, k: int = 3) -> list[tuple[str, float]]:
        """The ``k`` most probable ``(class name, probability)``, most probable first (ties: lower index)."""
        order = np.argsort(-self.probabilities, kind="stable")[:k]
        return [(self.classes[c], float(self.probabilities[c])) for c in order]


class Model:
    """A network with what inference needs around it.

    Args:
        net: the :class:`volnet.Sequential`, weights allocated.
        normalizer: the :class:`volnet.data.Normalizer` the net was trained
            with, applied to images before the net sees them. Default: None
            (images go in as they are).
        classes: the class names, one per output score. Default: ``"0"``,
            ``"1"``, ... as many as the net has scores.
        metadata: the checkpoint's JSON description, kept for :meth:`save`.
            Default: empty (a net trained in Python).

    Attributes:
        net, normalizer, classes (a tuple of str), metadata.

    Raises:
        ValueError: ``classes`` does not give one name per output score, or the net ends in a volume
            larger than 1x1xK.
    """

    def __init__(self, net, normalizer: Normalizer | None = None, classes=None, metadata: dict | None = None,
                 *, extra_tensors: dict[str, np.ndarray] | None = None):
        shape = tuple(net.output_shape)
        if len(shape) == 3 and shape[:2] != (1, 1):
            raise ValueError(f"a Model classifies, so its net must end in class scores (an FC layer, or GAP's 1x1xK); "
                             f"this net ends in a {'x'.join(map(str, shape))} volume: end it with FC(classes) or "
                             "GlobalAvgPool()")
        scores = shape[-1]
        self.net = net
        self.normalizer = normalizer
        self.classes = tuple(str(c) for c in classes) if classes is not None else tuple(map(str, range(scores)))
        if len(self.classes) != scores:
            raise ValueError(f"{len(self.classes)} class names for a net with {scores} output scores")
        self.metadata = dict(metadata or {})
        # A checkpoint's tensors besides the weights (the optimizer's caches, the epoch's order), written back
        # by save() so that a loaded-and-saved run can still be resumed.
        self._extra_tensors = dict(extra_tensors or {})

    @property
    def input_shape(self) -> tuple[int, int, int]:
        """One input volume ``(H, W, D)``."""
        return tuple(self.net.input_shape)

    def scores(self, images, batch_size: int = 256) -> np.ndarray:
        """Class scores ``(N, classes)`` (``(classes,)`` for one volume), normalised images in, inference mode.

        ``images`` as :meth:`predict` takes them.
        """
        batch, single = self._batch(images)
        if len(batch) == 0:
            return np.empty((0, len(self.classes)), self.net.dtype)
        scores = predict_scores(self.net, batch, batch_size, transform=self.normalizer)  # (N, classes), GAP too
        return scores[0] if single else scores

    def predict(self, images, batch_size: int = 256) -> np.ndarray:
        """Class probabilities: the softmax of :meth:`scores`, each row summing to 1.

        Args:
            images: one volume ``(H, W, D)`` or a batch ``(N, H, W, D)`` of the
                net's input size, floats in [0, 1] as :func:`volnet.data.load`
                returns them (the normalisation is applied here).
            batch_size: images per forward pass. Default: 256.

        Returns:
            ``(classes,)`` for one volume, ``(N, classes)`` for a batch.

        Raises:
            ValueError: another shape (the message names the expected one),
                integer images, or values outside [0, 1].
        """
        return softmax(self.scores(images, batch_size))

    def predict_files(self, paths, batch_size: int = 256, on_image=None) -> list[FilePrediction]:
        """Class probabilities for image files, converted as the checkpoint's network needs them.

        Each file is read with Pillow, converted to the net's colour mode (grayscale for depth 1, else
        RGB) and resized to its input ``H x W``, as ``volnet predict`` does; :attr:`FilePrediction.note`
        says what was changed. Files are read ``batch_size`` at a time, so a large folder is not held
        in memory at once.

        Args:
            paths: image files (PNG/JPEG), or folders standing for the images in them (sorted by name).
            batch_size: images read and forwarded at once. Default: 256.
            on_image: called with each :class:`FilePrediction` as it is made (a progress bar's hook).

        Returns:
            one :class:`FilePrediction` per image, in the order given.

        Raises:
            DataError: a file that is missing or not an image, or a folder without images.
        """
        from ..data.folder import image_paths
        from ..data.images import read_image_with_note

        files = image_paths(paths)
        H, W, D = self.input_shape
        results = []
        for start in range(0, len(files), batch_size):
            chunk = files[start: start + batch_size]
            read = [read_image_with_note(path, size=(H, W), grayscale=D == 1) for path in chunk]
            probabilities = self.predict(np.stack([volume for volume, _ in read]), batch_size)
            for path, (_, note), p in zip(chunk, read, probabilities):
                results.append(FilePrediction(path, p, note, self.classes))
                if on_image is not None:
                    on_image(results[-1])
        return results

    def save(self, path) -> Path:
        """Write a checkpoint atomically (temporary file, fsync, rename); returns its path.

        The file holds the current weights and the metadata this model was
        loaded with (architecture, normalisation and class names brought up
        to date), so ``load(path)`` predicts identically and the command
        line reads it as it read the original.
        """
        return ckpt.save(path, *ckpt.pack_model(self.net, self.normalizer, self.classes, self.metadata,
                                                 self._extra_tensors))

    def _batch(self, images) -> tuple[np.ndarray, bool]:
        """``(batch (N, H, W, D) in the net's dtype, whether one volume came in)``, or a ValueError."""
        x = np.asarray(images)
        H, W, D = self.input_shape
        single = x.shape == (H, W, D)
        if not single and not (x.ndim == 4 and x.shape[1:] == (H, W, D)):
            raise ValueError(f"expected one volume (H, W, D) = ({H}, {W}, {D}) or a batch (N, H, W, D) = "
                             f"(N, {H}, {W}, {D}), got shape {x.shape}")
        if x.dtype.kind != "f":
            raise ValueError(f"expected floats in [0, 1] as volnet.data.load returns them, got {x.dtype} "
                             "(divide 8-bit images by 255)")
        if x.size and (x.min() < 0 or x.max() > 1):
            raise ValueError(f"expected values in [0, 1] as volnet.data.load returns them, got "
                             f"{x.min():g} to {x.max():g}")
        x = x.astype(self.net.dtype, copy=False)
        return (x[None] if single else x), single

    def __repr__(self):
        normalised = ", normalised" if self.normalizer is not None else ""
        return f"Model({self.net!r}, {len(self.classes)} classes{normalised})"

    def _repr_html_(self) -> str:
        """For notebooks: the classes and normalisation, then the network's summary table."""
        shown = ", ".join(self.classes[:12]) + (", ..." if len(self.classes) > 12 else "")
        normalised = "normalised per channel" if self.normalizer is not None else "not normalised"
        return f"<div>Model: {len(self.classes)} classes ({escape(shown)}), {normalised}</div>{self.net._repr_html_()}"


def load(path) -> Model:
    """The :class:`Model` in the checkpoint at ``path`` (written by ``volnet train`` or :meth:`Model.save`).

    Raises:
        CheckpointError: the file is missing, not a volnet checkpoint, or its
            weights do not fit its architecture.
    """
    net, normalizer, tensors, metadata = ckpt.load_model(path)
    classes = metadata.get("data", {}).get("classes")
    return Model(net, normalizer, classes, metadata, extra_tensors=ckpt.training_tensors(tensors))
