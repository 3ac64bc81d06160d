"""The notes' architecture notation, as a network: ``build(text)`` and ``to_notation(net)``.

The notes write ConvNets as chains of layers,
``INPUT -> [[CONV -> RELU]*N -> POOL?]*M -> [FC -> RELU]*K -> FC``.
:func:`build` turns such a line into a :class:`~volnet.Sequential`, either
fully written out::

    INPUT[227x227x3] -> CONV(F=11,K=96,S=4,P=0) -> RELU -> POOL(F=3,S=2) -> FC4096 -> RELU -> FC1000

or as a bare pattern whose blanks are filled by documented defaults::

    >>> import volnet
    >>> net = volnet.build("INPUT -> [[CONV -> RELU]*N -> POOL?]*M -> [FC -> RELU]*K -> FC",
    ...                    input="32x32x3", classes=10, N=2, M=3, K=2)
    >>> [volnet.shapes.format_volume(s) for s in net.shapes if len(s) == 3][::5]
    ['32x32x32', '16x16x64', '8x8x128']
    >>> net.output_shape
    (10,)

and :func:`to_notation` writes any network back::

    >>> volnet.spec.to_notation(volnet.build("INPUT[8x8x1] -> CONV -> RELU -> FC", classes=10))
    'INPUT[8x8x1] -> CONV3-32/S1/P1 -> RELU -> FC10'

Grammar
-------
Whitespace (newlines included) may go between any two tokens; keywords and
argument names are case-insensitive; letters (``N``) are case-sensitive::

    spec     := [INPUT ['[' HxWxD ']'] '->'] chain       (or INPUT alone: no layers)
    chain    := element ('->' element)*
    element  := primary ('*' count | '?')*
    count    := NUMBER | LETTER                          [CONV -> RELU]*3, [...]*N
    primary  := '[' chain ']' | layer
    layer    := KEYWORD[NUMBER] ['-' value] ('/' MODIFIER)*     CONV3-64/S2/P1
              | KEYWORD '(' [arg (',' arg)*] ')'                CONV(F=11,K=96,S=4,P=0)
              | RES '{' chain ['|' chain] '}'                   RES{ body | shortcut }
              | CONCAT '{' chain ('|' chain)* '}'               CONCAT{ b1 | b2 | b3 }
    arg      := [NAME '='] value
    value    := NUMBER | HxW (a pair, e.g. F=3x5) | LETTER | pad | crop | none | true | false

Inside ``{ }`` a chain may be empty: the identity.

Layers (an argument left out takes its default, see "Bare keywords" below;
``CONV`` alone, ``CONV3`` and ``CONV(K=64)`` are all valid):

=============================  ==============================================================
``INPUT[32x32x3]``             the input volume H x W x D; without it, ``input=`` gives it
``CONV3-64``                   Conv2D F=3, K=64, S=1, P="same"; modifiers ``/S2`` (stride),
                               ``/P0`` (padding), ``/D2`` (dilation), ``/B0`` (no biases),
                               combinable: ``CONV3-64/S2/P1``; ``CONV3x5-64``, ``/P1x2`` for pairs
``CONV(F=11,K=96,S=4,P=0)``    keyword form; also ``dilation=``, ``fit=pad|crop|none``,
                               ``bias=true|false`` and the long names ``size=``, ``filters=``,
                               ``stride=``, ``pad=``
``POOL2`` ``POOL(F=3,S=2)``    MaxPool (alias ``MAXPOOL``); S defaults to F: POOL2 is 2x2/2,
                               ``POOL3/S2`` the overlapping kind; ``/P1`` or ``P=1`` pads
                               (default 0), ``fit=`` as for CONV
``AVGPOOL2`` ``L2POOL2``       AvgPool, L2Pool, written like POOL
``GAP``                        GlobalAvgPool: (H, W, D) -> (1, 1, D)
``FC4096`` ``FC(K=10)``        FC with K neurons
``RELU`` ``FLATTEN``           ReLU, Flatten
``BN`` ``BN(momentum=0.01)``   BatchNorm (alias ``BATCHNORM``); ``eps=``, ``momentum=``
``DROPOUT(0.5)`` ``DROPOUT``   Dropout with p (default 0.5)
``LC3-64`` ``LC(F=3,K=64)``    LocallyConnected, written like CONV (without ``/D`` and ``/B``,
                               which it does not take)
``INCEPTION(64,96,128,...)``   Inception(c1, c3_reduce, c3, c5_reduce, c5, pool_proj)
``RES{ body | shortcut }``     Residual; ``RES{ body }`` has the identity shortcut
``CONCAT{ b1 | b2 | ... }``    Concat: the branches' volumes stacked along depth; an empty
                               branch (``CONCAT{ | CONV1-16 }``) passes the input through
=============================  ==============================================================

"Same" padding. A CONV or LC without P, in the compact form and the keyword
form alike (write ``P=0`` or ``/P0`` for none), gets the zero padding that
keeps the spatial size at stride 1, as the notes' sizing patterns advise:
``P = (F - 1)/2``, or ``P = dilation*(F - 1)/2`` for a dilated filter (the
dilated filter spans ``dilation*(F - 1) + 1``). A filter spanning an even
number of pixels (F=2, F=4) has no symmetric same padding; that is a
SpecError asking for an explicit ``/P``. With S > 1 the same P is used, and
the stride must still tile the input (or say ``fit=``), else ShapeError.

Repetition and options. ``[...]*3`` writes the group three times; ``*0``
removes it; groups nest (``[[CONV -> RELU]*2 -> POOL]*3``). ``*`` also
applies to a single layer (``RELU*2``). The count may be a letter, whose
value comes from ``build(..., N=2)`` (any name but build's own arguments).
A letter the spec needs but that was not passed is a SpecError naming it,
and so is a passed letter that the spec does not have (a likely typo).
Letters may also stand for numbers inside a layer: ``CONV3-C``,
``FC(K=H)``. ``X?`` marks an optional element: it is included unless
``build(..., optional=False)``. A spec may expand to at most 10,000 layers
(nested ones included) and nest brackets 100 deep.

Bare keywords (the notes' sizing patterns):

* CONV, LC: F=3, same padding, S=1, and K = 32 before the first pooling
  layer, doubling after each one (32, 64, 128, ...). Pooling layers inside
  a RES or CONCAT branch count only for the rest of that branch.
* POOL, AVGPOOL, L2POOL: F=2, S=2.
* FC: 512, except the network's last FC (outside RES and CONCAT), which
  gives the class scores: K = ``classes`` (SpecError without it). An
  explicit last FC that disagrees with ``classes`` is a SpecError too.
* INPUT: the volume given as ``input=`` ("32x32x3" or ``(32, 32, 3)``).

Errors. Anything wrong in the text is a :class:`SpecError` (a ValueError)
with the column, the line of the spec with a caret under it, and what was
expected there; an unknown keyword names the closest known one. When the
layers are fine but do not fit the volume, :class:`~volnet.ShapeError` comes
unchanged from :class:`~volnet.Sequential`, naming the layer.
"""

from .builder import build, build_layers
from .errors import SpecError
from .notation import to_notation, write_layer

__all__ = ["build", "build_layers", "to_notation", "write_layer", "SpecError"]
