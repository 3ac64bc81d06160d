"""The zoo: published parameter counts and volumes, CIFAR variants that train, building without allocating."""

import contextlib
import json
import tracemalloc

import numpy as np
import pytest

from volnet import Sequential
from volnet.layers import Conv2D, GlobalAvgPool, Inception, MaxPool
from volnet import zoo
from volnet.zoo import ARCHITECTURES, GOOGLENET_INCEPTIONS, build_named

FAMOUS = ["lenet5", "alexnet", "zfnet", "vgg16", "vgg19", "googlenet", "resnet18", "resnet34", "resnet50"]


def inception_params(depth_in, c1, c3r, c3, c5r, c5, pp):
    """Weights and biases of one inception module, from its table-1 row."""
    return ((depth_in + 1) * (c1 + c3r + c5r + pp) + (9 * c3r + 1) * c3 + (25 * c5r + 1) * c5)


def googlenet_paper_count():
    """GoogLeNet as in table 1 of Szegedy et al. 2014, without the auxiliary classifiers.

    Counted: every CONV's weights and biases (the first CONV in full, 7*7*3*64,
    where the table prints 2.7K), the nine inception modules, and the final FC
    1024 -> 1000. Not counted: LRN (no parameters), the auxiliary classifiers.
    The table's own "params" column rounds each row and sums to about 6.8M.
    """
    stem = (7 * 7 * 3 * 64 + 64) + (64 * 64 + 64) + (3 * 3 * 64 * 192 + 192)
    depth, inceptions = 192, 0
    for c1, c3r, c3, c5r, c5, pp in GOOGLENET_INCEPTIONS.values():
        inceptions += inception_params(depth, c1, c3r, c3, c5r, c5, pp)
        depth = c1 + c3 + c5 + pp
    assert depth == 1024
    return stem + inceptions + (1024 * 1000 + 1000)


def zfnet_paper_count():
    """Zeiler & Fergus 2013, figure 3, dense (no GPU groups): five CONVs and three FCs with biases."""
    convs = [(7, 3, 96), (5, 96, 256), (3, 256, 384), (3, 384, 384), (3, 384, 256)]
    fcs = [(6 * 6 * 256, 4096), (4096, 4096), (4096, 1000)]
    return sum(F * F * d * k + k for F, d, k in convs) + sum(n * k + k for n, k in fcs)


# (name, parameters, reference)
PUBLISHED_COUNTS = [
    ("lenet5", 61_706, "LeCun et al. 1998 with C3 fully connected: 156 + 2,416 + 48,120 + 10,164 + 850"),
    ("alexnet", 61_100_840, "torchvision.models.alexnet()"),
    ("zfnet", zfnet_paper_count(), "Zeiler & Fergus 2013 fig. 3, computed: 62,357,608"),
    ("vgg16", 138_357_544, "torchvision.models.vgg16()"),
    ("vgg19", 143_667_240, "torchvision.models.vgg19()"),
    ("googlenet", googlenet_paper_count(), "Szegedy et al. 2014 table 1, computed: 6,998,552"),
    ("resnet18", 11_689_512, "torchvision.models.resnet18()"),
    ("resnet34", 21_797_672, "torchvision.models.resnet34()"),
    ("resnet50", 25_557_032, "torchvision.models.resnet50() (v1.5)"),
    # CIFAR-10 ResNets (3x3 stem, no max pool, FC 512*expansion -> 10), as in kuangliu/pytorch-cifar:
    # torchvision's count - 7*7*3*64 + 3*3*3*64 - (fan_in + 1)*1000 + (fan_in + 1)*10
    ("resnet18-cifar", 11_173_962, "pytorch-cifar ResNet18"),
    ("resnet34-cifar", 21_282_122, "pytorch-cifar ResNet34"),
    ("resnet50-cifar", 23_520_842, "pytorch-cifar ResNet50"),
]


@pytest.mark.parametrize("name, count, reference", PUBLISHED_COUNTS, ids=[c[0] for c in PUBLISHED_COUNTS])
def test_parameter_counts_match_the_references(name, count, reference):
    net = build_named(name, allocate=False)
    assert net.num_params == count, f"{name}: {net.num_params:,} parameters, {reference} has {count:,}"


def test_computed_counts_are_the_documented_ones():
    assert zfnet_paper_count() == 62_357_608
    assert googlenet_paper_count() == 6_998_552


def test_lenet5_layer_by_layer():
    # C1 6@5x5: 5*5*1*6 + 6; C3 16@5x5 on all 6 maps: 5*5*6*16 + 16; C5 120@5x5: 5*5*16*120 + 120;
    # F6: 120*84 + 84; output: 84*10 + 10. Pools and ReLUs have none.
    net = build_named("lenet5", allocate=False)
    assert [layer.num_params for layer in net] == [156, 0, 0, 2_416, 0, 0, 48_120, 0, 10_164, 0, 850]
    assert net.shapes[::3] == [(28, 28, 6), (10, 10, 16), (1, 1, 120), (84,)] and net.output_shape == (10,)
    assert net.shapes[2] == (14, 14, 6) and net.shapes[5] == (5, 5, 16)


# Volumes the papers (or torchvision, run on a 224x224 image) show, in order.
PUBLISHED_VOLUMES = {
    "alexnet": [(55, 55, 64), (27, 27, 64), (27, 27, 192), (13, 13, 192), (13, 13, 384), (13, 13, 256),
                (6, 6, 256), (4096,), (1000,)],
    "zfnet": [(110, 110, 96), (55, 55, 96), (26, 26, 256), (13, 13, 256), (13, 13, 384), (13, 13, 256),
              (6, 6, 256), (4096,), (1000,)],
    "vgg16": [(224, 224, 64), (112, 112, 64), (112, 112, 128), (56, 56, 128), (56, 56, 256), (28, 28, 256),
              (28, 28, 512), (14, 14, 512), (7, 7, 512), (4096,), (1000,)],
    "googlenet": [(112, 112, 64), (56, 56, 64), (56, 56, 192), (28, 28, 192), (28, 28, 256), (28, 28, 480),
                  (14, 14, 480), (14, 14, 512), (14, 14, 528), (14, 14, 832), (7, 7, 832), (7, 7, 1024),
                  (1, 1, 1024), (1000,)],
    "resnet18": [(112, 112, 64), (56, 56, 64), (28, 28, 128), (14, 14, 256), (7, 7, 512), (1, 1, 512), (1000,)],
    "resnet50": [(112, 112, 64), (56, 56, 64), (56, 56, 256), (28, 28, 512), (14, 14, 1024), (7, 7, 2048),
                 (1, 1, 2048), (1000,)],
}


@pytest.mark.parametrize("name", FAMOUS)
def test_published_input_and_output(name):
    net = build_named(name, allocate=False)
    assert net.input_shape == ((32, 32, 1) if name == "lenet5" else (224, 224, 3))
    assert net.output_shape == ((10,) if name == "lenet5" else (1000,))
    if name in PUBLISHED_VOLUMES:
        distinct = [shape for i, shape in enumerate(net.shapes) if i == 0 or shape != net.shapes[i - 1]]
        assert distinct == PUBLISHED_VOLUMES[name]


def test_googlenet_inceptions_follow_table_1():
    net = build_named("googlenet", allocate=False)
    inceptions = [layer for layer in net if isinstance(layer, Inception)]
    assert [tuple(m.get_config().values()) for m in inceptions] == list(GOOGLENET_INCEPTIONS.values())
    assert isinstance(net[-3], GlobalAvgPool)


def test_resnet_projection_shortcuts_only_where_the_volume_changes():
    def shortcuts(net):
        return [bool(layer.shortcut) for layer in net if hasattr(layer, "shortcut")]

    assert shortcuts(build_named("resnet18", allocate=False)) == [False, False, True, False, True, False, True, False]
    # ResNet-50: the first block of every stage projects (64 -> 256 depth in the first, stride 2 in the others)
    assert shortcuts(build_named("resnet50", allocate=False)) == [True, False, False, True, False, False, False,
                                                                  True] + [False] * 5 + [True, False, False]
    stride_two = [layer.body[3] for layer in build_named("resnet50", allocate=False)
                  if hasattr(layer, "body") and layer.body[3].S == 2]
    assert len(stride_two) == 3 and all(conv.F == 3 for conv in stride_two)  # v1.5: stride on the 3x3


CIFAR_VARIANTS = [name for name in ARCHITECTURES if name.endswith("-cifar")]


def test_every_famous_net_has_a_cifar_variant():
    assert CIFAR_VARIANTS == [f"{name}-cifar" for name in FAMOUS]


@pytest.fixture
def one_blas_thread():
    """Small matrices: one BLAS thread is as fast, and immune to oversubscription when test processes share cores."""
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:
        limits = contextlib.nullcontext()
    else:
        limits = threadpool_limits(1, user_api="blas")
    with limits:
        yield


@pytest.mark.slow
@pytest.mark.parametrize("name", CIFAR_VARIANTS)
def test_cifar_variant_trains_on_a_batch(name, one_blas_thread):
    net = build_named(name, seed=1)
    assert net.input_shape == (32, 32, 3) and net.output_shape == (10,)
    x = np.random.default_rng(0).standard_normal((2, 32, 32, 3)).astype(np.float32)
    scores = net.forward(x, train=True)
    assert scores.shape == (2, 10) and scores.dtype == np.float32 and np.all(np.isfinite(scores))
    dx = net.backward(np.ones_like(scores) / 2)
    assert dx.shape == x.shape and np.all(np.isfinite(dx))
    for p in net.params():
        assert p.grad is not None and p.grad.shape == p.value.shape and np.all(np.isfinite(p.grad)), p.name


def test_vgg16_builds_without_allocating_its_weights():
    tracemalloc.start()
    try:
        net = build_named("vgg16", allocate=False)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert net.num_params == 138_357_544
    assert peak < 10 * 2**20, f"peak {peak / 2**20:.1f} MiB while building"  # 553 MB if allocated
    weights = [p.value for p in net.params() if p.value.ndim > 1]
    assert all(not w.flags.writeable and w.strides == (0,) * w.ndim for w in weights)
    assert weights[0].shape == (3, 3, 3, 64) and weights[-1].shape == (4096, 1000)
    assert "total parameters: 138,357,544" in net.summary()
    with pytest.raises(RuntimeError, match="allocate=False"):
        net.forward(np.zeros((1, 224, 224, 3), dtype=np.float32))


def test_allocated_and_shape_only_builds_agree():
    real, shapes = build_named("googlenet-cifar"), build_named("googlenet-cifar", allocate=False)
    assert real.shapes == shapes.shapes and real.num_params == shapes.num_params
    assert [(p.name, p.value.shape) for p in real.params()] == [(p.name, p.value.shape) for p in shapes.params()]


def test_build_named_defaults_and_overrides():
    assert build_named("vgg16-cifar", classes=100, allocate=False).output_shape == (100,)
    net = build_named("resnet18", input_shape=(64, 64, 3), classes=200, allocate=False)
    assert net.input_shape == (64, 64, 3) and net.output_shape == (200,) and net.shapes[-2] == (1, 1, 512)
    # the command line's positional call, and its original nets
    assert build_named("lenet", (28, 28, 1), 10, seed=0).output_shape == (10,)
    assert build_named("notes").input_shape == (32, 32, 3)
    assert build_named("cifar-ref", (32, 32, 3), 10).num_params == 2_168_362
    with pytest.raises(ValueError, match="unknown architecture 'vgg11'.*vgg16-cifar"):
        build_named("vgg11")


def test_config_round_trip_of_a_residual_net():
    net = build_named("resnet18-cifar", seed=3)
    rebuilt = Sequential.from_config(json.loads(json.dumps(net.get_config())))
    assert rebuilt.shapes == net.shapes and rebuilt.num_params == 11_173_962
    for a, b in zip(net.params(), rebuilt.params()):
        np.testing.assert_array_equal(a.value, b.value)


def test_first_layers_floor_or_round_up_as_the_references_do():
    # AlexNet: (224 - 11 + 2*2)/4 + 1 = 55.25 floors to 55 (PyTorch); GoogLeNet's POOL3/2: 112 -> 55.5 -> 56.
    alexnet = build_named("alexnet", allocate=False)
    assert isinstance(alexnet[0], Conv2D) and alexnet[0].fit == "crop" and alexnet.shapes[0] == (55, 55, 64)
    googlenet = build_named("googlenet", allocate=False)
    assert isinstance(googlenet[2], MaxPool) and googlenet[2].fit == "pad" and googlenet.shapes[2] == (56, 56, 64)


@pytest.mark.slow
def test_allconv_net_without_pooling_learns_the_bundled_digits():
    """Issue 'all-convolutional nets': every POOL replaced by a stride-2 CONV, and it still learns."""
    from volnet.data import load
    from volnet.layers import MaxPool
    from volnet.optim import make_optimizer
    from volnet.train import Trainer

    net = zoo.allconv()
    assert not any(isinstance(layer, MaxPool) for layer in net.layers)
    assert [net.shapes[i][:2] for i in (2, 6)] == [(14, 14), (7, 7)]
    train, test = load("mnist5k", split="train"), load("mnist5k", split="test")
    trainer = Trainer(net, make_optimizer("adam", net.params(), lr=0.002), train, val=test, epochs=1)
    record = trainer.run()[-1]
    assert record.val_accuracy > 0.9
