"""Batch augmentation: random crops, horizontal flips, small rotations and translations, colour jitter,
cutout, and per-channel normalisation.

Every transform maps a batch ``(N, H, W, D)`` to a batch of the same shape,
takes the random generator as an explicit argument (same seed, same
result), never writes into its input, and works on the whole batch at once.
Each has ``get_config()`` and ``from_config()``, so a checkpoint can store
the pipeline, including a fitted :class:`Normalizer`'s numbers.

Example:
    >>> rng = np.random.default_rng(0)
    >>> train = np.zeros((8, 32, 32, 3), np.float32)
    >>> normalise = Normalizer.fit(train)
    >>> augment = Augment([RandomCrop(pad=4), HorizontalFlip(), normalise])
    >>> augment(train, rng).shape
    (8, 32, 32, 3)
"""

from __future__ import annotations

import numpy as np

from ..shapes import pair


def _batch(images) -> np.ndarray:
    x = np.asarray(images)
    if x.ndim != 4:
        raise ValueError(f"expected a batch of volumes (N, H, W, D), got shape {x.shape}")
    return x


def _generator(rng) -> np.random.Generator:
    if not isinstance(rng, np.random.Generator):
        raise TypeError(f"pass a NumPy Generator, e.g. np.random.default_rng(seed), not {type(rng).__name__}")
    return rng


class RandomCrop:
    """Zero-pad each image by ``P`` on every border, then crop ``H x W`` back out at a random offset.

    Each image gets its own offset ``(dy, dx)``, uniform in ``[0, 2P]``, so the
    content shifts by up to ``P`` pixels each way. ``pad=0`` is the identity.
    The padded batch is never built: each crop is read from the image with
    clipped indices and its rows and columns outside the image are zeroed, so
    the memory is that of the output, whatever ``P``.

    Args:
        pad: ``P``, or ``(P_h, P_w)``, below the image's ``H`` and ``W``.
            Default: 4 (the usual CIFAR-10 setting).

    Raises:
        ValueError: ``P_h >= H`` or ``P_w >= W`` (see :meth:`check`).
    """

    def __init__(self, pad=4):
        self.pad = pair(pad, "pad")
        if min(self.pad) < 0:
            raise ValueError(f"pad must be >= 0, got {pad!r}")

    def check(self, image_shape) -> None:
        """Refuse a pad that lets a crop be all padding, ``P_h >= H`` or ``P_w >= W``, for images ``(H, W, ...)``."""
        H, W = image_shape[:2]
        ph, pw = self.pad
        if (ph > 0 and ph >= H) or (pw > 0 and pw >= W):
            pad = ph if ph == pw else (ph, pw)
            raise ValueError(f"--crop-pad {pad} (RandomCrop pad) must be smaller than the image's height and width, "
                             f"{H}x{W}: a larger pad lets a crop hold nothing but padding; "
                             f"use --crop-pad {max(min(H, W) - 1, 0)} or less")

    def __call__(self, images, rng: np.random.Generator) -> np.ndarray:
        x, rng = _batch(images), _generator(rng)
        N, H, W, _ = x.shape
        self.check((H, W))
        ph, pw = self.pad
        rows = rng.integers(0, 2 * ph + 1, size=N)[:, None] - ph + np.arange(H)  # (N, H): source row, maybe outside
        cols = rng.integers(0, 2 * pw + 1, size=N)[:, None] - pw + np.arange(W)  # (N, W)
        out = x[np.arange(N)[:, None, None], np.clip(rows, 0, H - 1)[:, :, None], np.clip(cols, 0, W - 1)[:, None, :]]
        out[(rows < 0) | (rows >= H)] = 0  # rows that fall in the padding
        out.transpose(0, 2, 1, 3)[(cols < 0) | (cols >= W)] = 0  # columns that do
        return out

    def get_config(self) -> dict:
        return {"pad": list(self.pad)}

    @classmethod
    def from_config(cls, config: dict) -> RandomCrop:
        return cls(**config)


class HorizontalFlip:
    """Mirror each image left-right (along W) with probability ``p``, independently.

    Args:
        p: probability of flipping an image. Default: 0.5.
    """

    def __init__(self, p: float = 0.5):
        if not 0.0 <= p <= 1.0:
            raise ValueError(f"p must be a probability in [0, 1], got {p!r}")
        self.p = float(p)

    def __call__(self, images, rng: np.random.Generator) -> np.ndarray:
        x, rng = _batch(images), _generator(rng)
        flip = rng.random(len(x)) < self.p
        return np.where(flip[:, None, None, None], x[:, :, ::-1], x)

    def get_config(self) -> dict:
        return {"p": self.p}

    @classmethod
    def from_config(cls, config: dict) -> HorizontalFlip:
        return cls(**config)


def _warp(x: np.ndarray, angles: np.ndarray, shifts: np.ndarray) -> np.ndarray:
    """Rotate each image by ``angles[i]`` radians about its centre and move it by ``shifts[i] = (dy, dx)`` pixels.

    Positive angles turn the image clockwise as it is shown (rows running down). Output pixel ``(r, c)``
    of image i reads the input at the inverse map of its position, bilinearly
    interpolated; positions outside the image read 0. ``x`` ``(N, H, W, D)``, angles ``(N,)``, shifts
    ``(N, 2)``; the output has ``x``'s shape and dtype.
    """
    N, H, W, _ = x.shape
    cy, cx = (H - 1) / 2, (W - 1) / 2
    r = np.arange(H, dtype=np.float64)[None, :, None] - cy - shifts[:, 0, None, None]  # (N, H, 1)
    c = np.arange(W, dtype=np.float64)[None, None, :] - cx - shifts[:, 1, None, None]  # (N, 1, W)
    cos, sin = np.cos(angles)[:, None, None], np.sin(angles)[:, None, None]
    src_r = cos * r - sin * c + cy  # (N, H, W): the inverse rotation of the output position
    src_c = sin * r + cos * c + cx
    r0, c0 = np.floor(src_r).astype(np.int64), np.floor(src_c).astype(np.int64)
    fr, fc = (src_r - r0)[..., None], (src_c - c0)[..., None]
    n = np.arange(N)[:, None, None]
    out = np.zeros(x.shape, np.float64)
    for dr, dc, weight in ((0, 0, (1 - fr) * (1 - fc)), (0, 1, (1 - fr) * fc), (1, 0, fr * (1 - fc)),
                           (1, 1, fr * fc)):
        rows, cols = r0 + dr, c0 + dc
        inside = ((rows >= 0) & (rows < H) & (cols >= 0) & (cols < W))[..., None]
        out += np.where(inside, x[n, np.clip(rows, 0, H - 1), np.clip(cols, 0, W - 1)], 0) * weight
    return out.astype(x.dtype, copy=False)


class RandomRotation:
    """Rotate each image about its centre by an angle uniform in ``[-degrees, degrees]`` (bilinear, zeros
    where the rotated image leaves the frame). ``degrees=0`` is the identity.

    Args:
        degrees: the largest rotation either way. Default: 10 (small: a 6 stays a 6).
    """

    def __init__(self, degrees: float = 10.0):
        if not 0 <= degrees <= 180:
            raise ValueError(f"degrees must be in [0, 180], got {degrees!r}")
        self.degrees = float(degrees)

    def __call__(self, images, rng: np.random.Generator) -> np.ndarray:
        x, rng = _batch(images), _generator(rng)
        angles = np.deg2rad(rng.uniform(-self.degrees, self.degrees, size=len(x)))
        return _warp(x, angles, np.zeros((len(x), 2)))

    def get_config(self) -> dict:
        return {"degrees": self.degrees}

    @classmethod
    def from_config(cls, config: dict) -> RandomRotation:
        return cls(**config)


class RandomTranslation:
    """Move each image by ``(dy, dx)``, each uniform in ``[-pixels, pixels]`` (fractions interpolated
    bilinearly, zeros where it leaves the frame). Unlike :class:`RandomCrop`, shifts need not be whole pixels.

    Args:
        pixels: the largest move either way, along each axis. Default: 2.
    """

    def __init__(self, pixels: float = 2.0):
        if not pixels >= 0:
            raise ValueError(f"pixels must be >= 0, got {pixels!r}")
        self.pixels = float(pixels)

    def __call__(self, images, rng: np.random.Generator) -> np.ndarray:
        x, rng = _batch(images), _generator(rng)
        shifts = rng.uniform(-self.pixels, self.pixels, size=(len(x), 2))
        return _warp(x, np.zeros(len(x)), shifts)

    def get_config(self) -> dict:
        return {"pixels": self.pixels}

    @classmethod
    def from_config(cls, config: dict) -> RandomTranslation:
        return cls(**config)


class ColorJitter:
    """Scale each image's brightness, contrast and (for RGB) saturation by factors uniform in
    ``[1 - strength, 1 + strength]``, in that order, then clip to [0, 1].

    brightness: ``x * b``; contrast: ``(x - m) * c + m`` with ``m`` the image's mean; saturation:
    ``(x - g) * s + g`` with ``g`` the image's gray value per pixel (``x.mean`` over the channels).
    Three factors are drawn per image whatever the depth, so the draws do not depend on the images.

    Args:
        strength: how far the factors may stray from 1, in [0, 1). Default: 0.2.
    """

    def __init__(self, strength: float = 0.2):
        if not 0 <= strength < 1:
            raise ValueError(f"strength must be in [0, 1), got {strength!r}")
        self.strength = float(strength)

    def __call__(self, images, rng: np.random.Generator) -> np.ndarray:
        x, rng = _batch(images), _generator(rng)
        factors = rng.uniform(1 - self.strength, 1 + self.strength, size=(3, len(x), 1, 1, 1))
        out = x.astype(np.float64) * factors[0]
        mean = out.mean(axis=(1, 2, 3), keepdims=True)
        out = (out - mean) * factors[1] + mean
        if x.shape[-1] == 3:
            gray = out.mean(axis=3, keepdims=True)
            out = (out - gray) * factors[2] + gray
        return np.clip(out, 0, 1).astype(x.dtype, copy=False)

    def get_config(self) -> dict:
        return {"strength": self.strength}

    @classmethod
    def from_config(cls, config: dict) -> ColorJitter:
        return cls(**config)


class Cutout:
    """Zero a ``size x size`` square at a random centre in each image (DeVries and Taylor, 2017); the square
    may stick out of the image, so an edge loses less.

    Args:
        size: the square's side in pixels. Default: 8.
    """

    def __init__(self, size: int = 8):
        if not (isinstance(size, (int, np.integer)) and size >= 0):
            raise ValueError(f"size must be an integer >= 0, got {size!r}")
        self.size = int(size)

    def __call__(self, images, rng: np.random.Generator) -> np.ndarray:
        x, rng = _batch(images), _generator(rng)
        N, H, W, _ = x.shape
        top = rng.integers(0, H, size=N) - self.size // 2  # the square's first row and column, maybe outside
        left = rng.integers(0, W, size=N) - self.size // 2
        rows = (np.arange(H) >= top[:, None]) & (np.arange(H) < top[:, None] + self.size)  # (N, H)
        cols = (np.arange(W) >= left[:, None]) & (np.arange(W) < left[:, None] + self.size)  # (N, W)
        return np.where((rows[:, :, None] & cols[:, None, :])[..., None], 0, x).astype(x.dtype, copy=False)

    def get_config(self) -> dict:
        return {"size": self.size}

    @classmethod
    def from_config(cls, config: dict) -> Cutout:
        return cls(**config)


FIT_BATCH = 256  # images per batch when a normaliser is fitted on images streamed from disk


class Normalizer:
    """Subtract a per-channel mean and divide by a per-channel standard deviation.

    Fit it on the training set (:meth:`fit`) and apply the same numbers to
    every split; ``get_config()`` holds them for a checkpoint. Deterministic:
    the ``rng`` argument exists only so it composes with the random
    transforms in :class:`Augment`.

    Args:
        mean: ``D`` channel means.
        std: ``D`` channel standard deviations, all > 0.
    """

    def __init__(self, mean, std):
        self.mean = np.asarray(mean, dtype=np.float32).reshape(-1)
        self.std = np.asarray(std, dtype=np.float32).reshape(-1)
        if self.mean.shape != self.std.shape:
            raise ValueError(f"mean and std need one number per channel, got {self.mean.size} and {self.std.size}")
        if not np.all(self.std > 0):
            raise ValueError(f"std must be > 0 for every channel, got {self.std.tolist()}")

    @classmethod
    def fit(cls, images) -> Normalizer:
        """Per-channel mean and std of ``images`` ``(N, H, W, D)``; a constant channel gets std 1.

        Images streamed from disk (with a ``batches(size)`` method, e.g.
        :class:`~volnet.data.stream.FolderImages`) are fitted batch by batch
        (:meth:`fit_batches`), reading each image once.
        """
        if hasattr(images, "batches"):
            return cls.fit_batches(images.batches(FIT_BATCH))
        x = _batch(images)
        channels = [x[..., c] for c in range(x.shape[-1])]  # one channel at a time bounds the float64 temporaries
        mean = [c.mean(dtype=np.float64) for c in channels]
        std = [c.std(dtype=np.float64) for c in channels]
        return cls(mean, [s if s > 0 else 1.0 for s in std])

    @classmethod
    def fit_batches(cls, batches) -> Normalizer:
        """:meth:`fit` over batches ``(n, H, W, D)`` that together are the images, in one pass.

        Each batch's per-channel count, mean and sum of squared deviations
        (float64) are merged into the running ones (Chan, Golub and LeVeque's
        pairwise update), so the result is :meth:`fit`'s on all the images at
        once, up to float64 rounding.
        """
        count, mean, squares = 0, None, None
        for batch in batches:
            x = _batch(batch)
            n = x[..., 0].size
            if n == 0:
                continue
            if mean is None:
                mean, squares = np.zeros(x.shape[-1]), np.zeros(x.shape[-1])
            for c in range(x.shape[-1]):  # one channel at a time, as fit
                m = x[..., c].mean(dtype=np.float64)
                m2 = x[..., c].var(dtype=np.float64) * n
                delta, total = m - mean[c], count + n
                mean[c] += delta * n / total
                squares[c] += m2 + delta * delta * count * n / total
            count += n
        if mean is None:
            raise ValueError("cannot fit a normaliser on no images")
        std = np.sqrt(squares / count)
        return cls(mean, [s if s > 0 else 1.0 for s in std])

    def __call__(self, images, rng: np.random.Generator | None = None) -> np.ndarray:
        x = _batch(images)
        if x.shape[-1] != self.mean.size:
            raise ValueError(f"normaliser fitted on {self.mean.size} channels, got a batch with D = {x.shape[-1]}")
        return ((x - self.mean) / self.std).astype(np.float32, copy=False)

    def get_config(self) -> dict:
        return {"mean": self.mean.tolist(), "std": self.std.tolist()}

    @classmethod
    def from_config(cls, config: dict) -> Normalizer:
        return cls(**config)


TRANSFORMS = {cls.__name__: cls for cls in (RandomCrop, HorizontalFlip, RandomRotation, RandomTranslation, ColorJitter,
                                            Cutout, Normalizer)}


class Augment:
    """Apply transforms in order, all drawing from the one generator passed in.

    Example:
        >>> augment = Augment([RandomCrop(pad=4), HorizontalFlip()])
        >>> augment(np.ones((2, 8, 8, 3)), np.random.default_rng(0)).shape
        (2, 8, 8, 3)
    """

    def __init__(self, transforms):
        self.transforms = tuple(transforms)

    def check(self, image_shape) -> None:
        """Refuse, before training, settings that make no sense for images ``(H, W, D)``: a crop pad >= H or W."""
        for transform in self.transforms:
            if hasattr(transform, "check"):
                transform.check(image_shape)

    def __call__(self, images, rng: np.random.Generator) -> np.ndarray:
        x = _batch(images)
        for transform in self.transforms:
            x = transform(x, rng)
        return x

    def get_config(self) -> dict:
        return {"transforms": [{"name": type(t).__name__, **t.get_config()} for t in self.transforms]}

    @classmethod
    def from_config(cls, config: dict) -> Augment:
        transforms = []
        for entry in config["transforms"]:
            entry = dict(entry)
            name = entry.pop("name")
            if name not in TRANSFORMS:
                raise ValueError(f"unknown transform {name!r}; known: {', '.join(TRANSFORMS)}")
            transforms.append(TRANSFORMS[name].from_config(entry))
        return cls(transforms)
