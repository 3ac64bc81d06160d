"""Work that cannot fit is refused before it is allocated: building, training, sliding, and the CLI's last line.

The guards compare volnet's own estimates with the memory available; here
``volnet.resources.available_memory`` is set to chosen figures so that
fitting and not fitting are deterministic, and a subprocess under a real
address-space limit (``ulimit -v``) runs the command line end to end.
"""

import os
import re
import resource
import subprocess
import sys
import tracemalloc

import numpy as np
import pytest

from volnet import Sequential, build, resources
from volnet.cli import main
from volnet.convert import fc_to_conv, slide, sliding_size
from volnet.convert.sliding import _largest_fitting_size, require_sliding_memory, sliding_memory
from volnet.layers import ReLU
from volnet.layers.base import Layer
from volnet.resources import HEADROOM_BYTES, ResourceError, usable_memory

MiB = 2**20
TINY = "INPUT[28x28x1] -> CONV3-4/P1 -> RELU -> POOL2 -> FC10"
ADDRESS_SPACE = 4 * 2**30  # the subprocesses' ulimit -v: well above volnet's own needs, below the work refused


@pytest.fixture
def machine(monkeypatch):
    """Set the memory the guards see: ``machine(bytes)``."""
    def set_available(n):
        monkeypatch.setattr(resources, "available_memory", lambda: n)
    return set_available


def peak_bytes(work) -> int:
    """Peak bytes that ``work()`` allocates through NumPy and Python, by tracemalloc."""
    tracemalloc.start()
    try:
        work()
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def refused(work) -> tuple[str, int]:
    """``(message, peak bytes allocated)`` of ``work()``, which must raise ResourceError."""
    tracemalloc.start()
    try:
        with pytest.raises(ResourceError) as error:
            work()
        return str(error.value), tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


# -- building ------------------------------------------------------------------------

def test_a_layer_too_large_for_any_machine_is_refused_before_allocating():
    message, peak = refused(lambda: build("INPUT[28x28x1] -> FC100000000000 -> FC10"))
    assert peak < 10 * MiB
    assert re.search(r"building this network's 79,500,000,000,010 parameters \(layer 1 \(FC\) holds "
                     r"78,500,000,000,000\) needs 859\.7 TiB", message)
    assert message.endswith("make layer 1 (FC) smaller or choose a smaller network (--arch)")


@pytest.mark.slow
def test_building_counts_the_weights_and_their_float64_draw(machine):
    spec = "INPUT[100x100x1] -> FC2000 -> FC10"  # 20,022,010 parameters: 80 MB, drawn as 160 MB of float64
    needed = 20_022_010 * 4 + 8 * 20_000_000
    machine(needed)  # all of it, but the headroom leaves less for arrays
    message, peak = refused(lambda: build(spec))
    assert "layer 1 (FC) holds 20,002,000" in message and peak < MiB
    machine(2 * needed + HEADROOM_BYTES)
    assert build(spec).num_params == 20_022_010


def test_shapes_only_is_never_refused(machine):
    machine(HEADROOM_BYTES)
    net = build("INPUT[224x224x3] -> FC100000 -> FC10", allocate=False)
    assert net.num_params == 224 * 224 * 3 * 100000 + 100000 + 1000010


class HungryTestLayer(Layer):
    """A layer whose parameters cannot be allocated, whatever the estimate said."""

    def output_shape(self, input_shape):
        return input_shape

    def _init_params(self, input_shape, rng, dtype):
        raise MemoryError("Unable to allocate 1 PiB")


def test_memory_error_while_building_names_the_layer():
    with pytest.raises(ResourceError, match=r"^layer 2 \(HungryTestLayer\): its parameters do not fit in memory "
                                            r"\(Unable to allocate 1 PiB\); choose a smaller layer"):
        Sequential([ReLU(), HungryTestLayer()], (4, 4, 1))


# -- sliding --------------------------------------------------------------------------

def test_sliding_at_a_scale_that_fits_returns_its_size(machine):
    net = build(TINY)
    machine(2 * sliding_memory(net, sliding_size(net, 10)) + HEADROOM_BYTES)
    assert require_sliding_memory(net, 10) == sliding_size(net, 10) == (280, 280)


def test_sliding_too_far_is_refused_naming_the_largest_scale_that_fits(machine):
    net = build(TINY)
    available = sliding_memory(net, sliding_size(net, 10)) + HEADROOM_BYTES + 50 * MiB
    machine(available)
    with pytest.raises(ResourceError) as error:
        require_sliding_memory(net, 100, 1)
    message = str(error.value)
    assert message.startswith("sliding the 28x28 net over 1 image of 2800x2800 (--scale 100) needs ")
    assert re.search(r"; lower --scale \(the largest that fits is about [\d.]+\)$", message)
    largest = _largest_fitting_size(net, fc_to_conv(net), (2800, 2800), 1, False, usable_memory(available))
    assert sliding_memory(net, largest, 1) <= usable_memory(available)
    assert sliding_memory(net, (largest[0] + 2, largest[1] + 2), 1) > usable_memory(available)  # stride 2


def test_sliding_many_images_suggests_fewer(machine):
    net = build(TINY)
    machine(sliding_memory(net, (28, 28), 1) + HEADROOM_BYTES + MiB)
    with pytest.raises(ResourceError, match="over 100 images of 28x28 .*; pass fewer images at once$"):
        require_sliding_memory(net, 1, 100)


def test_an_absurd_scale_is_refused_without_allocating_the_images():
    net = build(TINY)
    for scale in (1e5, 1e300):
        message, peak = refused(lambda: require_sliding_memory(net, scale))
        assert "lower --scale" in message and peak < 10 * MiB


@pytest.mark.parametrize("scale", [float("inf"), float("nan")])
def test_sliding_size_needs_a_finite_scale(scale):
    with pytest.raises(ValueError, match="finite"):
        sliding_size(build(TINY, allocate=False), scale)


def test_the_sliding_estimate_covers_what_sliding_allocates():
    net = build(TINY)
    size = sliding_size(net, 12)
    images = np.random.default_rng(0).random((2, *size, 1), dtype=np.float32)
    measured = images.nbytes + peak_bytes(lambda: slide(net, images))
    estimate = sliding_memory(net, size, 2)
    assert measured <= estimate < 2 * measured


# -- the command line -----------------------------------------------------------------

def run_volnet(*args, cwd):
    """``volnet ARGS`` in a subprocess under an address-space limit, as a user's shell with ``ulimit -v`` would."""
    env = {**os.environ, "OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1"}
    return subprocess.run([sys.executable, "-m", "volnet", *args], capture_output=True, text=True, cwd=cwd, env=env,
                          timeout=300,
                          preexec_fn=lambda: resource.setrlimit(resource.RLIMIT_AS, (ADDRESS_SPACE, ADDRESS_SPACE)))


def assert_one_line_error(result, *fragments):
    assert result.returncode == 1, result.stderr
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    for fragment in fragments:
        assert fragment in lines[0]


@pytest.mark.parametrize("arch, fragments", [
    ("INPUT -> FC100000000000 -> FC", ["needs", "make layer 1 (FC) smaller", "--arch"]),
    ("INPUT -> CONV3-8/D3000 -> RELU -> FC", ["training INPUT -> CONV3-8/D3000 -> RELU -> FC at batch 64 needs",
                                              "lower --batch-size (the largest batch that fits is"]),
])
def test_train_refuses_a_network_that_cannot_fit(arch, fragments, tmp_path):
    result = run_volnet("train", "--arch", arch, "--epochs", "1", "--out", str(tmp_path / "run"), cwd=tmp_path)
    assert_one_line_error(result, "volnet train: error: ", *fragments)


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory, tiny_checkpoint):
    """A folder holding a blank 28x28 digit.png, and the shared tiny checkpoint at run/checkpoint.safetensors."""
    from PIL import Image

    folder = tmp_path_factory.mktemp("tiny")
    (folder / "run").mkdir()
    (folder / "run" / "checkpoint.safetensors").symlink_to(tiny_checkpoint)
    Image.fromarray(np.zeros((28, 28), dtype=np.uint8)).save(folder / "digit.png")
    return folder


def test_predict_refuses_an_absurd_scale(checkpoint):
    result = run_volnet("predict", str(checkpoint / "run" / "checkpoint.safetensors"), "digit.png", "--slide",
                        "--scale", "100000", cwd=checkpoint)
    assert_one_line_error(result, "volnet predict: error: sliding the 28x28 net over 1 image of 2800000x2800000",
                          "lower --scale (the largest that fits is about")


@pytest.mark.slow
def test_predict_slides_at_a_scale_that_fits(checkpoint):
    result = run_volnet("predict", str(checkpoint / "run" / "checkpoint.safetensors"), "digit.png", "--slide",
                        "--scale", "20", cwd=checkpoint)
    assert result.returncode == 0, result.stderr
    assert "over 560x560 images" in result.stdout


@pytest.mark.parametrize("error, what", [(MemoryError("Unable to allocate 1.00 TiB"), "out of memory"),
                                         (OverflowError("cannot fit 'int' into an index-sized integer"),
                                          "a size too large to compute with")])
def test_main_prints_memory_errors_as_one_line(monkeypatch, capsys, error, what):
    def cmd_summary(args):
        raise error

    monkeypatch.setattr("volnet.cli.parser.cmd_summary", cmd_summary)
    assert main(["summary", "notes"]) == 1
    err = capsys.readouterr().err
    assert err == (f"volnet summary: error: {what} while running summary ({type(error).__name__}: {error}); "
                   "choose a smaller --arch\n")
