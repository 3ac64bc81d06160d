"""volnet.resources: what memory is available, and the guards that refuse work that would not fit."""

import os
import resource
import subprocess
import sys

import pytest

from volnet import Sequential, build, resources
from volnet.analysis import analyze, batch_fit, require_fit
from volnet.layers import FC, Conv2D, ReLU
from volnet.resources import (HEADROOM_BYTES, HEADROOM_FRACTION, ResourceError, describe_bytes, require_memory,
                              usable_memory)

MiB = 2**20


@pytest.fixture
def machine(monkeypatch):
    """Set the memory the guards see: ``machine(bytes)`` (None: the platform does not say)."""
    def set_available(n):
        monkeypatch.setattr(resources, "available_memory", lambda: n)
    return set_available


def small_net():
    return Sequential([Conv2D(8, 3, P=1), ReLU(), FC(10)], (32, 32, 3), allocate=False)


def test_available_memory_is_a_positive_byte_count():
    available = resources.available_memory()
    assert available is None or (isinstance(available, int) and available > 0)


def test_usable_memory_keeps_headroom():
    assert usable_memory(1150 * MiB) == 1000 * MiB
    assert usable_memory(HEADROOM_BYTES) == 0
    assert usable_memory(10 * 2**30) == int(10 * 2**30 / (1 + HEADROOM_FRACTION))


def test_require_memory_passes_what_fits(machine):
    machine(1150 * MiB)
    require_memory(1000 * MiB, "a test", "ask for less")
    machine(None)  # the platform does not say: nothing is refused
    require_memory(10**30, "a test", "ask for less")


def test_require_memory_refuses_with_the_figures_and_the_fix(machine):
    machine(1150 * MiB)
    with pytest.raises(ResourceError) as error:
        require_memory(1001 * MiB, "sliding the net", "lower --scale")
    message = str(error.value)
    assert isinstance(error.value, ValueError)  # the CLI prints ValueErrors as one line
    assert message.startswith("sliding the net needs 1001.0 MiB")
    assert "the machine has 1.1 GiB" in message and "1000.0 MiB" in message and message.endswith("; lower --scale")


def test_describe_bytes_writes_any_size():
    assert describe_bytes(1024) == "1.0 KiB (1.0 kB)"
    assert describe_bytes(10**700) == "about 10^700 bytes"  # beyond a float: no OverflowError
    assert describe_bytes(float("inf")) == "an unbounded number of bytes"


def test_require_fit_returns_the_estimate_when_it_fits(machine):
    net = small_net()
    machine(100 * 2**30)
    memory = require_fit(net, 64, "train", "adam", what="training the test net")
    assert memory == analyze(net, batch=64, optimizer="adam").memory("train")


def test_require_fit_names_the_flag_and_the_largest_batch_that_fits(machine):
    net = small_net()
    needed = analyze(net, batch=64).memory("train").total
    available = needed // 2 + HEADROOM_BYTES
    machine(available)
    largest = batch_fit(net, usable_memory(available), optimizer="momentum").batch
    assert 0 < largest < 64
    with pytest.raises(ResourceError) as error:
        require_fit(net, 64, "train", "momentum", what="training test", batch_flag="--batch-size")
    message = str(error.value)
    assert message.startswith(f"training test at batch 64 needs {describe_bytes(needed)}, the machine has")
    assert f"lower --batch-size (the largest batch that fits is {largest}" in message


def test_require_fit_in_inference_takes_other_advice(machine):
    net = small_net()
    machine(analyze(net, batch=256).memory("inference").total // 2 + HEADROOM_BYTES)
    with pytest.raises(ResourceError, match=r"validating test at batch 256 needs .*; pass --val-split 0 to skip "
                                            r"validation \(the largest batch that fits is \d+\)"):
        require_fit(net, 256, "inference", what="validating test", fix="pass --val-split 0 to skip validation")


def test_require_fit_says_when_not_even_one_volume_fits(machine):
    machine(HEADROOM_BYTES + 1000)
    with pytest.raises(ResourceError, match="not even one volume fits"):
        require_fit(small_net(), 8, what="training test")


def test_a_dilated_conv_counts_its_padded_input():
    # CONV3-8/D3000 pads a 28x28 image by 3000 on every side: 6028x6028 floats kept per image
    net = build("INPUT[28x28x1] -> CONV3-8/D3000 -> RELU -> FC10", allocate=False)
    assert net.layers[0].P == 3000
    padded = 6028 * 6028 * 4
    assert analyze(net, batch=64).memory("train").total > 64 * padded
    assert analyze(net, batch=64).memory("inference").total > 64 * padded


def test_an_address_space_limit_counts_as_available():
    limit = 3 * 2**30
    code = "from volnet.resources import available_memory; print(available_memory())"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         preexec_fn=lambda: resource.setrlimit(resource.RLIMIT_AS, (limit, limit)),
                         env={**os.environ, "OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1"}).stdout
    assert 0 < int(out) < limit
