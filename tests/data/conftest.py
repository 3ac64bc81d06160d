"""File writers for the data-loader tests: every format is generated small, in ``tmp_path``.

* ``write_idx``  ``write_idx(path, array)`` writes ``array`` as an IDX file
                 (gzipped when ``path`` ends in ``.gz``) and returns ``path``.
"""

from __future__ import annotations

import gzip

import numpy as np
import pytest

IDX_CODES = {np.dtype("u1"): 0x08, np.dtype("i1"): 0x09, np.dtype(">i2"): 0x0B,
             np.dtype(">i4"): 0x0C, np.dtype(">f4"): 0x0D, np.dtype(">f8"): 0x0E}


def idx_bytes(array: np.ndarray) -> bytes:
    big = array.astype(array.dtype.newbyteorder(">")) if array.dtype.itemsize > 1 else array
    header = bytes([0, 0, IDX_CODES[big.dtype], array.ndim])
    return header + np.array(array.shape, ">u4").tobytes() + np.ascontiguousarray(big).tobytes()


def write_idx_file(path, array):
    raw = idx_bytes(np.asarray(array))
    path.write_bytes(gzip.compress(raw) if path.suffix == ".gz" else raw)
    return path


@pytest.fixture
def write_idx():
    return write_idx_file


@pytest.fixture
def cache(tmp_path, monkeypatch):
    """An empty cache folder, set as ``$VOLNET_DATA``."""
    folder = tmp_path / "cache"
    monkeypatch.setenv("VOLNET_DATA", str(folder))
    return folder
