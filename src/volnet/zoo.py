"""The zoo: the notes' famous nets, built from layer objects, and the named architectures of the CLI.

Every famous net comes twice, as two functions with the same signature
``(input_shape=..., classes=..., seed=0, *, allocate=True) -> Sequential``:

* ``vgg16()`` at its published input and classes (224x224x3, 1000 ImageNet
  classes; LeNet-5 32x32x1 and 10 digits), with the published parameter
  count, which the tests hold exactly;
* ``vgg16_cifar()`` for 32x32x3 CIFAR-10 images and 10 classes: the same
  kinds of layers, with the stem (the first layers, which shrink ImageNet's
  224x224 quickly) made gentler so that a 32x32 input is not pooled away,
  and the FC layers narrowed to the smaller volume that reaches them.
  Each CIFAR variant says what it changes.

``allocate=False`` builds the shapes and parameter counts without the weights
(VGG-16's 138M parameters would take 553 MB): ``net.num_params``,
``net.shapes`` and ``net.summary()`` work, ``forward`` does not.

Where PyTorch's reference definitions floor a size that does not divide
evenly (AlexNet's 11x11/4 CONV on 224, ResNet's strided CONVs), the layer
says ``fit="crop"``, which is what flooring means; where Caffe and GoogLeNet
round up (``ceil_mode``), ``fit="pad"``. The notes' LRN layers carry no
parameters and are left out.

============  ==========  =======  ==========  ==========================================
name          input       classes  parameters  reference
============  ==========  =======  ==========  ==========================================
lenet5        32x32x1     10       61,706      LeCun et al. 1998, full C3 connectivity
alexnet       224x224x3   1000     61,100,840  torchvision ``alexnet``
zfnet         224x224x3   1000     62,357,608  Zeiler & Fergus 2013, fig. 3 (computed)
vgg16         224x224x3   1000     138,357,544 torchvision ``vgg16``
vgg19         224x224x3   1000     143,667,240 torchvision ``vgg19``
googlenet     224x224x3   1000     6,998,552   Szegedy et al. 2014, table 1 (computed)
resnet18      224x224x3   1000     11,689,512  torchvision ``resnet18``
resnet34      224x224x3   1000     21,797,672  torchvision ``resnet34``
resnet50      224x224x3   1000     25,557,032  torchvision ``resnet50`` (v1.5)
============  ==========  =======  ==========  ==========================================

:data:`ARCHITECTURES` maps the command-line names (``lenet5``,
``lenet5-cifar``, ``vgg16``, ``vgg16-cifar``...) to these functions;
:func:`build_named` builds one.
"""

from __future__ import annotations

import difflib

from .layers import (FC, AvgPool, BatchNorm, Conv2D, Dropout, GlobalAvgPool, Inception, MaxPool, ReLU,
                     Residual)
from .net import Sequential

IMAGENET = (224, 224, 3)
CIFAR10 = (32, 32, 3)


def _net(layers, input_shape, seed, allocate) -> Sequential:
    return Sequential(layers, input_shape, seed=seed, allocate=allocate)


# -- the command line's small nets -------------------------------------------------


def notes_layout(input_shape=CIFAR10, classes=10, seed=0, *, allocate=True):
    """The notes' first example: ``INPUT -> CONV -> RELU -> POOL -> FC`` with 12 filters.

    CONV F=5, P=2 keeps the spatial size (32x32x3 -> 32x32x12 on CIFAR-10),
    POOL 2x2/2 halves it, FC computes the class scores.
    """
    return _net([Conv2D(12, 5, P=2), ReLU(), MaxPool(2, 2), FC(classes)], input_shape, seed, allocate)


def lenet(input_shape=(28, 28, 1), classes=10, seed=0, *, allocate=True):
    """A LeNet-style net: ``[CONV5 -> RELU -> POOL2]*2 -> FC -> RELU -> FC`` (the demo's net, for MNIST).

    LeNet-5's layout (CONV/POOL pairs, then FC layers) with ReLU and max
    pooling, and 16/32 filters instead of 6/16; :func:`lenet5` is the original.
    """
    return _net([Conv2D(16, 5, P=2), ReLU(), MaxPool(2, 2),
                 Conv2D(32, 5, P=2), ReLU(), MaxPool(2, 2),
                 FC(128), ReLU(), FC(classes)], input_shape, seed, allocate)


ALLCONV = ("INPUT -> CONV3-32 -> RELU -> CONV4-32/S2/P1 -> RELU -> CONV3-64 -> RELU -> CONV4-64/S2/P1 -> RELU"
           " -> FC128 -> RELU -> FC")


def allconv(input_shape=(28, 28, 1), classes=10, seed=0, *, allocate=True):
    """An all-convolutional net: every POOL of a CONV/POOL stack replaced by a stride-2 CONV.

    The notes: "some people avoid using pooling and use repeated CONV layers
    instead; to reduce the size of the representation, use larger stride in
    CONV layer once in a while". Written in the notes' notation (:data:`ALLCONV`);
    the 4x4 stride-2 CONVs with P=1 halve even sizes exactly (28 -> 14 -> 7),
    where a 3x3 stride-2 CONV would leave half a filter hanging.
    """
    from .spec import build

    return build(ALLCONV, input=input_shape, classes=classes, seed=seed, allocate=allocate)


def cifar_reference(input_shape=CIFAR10, classes=10, seed=0, *, allocate=True):
    """``INPUT -> [CONV3-32 -> RELU]*2 -> POOL2 -> [CONV3-64 -> RELU]*2 -> POOL2 -> FC512 -> RELU -> FC``."""
    return _net([Conv2D(32, 3, P=1), ReLU(), Conv2D(32, 3, P=1), ReLU(), MaxPool(2, 2),
                 Conv2D(64, 3, P=1), ReLU(), Conv2D(64, 3, P=1), ReLU(), MaxPool(2, 2),
                 FC(512), ReLU(), FC(classes)], input_shape, seed, allocate)


# -- LeNet-5 ---------------------------------------------------------------------------


def lenet5(input_shape=(32, 32, 1), classes=10, seed=0, *, allocate=True):
    """LeNet-5 (LeCun et al. 1998), the first successful ConvNet: digits, 32x32x1.

    ``C1: CONV5-6 -> S2: POOL2 -> C3: CONV5-16 -> S4: POOL2 -> C5: CONV5-120 -> F6: FC84 -> FC10``,
    volumes 32x32x1 -> 28x28x6 -> 14x14x6 -> 10x10x16 -> 5x5x16 -> 1x1x120 -> 84 -> 10.

    61,706 parameters at 32x32x1: C1 156, C3 2,416, C5 48,120, F6 10,164,
    output 850. Differences from the paper: C3 connects every filter to all
    6 maps (the paper's sparse connection table gives C3 1,516 parameters),
    S2 and S4 are plain average pools (the paper's subsampling has a
    trainable coefficient and bias per map, 12 + 32 parameters), ReLU
    replaces the scaled tanh, and the output is an FC layer instead of
    Gaussian RBF units (the same 84*10 + 10 count).
    """
    return _net([Conv2D(6, 5), ReLU(), AvgPool(2, 2),
                 Conv2D(16, 5), ReLU(), AvgPool(2, 2),
                 Conv2D(120, 5), ReLU(),
                 FC(84), ReLU(), FC(classes)], input_shape, seed, allocate)


def lenet5_cifar(input_shape=CIFAR10, classes=10, seed=0, *, allocate=True):
    """LeNet-5 on 32x32x3 colour images: the same layers, C1's filters 3 deep (62,006 parameters)."""
    return lenet5(input_shape, classes, seed, allocate=allocate)


# -- AlexNet and ZF Net ---------------------------------------------------------------------


def _alexnet_classifier(width, classes):
    return [Dropout(0.5), FC(width), ReLU(), Dropout(0.5), FC(width), ReLU(), FC(classes)]


def alexnet(input_shape=IMAGENET, classes=1000, seed=0, *, allocate=True):
    """AlexNet (Krizhevsky et al. 2012) as torchvision defines it: five CONVs, three FCs.

    ``CONV11-64/4 -> POOL3/2 -> CONV5-192 -> POOL3/2 -> CONV3-384 -> CONV3-256
    -> CONV3-256 -> POOL3/2 -> [FC4096]*2 -> FC1000``, a RELU after every CONV
    and hidden FC, dropout before the hidden FCs; 224 -> 55 -> 27 -> 13 -> 6.
    The first CONV (P=2) floors ``(224 - 11 + 4)/4 + 1 = 55.25`` like PyTorch
    (``fit="crop"``); torchvision's adaptive average pool to 6x6 is the
    identity at 224, so it is left out. 61,100,840 parameters (torchvision;
    the paper's two-GPU version, with grouped CONVs and 96 first filters, has fewer).
    """
    return _net([Conv2D(64, 11, S=4, P=2, fit="crop"), ReLU(), MaxPool(3, 2),
                 Conv2D(192, 5, P=2), ReLU(), MaxPool(3, 2),
                 Conv2D(384, 3, P=1), ReLU(), Conv2D(256, 3, P=1), ReLU(), Conv2D(256, 3, P=1), ReLU(),
                 MaxPool(3, 2), *_alexnet_classifier(4096, classes)], input_shape, seed, allocate)


def alexnet_cifar(input_shape=CIFAR10, classes=10, seed=0, *, allocate=True):
    """AlexNet for 32x32x3: AlexNet's five CONVs (64-192-384-256-256) and three POOLs, at CIFAR scale.

    The first CONV is 5x5 with stride 1 (11x11/4 would leave 7x7 of a 32x32
    image), the POOLs are 2x2/2: 32 -> 16 -> 8 -> 4, so 4x4x256 reaches the
    classifier, whose hidden FCs have 1024 neurons instead of 4096.
    """
    return _net([Conv2D(64, 5, P=2), ReLU(), MaxPool(2, 2),
                 Conv2D(192, 5, P=2), ReLU(), MaxPool(2, 2),
                 Conv2D(384, 3, P=1), ReLU(), Conv2D(256, 3, P=1), ReLU(), Conv2D(256, 3, P=1), ReLU(),
                 MaxPool(2, 2), *_alexnet_classifier(1024, classes)], input_shape, seed, allocate)


def zfnet(input_shape=IMAGENET, classes=1000, seed=0, *, allocate=True):
    """ZF Net (Zeiler & Fergus 2013, figure 3): AlexNet with a smaller first filter and stride.

    ``CONV7-96/2 -> POOL3/2 -> CONV5-256/2 -> POOL3/2 -> CONV3-384 -> CONV3-384
    -> CONV3-256 -> POOL3/2 -> [FC4096]*2 -> FC1000``, volumes 224 -> 110 -> 55
    -> 26 -> 13 -> 13 -> 13 -> 13 -> 6 as in the figure. The first CONV has
    P=1 and floors (``fit="crop"``: 109.5 -> 110, the figure's 110 from 224);
    the first two POOLs round up (``fit="pad"``: 54.5 -> 55 and 12.5 -> 13),
    as Caffe does. Dense connections (no GPU groups), no contrast
    normalisation. 62,357,608 parameters, counted from these layers: CONVs
    3,726,464 (14,208 + 614,656 + 885,120 + 1,327,488 + 884,992), FCs
    58,631,144 (37,752,832 + 16,781,312 + 4,097,000).
    """
    return _net([Conv2D(96, 7, S=2, P=1, fit="crop"), ReLU(), MaxPool(3, 2, fit="pad"),
                 Conv2D(256, 5, S=2), ReLU(), MaxPool(3, 2, fit="pad"),
                 Conv2D(384, 3, P=1), ReLU(), Conv2D(384, 3, P=1), ReLU(), Conv2D(256, 3, P=1), ReLU(),
                 MaxPool(3, 2), *_alexnet_classifier(4096, classes)], input_shape, seed, allocate)


def zfnet_cifar(input_shape=CIFAR10, classes=10, seed=0, *, allocate=True):
    """ZF Net for 32x32x3: ZF's filters (96-256-384-384-256) and round-up POOL3/2s, at CIFAR scale.

    The first CONV is 3x3 with stride 1 and the second 5x5 with stride 1
    (ZF's strides of 2 would shrink 32x32 too fast); 32 -> 16 -> 8 -> 4, so
    4x4x256 reaches the classifier, whose hidden FCs have 1024 neurons.
    """
    return _net([Conv2D(96, 3, P=1), ReLU(), MaxPool(3, 2, fit="pad"),
                 Conv2D(256, 5, P=2), ReLU(), MaxPool(3, 2, fit="pad"),
                 Conv2D(384, 3, P=1), ReLU(), Conv2D(384, 3, P=1), ReLU(), Conv2D(256, 3, P=1), ReLU(),
                 MaxPool(3, 2, fit="pad"), *_alexnet_classifier(1024, classes)], input_shape, seed, allocate)


# -- VGG ------------------------------------------------------------------------------------

# (filters, CONVs) of the five stages of configurations D and E of the VGG paper (table 1).
VGG16_STAGES = ((64, 2), (128, 2), (256, 3), (512, 3), (512, 3))
VGG19_STAGES = ((64, 2), (128, 2), (256, 4), (512, 4), (512, 4))


def _vgg(stages, width, input_shape, classes, seed, allocate):
    """``[[CONV3-K -> RELU]*N -> POOL2]*5 -> FC -> RELU -> DROPOUT -> FC -> RELU -> DROPOUT -> FC``."""
    layers = []
    for filters, convs in stages:
        for _ in range(convs):
            layers += [Conv2D(filters, 3, P=1), ReLU()]
        layers.append(MaxPool(2, 2))
    layers += [FC(width), ReLU(), Dropout(0.5), FC(width), ReLU(), Dropout(0.5), FC(classes)]
    return _net(layers, input_shape, seed, allocate)


def vgg16(input_shape=IMAGENET, classes=1000, seed=0, *, allocate=True):
    """VGG-16 (Simonyan & Zisserman 2014, configuration D) as torchvision defines it.

    Thirteen 3x3 CONVs (P=1, so only the five 2x2 POOLs shrink the volume:
    224 -> 7) and three FCs (4096, 4096, 1000). 138,357,544 parameters, most
    of them (102,764,544) in the first FC, which sees 7x7x512 values.
    torchvision's adaptive average pool to 7x7 is the identity at 224.
    """
    return _vgg(VGG16_STAGES, 4096, input_shape, classes, seed, allocate)


def vgg19(input_shape=IMAGENET, classes=1000, seed=0, *, allocate=True):
    """VGG-19 (configuration E): :func:`vgg16` with a fourth CONV in the last three stages; 143,667,240 parameters."""
    return _vgg(VGG19_STAGES, 4096, input_shape, classes, seed, allocate)


def vgg16_cifar(input_shape=CIFAR10, classes=10, seed=0, *, allocate=True):
    """VGG-16 for 32x32x3: the same thirteen CONVs and five POOLs (32 -> 1), FCs of 512 instead of 4096."""
    return _vgg(VGG16_STAGES, 512, input_shape, classes, seed, allocate)


def vgg19_cifar(input_shape=CIFAR10, classes=10, seed=0, *, allocate=True):
    """VGG-19 for 32x32x3: the same sixteen CONVs and five POOLs (32 -> 1), FCs of 512 instead of 4096."""
    return _vgg(VGG19_STAGES, 512, input_shape, classes, seed, allocate)


# -- GoogLeNet --------------------------------------------------------------------------------

# Szegedy et al. 2014, table 1: #1x1, #3x3 reduce, #3x3, #5x5 reduce, #5x5, pool proj.
GOOGLENET_INCEPTIONS = {
    "3a": (64, 96, 128, 16, 32, 32), "3b": (128, 128, 192, 32, 96, 64),
    "4a": (192, 96, 208, 16, 48, 64), "4b": (160, 112, 224, 24, 64, 64), "4c": (128, 128, 256, 24, 64, 64),
    "4d": (112, 144, 288, 32, 64, 64), "4e": (256, 160, 320, 32, 128, 128),
    "5a": (256, 160, 320, 32, 128, 128), "5b": (384, 192, 384, 48, 128, 128),
}


def _googlenet_body(classes):
    """Inceptions 3a-3b, POOL3/2, 4a-4e, POOL3/2, 5a-5b, global average pool, dropout 40%, FC."""
    stage = {name[0]: [] for name in GOOGLENET_INCEPTIONS}
    for name, widths in GOOGLENET_INCEPTIONS.items():
        stage[name[0]].append(Inception(*widths))
    return [*stage["3"], MaxPool(3, 2, fit="pad"), *stage["4"], MaxPool(3, 2, fit="pad"), *stage["5"],
            GlobalAvgPool(), Dropout(0.4), FC(classes)]


def googlenet(input_shape=IMAGENET, classes=1000, seed=0, *, allocate=True):
    """GoogLeNet (Inception v1, Szegedy et al. 2014) as in the paper's table 1, without auxiliary classifiers.

    Stem ``CONV7-64/2 -> POOL3/2 -> CONV1-64 -> CONV3-192 -> POOL3/2`` (224 ->
    112 -> 56 -> 56 -> 28), nine :class:`~volnet.layers.Inception` modules
    with two more POOL3/2s (28 -> 14 -> 7), a 7x7 global average pool
    instead of FC layers, dropout 40% and one FC to the classes. The POOLs
    round up (``fit="pad"``, as Caffe and torchvision's ``ceil_mode``); the
    first CONV (P=3) floors 112.5 to 112 (``fit="crop"``). No LRN.

    6,998,552 parameters, every CONV with its biases and the FC 1024 -> 1000
    (1,025,000) included: stem 124,416, inceptions 5,849,136. The paper's
    table sums to about 6.8M (its "params" column rounds, lists the first
    CONV as 2.7K and leaves out biases). torchvision's ``googlenet`` is a
    different net: BatchNorm after every CONV, CONVs without biases, and a
    3x3 instead of the 5x5 CONV in the third branch (6,624,904 parameters
    without its auxiliary classifiers, in its documentation).
    """
    stem = [Conv2D(64, 7, S=2, P=3, fit="crop"), ReLU(), MaxPool(3, 2, fit="pad"),
            Conv2D(64, 1), ReLU(), Conv2D(192, 3, P=1), ReLU(), MaxPool(3, 2, fit="pad")]
    return _net(stem + _googlenet_body(classes), input_shape, seed, allocate)


def googlenet_cifar(input_shape=CIFAR10, classes=10, seed=0, *, allocate=True):
    """GoogLeNet for 32x32x3: the paper's nine inceptions after a one-CONV stem.

    The stem ``CONV3-192 -> POOL3/2`` halves 32 to 16 (the ImageNet stem
    divides by 8); the inceptions then see 16x16, 8x8 and 4x4 volumes.
    """
    stem = [Conv2D(192, 3, P=1), ReLU(), MaxPool(3, 2, fit="pad")]
    return _net(stem + _googlenet_body(classes), input_shape, seed, allocate)


# -- ResNet -----------------------------------------------------------------------------------


def _conv_bn(filters, F, S=1, P=0):
    """CONV without biases (the BatchNorm's beta does that job) -> BatchNorm, as in torchvision's ResNet.

    Strided CONVs floor like PyTorch (``fit="crop"``: 56 -> 28 for a 3x3/2 with P=1).
    """
    return [Conv2D(filters, F, S=S, P=P, fit="crop" if S > 1 else None, bias=False), BatchNorm()]


def _basic_block(depth_in, filters, stride):
    """Two 3x3 CONVs; a projection shortcut (1x1 CONV with the stride -> BN) where the volume changes."""
    body = [*_conv_bn(filters, 3, stride, 1), ReLU(), *_conv_bn(filters, 3, 1, 1)]
    shortcut = _conv_bn(filters, 1, stride) if stride != 1 or depth_in != filters else None
    return [Residual(body, shortcut), ReLU()], filters


def _bottleneck_block(depth_in, filters, stride):
    """1x1 CONV (reduce) -> 3x3 CONV with the stride (torchvision's v1.5) -> 1x1 CONV to 4x the filters."""
    depth_out = 4 * filters
    body = [*_conv_bn(filters, 1), ReLU(), *_conv_bn(filters, 3, stride, 1), ReLU(), *_conv_bn(depth_out, 1)]
    shortcut = _conv_bn(depth_out, 1, stride) if stride != 1 or depth_in != depth_out else None
    return [Residual(body, shortcut), ReLU()], depth_out


RESNET_BLOCKS = {18: (_basic_block, (2, 2, 2, 2)), 34: (_basic_block, (3, 4, 6, 3)),
                 50: (_bottleneck_block, (3, 4, 6, 3))}


def _resnet(depth, stem, classes, input_shape, seed, allocate):
    """``stem -> four stages of residual blocks (64, 128, 256, 512 filters) -> GAP -> FC``.

    Every stage but the first starts with a stride-2 block (halving the size).
    """
    block, counts = RESNET_BLOCKS[depth]
    layers, depth_in = list(stem), 64
    for stage, (filters, count) in enumerate(zip((64, 128, 256, 512), counts)):
        for index in range(count):
            stride = 2 if stage > 0 and index == 0 else 1
            block_layers, depth_in = block(depth_in, filters, stride)
            layers += block_layers
    layers += [GlobalAvgPool(), FC(classes)]
    return _net(layers, input_shape, seed, allocate)


def _imagenet_stem():
    """``CONV7-64/2 (no bias) -> BN -> RELU -> POOL3/2 (P=1)``: 224 -> 112 -> 56, both flooring like PyTorch."""
    return [*_conv_bn(64, 7, 2, 3), ReLU(), MaxPool(3, 2, P=1, fit="crop")]


def _cifar_stem():
    """``CONV3-64 (no bias) -> BN -> RELU``: 32x32 stays 32x32 (no POOL)."""
    return [*_conv_bn(64, 3, 1, 1), ReLU()]


def resnet18(input_shape=IMAGENET, classes=1000, seed=0, *, allocate=True):
    """ResNet-18 (He et al. 2015) as torchvision defines it: 11,689,512 parameters.

    Stem, then [2, 2, 2, 2] basic blocks (two 3x3 CONVs each) in stages of
    64, 128, 256, 512 filters (56 -> 28 -> 14 -> 7), global average pool,
    FC. BatchNorm after every CONV, CONVs without biases, a ReLU after each
    addition, projection shortcuts (1x1 CONV with stride 2 -> BN) where the
    volume changes, identity shortcuts elsewhere.
    """
    return _resnet(18, _imagenet_stem(), classes, input_shape, seed, allocate)


def resnet34(input_shape=IMAGENET, classes=1000, seed=0, *, allocate=True):
    """ResNet-34: :func:`resnet18` with [3, 4, 6, 3] basic blocks; 21,797,672 parameters (torchvision)."""
    return _resnet(34, _imagenet_stem(), classes, input_shape, seed, allocate)


def resnet50(input_shape=IMAGENET, classes=1000, seed=0, *, allocate=True):
    """ResNet-50 (torchvision, v1.5): [3, 4, 6, 3] bottleneck blocks; 25,557,032 parameters.

    A bottleneck block is 1x1 CONV (reduce) -> 3x3 CONV -> 1x1 CONV to 4x the
    filters (256 ... 2048 out); the stride sits on the 3x3 CONV (v1.5; the
    paper's v1 puts it on the first 1x1, same parameter count).
    """
    return _resnet(50, _imagenet_stem(), classes, input_shape, seed, allocate)


def resnet18_cifar(input_shape=CIFAR10, classes=10, seed=0, *, allocate=True):
    """ResNet-18 for 32x32x3: a 3x3 CONV stem without POOL (32 -> 32 -> 16 -> 8 -> 4); 11,173,962 parameters."""
    return _resnet(18, _cifar_stem(), classes, input_shape, seed, allocate)


def resnet34_cifar(input_shape=CIFAR10, classes=10, seed=0, *, allocate=True):
    """ResNet-34 for 32x32x3: the CIFAR stem of :func:`resnet18_cifar`; 21,282,122 parameters."""
    return _resnet(34, _cifar_stem(), classes, input_shape, seed, allocate)


def resnet50_cifar(input_shape=CIFAR10, classes=10, seed=0, *, allocate=True):
    """ResNet-50 for 32x32x3: the CIFAR stem of :func:`resnet18_cifar`; 23,520,842 parameters."""
    return _resnet(50, _cifar_stem(), classes, input_shape, seed, allocate)


# -- the registry ---------------------------------------------------------------------------

ARCHITECTURES = {
    "notes": notes_layout, "lenet": lenet, "cifar-ref": cifar_reference, "allconv": allconv,
    "lenet5": lenet5, "lenet5-cifar": lenet5_cifar,
    "alexnet": alexnet, "alexnet-cifar": alexnet_cifar,
    "zfnet": zfnet, "zfnet-cifar": zfnet_cifar,
    "vgg16": vgg16, "vgg16-cifar": vgg16_cifar,
    "vgg19": vgg19, "vgg19-cifar": vgg19_cifar,
    "googlenet": googlenet, "googlenet-cifar": googlenet_cifar,
    "resnet18": resnet18, "resnet18-cifar": resnet18_cifar,
    "resnet34": resnet34, "resnet34-cifar": resnet34_cifar,
    "resnet50": resnet50, "resnet50-cifar": resnet50_cifar,
}


def build_named(name: str, input_shape=None, classes: int | None = None, seed: int = 0, *,
                allocate: bool = True) -> Sequential:
    """Build the architecture ``name`` of :data:`ARCHITECTURES`.

    ``input_shape`` and ``classes`` default to the net's own (published)
    ones: ``build_named("vgg16")`` is 224x224x3 -> 1000 classes.
    ``allocate=False`` records shapes and parameter counts only.
    """
    if name not in ARCHITECTURES:
        raise ValueError(f"unknown architecture {name!r}; available: {', '.join(ARCHITECTURES)}")
    given = {key: value for key, value in (("input_shape", input_shape), ("classes", classes)) if value is not None}
    return ARCHITECTURES[name](**given, seed=seed, allocate=allocate)


class UnknownArchitecture(ValueError):
    """A name that is neither in the zoo nor written in the notation."""


def build_any(name_or_notation: str, input_shape=None, classes: int | None = None, seed: int = 0, *,
              allocate: bool = True) -> Sequential:
    """A zoo name (``"vgg16"``) or the notes' notation (``"INPUT[32x32x3] -> CONV3-16 -> RELU -> FC10"``)."""
    if name_or_notation in ARCHITECTURES:
        return build_named(name_or_notation, input_shape, classes, seed, allocate=allocate)
    looks_like_notation = any(mark in name_or_notation for mark in ("->", "[", "(")) or \
        name_or_notation.strip().upper() in ("INPUT", "FC")
    if not looks_like_notation:
        close = difflib.get_close_matches(name_or_notation.lower(), ARCHITECTURES, n=1, cutoff=0.6)
        if close:
            raise UnknownArchitecture(f"unknown architecture {name_or_notation!r}; did you mean {close[0]!r}?")
        raise UnknownArchitecture(f"unknown architecture {name_or_notation!r}: neither a zoo name ({', '.join(ARCHITECTURES)}) "
                         "nor notation such as 'INPUT[28x28x1] -> CONV3-16 -> RELU -> POOL2 -> FC'")
    from .spec import build

    return build(name_or_notation, input=input_shape, classes=classes, seed=seed, allocate=allocate)
