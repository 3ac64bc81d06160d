"""volnet.export.to_onnx's memory: the file is build_onnx's model, written without copying every weight
several times, and an export that would not fit is refused in one line before anything is built.

vgg16 (528 MiB of weights) once peaked at 2034 MiB over the loaded network (the weights made contiguous,
then copied into the protobuf, then serialised whole) and, under a memory limit, segfaulted or raised
protobuf's EncodeError; it now peaks at 401 MiB over it (its FC6 weights, reordered for ONNX's flatten).
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
import tracemalloc
from pathlib import Path

import numpy as np
import pytest

onnx = pytest.importorskip("onnx")

from volnet import Sequential  # noqa: E402
from volnet.data import Normalizer  # noqa: E402
from volnet.export import build_onnx, to_onnx  # noqa: E402
from volnet.export.onnx_model import EXPORT_OVERHEAD, _varint, export_memory  # noqa: E402
from volnet.layers import FC, BatchNorm, Conv2D, LocallyConnected, MaxPool, ReLU  # noqa: E402

SRC = Path(__file__).resolve().parents[2] / "src"


def reordering_net(dtype="float32", size=16):
    """An FC reading a volume (its weights reordered for ONNX) beside transposed CONV and LC weights."""
    return Sequential([Conv2D(8, 3, P=1), BatchNorm(), ReLU(), LocallyConnected(4, 3, P=1), MaxPool(2, 2),
                       FC(64), ReLU(), FC(10)], (size, size, 3), seed=2, dtype=dtype)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("layout", ["nhwc", "nchw"])
def test_the_written_file_is_build_onnxs_model(tmp_path, dtype, layout):
    net, normalizer = reordering_net(dtype), Normalizer(mean=[0.1, 0.2, 0.3], std=[0.5, 0.6, 0.7])
    path = to_onnx(net, tmp_path / "m.onnx", normalizer=normalizer, layout=layout, classes=["a", "b"])
    written = onnx.load(path)
    assert written == build_onnx(net, normalizer=normalizer, layout=layout, classes=["a", "b"])
    onnx.checker.check_model(str(path), full_check=True)
    assert json.loads({p.key: p.value for p in written.metadata_props}["classes"]) == ["a", "b"]
    assert [p.name for p in tmp_path.iterdir()] == ["m.onnx"]


def test_varint_is_protobufs():
    from google.protobuf.internal.encoder import _VarintBytes

    for n in [0, 1, 127, 128, 300, 2**31, 2**35 + 7, 2**63 - 1]:
        assert _varint(n) == _VarintBytes(n)


def test_the_estimate_counts_every_weight_once_in_float32():
    for dtype in ("float32", "float64"):
        net = reordering_net(dtype)
        values = sum(p.value.size for p in net.params())
        assert export_memory(net) == 4 * values + EXPORT_OVERHEAD


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_the_export_holds_at_most_one_float32_copy_of_the_weights(tmp_path, dtype):
    """What NumPy and Python allocate while exporting (tracemalloc sees arrays and bytes, not protobuf's
    own buffers): a float32 net whose weights need no reordering is written from its own arrays, a
    float64 net's weights are cast once (the estimate's weights). Serialising the model whole added a
    copy of every weight (the serialised string) to either."""
    net = Sequential([FC(256), ReLU(), FC(256), ReLU(), FC(256), ReLU(), FC(256)], (16, 16, 1), seed=2, dtype=dtype)
    weights = 4 * sum(p.value.size for p in net.params())
    to_onnx(net, tmp_path / "warm.onnx")  # onnx's own modules and caches loaded
    tracemalloc.start()
    try:
        to_onnx(net, tmp_path / "m.onnx")
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    copies = 0 if dtype == "float32" else weights
    assert export_memory(net) - EXPORT_OVERHEAD == weights
    assert peak <= copies + 2**16, (peak, weights)


LIMITED = textwrap.dedent("""
    import gc, resource, sys
    import onnx
    from volnet import Sequential
    from volnet.export import to_onnx
    from volnet.export.onnx_model import export_memory
    from volnet.layers import FC, Conv2D
    from volnet.resources import HEADROOM_BYTES, HEADROOM_FRACTION, ResourceError

    net = Sequential([Conv2D(16, 3, P=1), FC(160)], (64, 64, 3), seed=0)   # 42 MB of weights, reordered
    gc.collect()
    used = int(open("/proc/self/statm").read().split()[0]) * resource.getpagesize()
    needed = export_memory(net)
    room = needed // 2 if sys.argv[1] == "short" else int(needed * (1 + HEADROOM_FRACTION)) + HEADROOM_BYTES + 2**20
    resource.setrlimit(resource.RLIMIT_AS, (used + room, resource.RLIM_INFINITY))
    try:
        to_onnx(net, sys.argv[2])
    except ResourceError as error:
        print(error)
        sys.exit(3)
    print("written")
""")


@pytest.mark.slow
@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc/self/statm")
def test_under_a_memory_limit_export_refuses_in_one_line_or_fits(tmp_path):
    """A limit below the estimate: one line, nothing written (this segfaulted or raised EncodeError). A
    limit just above it (the guards' headroom added): the export fits in it, and the file is whole."""
    script = tmp_path / "limited.py"
    script.write_text(LIMITED)
    env = {"PYTHONPATH": str(SRC), "PATH": "/usr/bin:/bin", "OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1"}
    short = subprocess.run([sys.executable, str(script), "short", str(tmp_path / "a.onnx")], env=env,
                           capture_output=True, text=True, timeout=120)
    assert short.returncode == 3, short.stderr
    line, = short.stdout.splitlines()
    assert line.startswith("exporting the network to ONNX needs ") and "available" in line
    assert not list(tmp_path.glob("*.onnx")) and not list(tmp_path.glob(".a.onnx*"))
    enough = subprocess.run([sys.executable, str(script), "enough", str(tmp_path / "b.onnx")], env=env,
                            capture_output=True, text=True, timeout=120)
    assert (enough.returncode, enough.stdout) == (0, "written\n"), enough.stderr
    model = onnx.load(tmp_path / "b.onnx")
    weights = {t.name: onnx.numpy_helper.to_array(t) for t in model.graph.initializer}
    assert weights["layer2_weight"].shape == (64 * 64 * 16, 160)
    assert np.count_nonzero(weights["layer2_weight"]) > 0


def test_a_model_over_protobufs_limit_is_refused_not_written(tmp_path, monkeypatch):
    net = reordering_net()
    size = len(build_onnx(net).SerializeToString())
    monkeypatch.setattr(onnx.checker, "MAXIMUM_PROTOBUF", size - 1)
    with pytest.raises(ValueError, match=r"would be .* over protobuf's limit of 2 GiB"):
        to_onnx(net, tmp_path / "m.onnx")
    assert list(tmp_path.iterdir()) == []
    monkeypatch.setattr(onnx.checker, "MAXIMUM_PROTOBUF", size)
    assert to_onnx(net, tmp_path / "m.onnx").stat().st_size == size


def test_docstring_examples():
    import doctest

    from volnet.export import onnx_model

    assert doctest.testmod(onnx_model).attempted > 0 and doctest.testmod(onnx_model).failed == 0


def test_an_exported_file_gets_the_permissions_a_checkpoint_gets(tmp_path):
    # both are written through volnet.files.atomic_write: 0666 less the umask, not mkstemp's 0600
    from volnet.train import checkpoint as ckpt

    net = Sequential([FC(3)], (2, 2, 1))
    exported = to_onnx(net, tmp_path / "m.onnx")
    saved = ckpt.save(tmp_path / "c.safetensors", *ckpt.pack_model(net))
    assert exported.stat().st_mode & 0o777 == saved.stat().st_mode & 0o777 == 0o666 & ~_umask()


def _umask() -> int:
    import os

    mask = os.umask(0)
    os.umask(mask)
    return mask
