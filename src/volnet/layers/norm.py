"""Regularisation layers: BatchNorm and Dropout."""

from __future__ import annotations

import math

import numpy as np

from .. import ops
from ..ops.norm import (batchnorm_backward_workspace, batchnorm_workspace, check_dropout_probability,
                        dropout_backward_workspace, dropout_workspace)
from .base import Costs, Keyword, Layer, Param, ParamArray, keeps


class BatchNorm(Layer):
    """Batch normalisation: each depth slice scaled to zero mean, unit variance, then by gamma and beta.

    Notation: N volumes of H x W x D (or N vectors of D values); a depth
    slice is one of the D channels, holding ``m = N*H*W`` values in a batch
    of volumes (spatial BatchNorm, as ConvNets use it) or ``m = N`` in a
    batch of vectors. Per slice::

        out = gamma * (x - mu) / sqrt(var + eps) + beta

    In training (``forward(x, train=True)``) mu and var are the batch's mean
    and biased variance, and the running averages move towards them, as in
    PyTorch::

        running_mean = (1 - momentum) * running_mean + momentum * mu
        running_var  = (1 - momentum) * running_var  + momentum * var * m / (m - 1)

    (the unbiased variance). In inference (``train=False``) mu and var are
    the running averages, so each output depends on its own input alone.

    Args:
        eps: added to the variance before the square root. Default: 1e-5.
        momentum: weight of the current batch in the running averages
            (PyTorch's convention; Keras's momentum is ``1 - this``). Default: 0.1.

    Input shape ``(H, W, D)`` or ``(D,)``; output shape: the same.

    Parameters: gamma ``(D,)`` (initialised to ones) and beta ``(D,)`` (zeros):
    2D parameters. Buffers (saved with the weights, not trained, see
    :meth:`buffers`): ``running_mean`` ``(D,)`` (zeros) and ``running_var``
    ``(D,)`` (ones).

    Raises:
        ValueError: for eps <= 0 or momentum outside [0, 1]; in training, for a
            batch with a single value per slice (one vector), whose variance
            is undefined.

    Example:
        >>> from volnet import Sequential
        >>> from volnet.layers import Conv2D
        >>> net = Sequential([Conv2D(12, 3, P=1), BatchNorm()], input_shape=(32, 32, 3))
        >>> net.output_shape, net.num_params   # 336 for the CONV, 12 gammas, 12 betas
        ((32, 32, 12), 360)
    """

    kind = "batchnorm"
    gamma = ParamArray()  # (D,), the scale
    beta = ParamArray()   # (D,), the shift
    keyword = Keyword("BN", ("eps", "momentum"), aliases=("BATCHNORM",))

    def __init__(self, eps: float = 1e-5, momentum: float = 0.1):
        super().__init__()
        self.eps, self.momentum = float(eps), float(momentum)
        if not self.eps > 0:
            raise ValueError(f"BatchNorm: eps must be > 0, got {eps}")
        if not 0.0 <= self.momentum <= 1.0:
            raise ValueError(f"BatchNorm: momentum must be in [0, 1], got {momentum}")
        self.running_mean: np.ndarray | None = None
        self.running_var: np.ndarray | None = None

    def output_shape(self, input_shape):
        return input_shape

    def _init_params(self, input_shape, rng, dtype):
        D = input_shape[-1]
        self.running_mean = np.zeros(D, dtype=dtype)
        self.running_var = np.ones(D, dtype=dtype)
        return [Param("gamma", np.ones(D, dtype=dtype)), Param("beta", np.zeros(D, dtype=dtype))]

    def forward(self, x, train=False, *, keep=None, workers=None):
        """Training normalises with the batch's statistics, inference with the running averages; ``keep=True``
        in inference keeps what a backward pass through the fixed statistics needs."""
        gamma, beta = self.gamma, self.beta
        if not train:
            if not keeps(train, keep):
                self._keep(None, False)
                return ops.batchnorm_inference_forward(x, gamma, beta, self.running_mean, self.running_var,
                                                       self.eps, workers=workers)
            out, cache = ops.batchnorm_fixed_forward(x, gamma, beta, self.running_mean, self.running_var, self.eps)
            self._keep(cache, True)
            return out
        m = x.size // x.shape[-1]
        if m < 2:
            raise ValueError(f"{self.label}: training needs more than one value per depth slice, got input "
                             f"{x.shape}; use a batch of at least 2, or train=False")
        out, cache, mean, var = ops.batchnorm_train_forward(x, gamma, beta, self.eps, workers=workers)
        self._update_running(mean, var * (m / (m - 1)))
        self._keep(cache, train, keep)
        return out

    def inference_affine(self) -> tuple[np.ndarray, np.ndarray]:
        """``(scale, shift)`` of the inference forward, ``x * scale + shift`` per slice: what a CONV before it
        applies in its own output pass where ``forward_layers`` fuses the two (:func:`fused_affine`)."""
        return ops.norm.inference_affine(self.gamma, self.beta, self.running_mean, self.running_var, self.eps)

    def _update_running(self, mean, unbiased_var):
        """Move the running averages towards the batch's, in place (buffers() hands out the live arrays)."""
        for running, batch in ((self.running_mean, mean), (self.running_var, unbiased_var)):
            running *= 1.0 - self.momentum
            running += self.momentum * batch

    def backward(self, dout, input_grad=True, *, workers=None):
        cache = self._take_cache()
        fixed = isinstance(cache, ops.norm.FixedStatsCache)
        if fixed:
            dx, dgamma, dbeta = ops.batchnorm_fixed_backward(dout, cache, input_grad)
        else:
            dx, dgamma, dbeta = ops.batchnorm_backward(dout, cache, input_grad, workers=workers)
        self._params[0].grad, self._params[1].grad = dgamma, dbeta
        return dx

    def buffers(self):
        """``{"running_mean": ..., "running_var": ...}``, the live arrays (empty before build)."""
        if self.running_mean is None:
            return {}
        return {"running_mean": self.running_mean, "running_var": self.running_var}

    def get_config(self):
        return {"eps": self.eps, "momentum": self.momentum}

    # -- the description of the kind ---------------------------------------------
    def costs(self, input_shape, output_shape):
        """2D parameters; in inference a scale and a shift per value."""
        D = input_shape[-1]
        return Costs(2 * D, 0, 2 * math.prod(output_shape), (D, D))

    def buffer_values(self, input_shape):
        return 2 * input_shape[-1]  # running mean and variance

    def forward_workspace(self, work):
        return batchnorm_workspace(work.n_in, work.itemsize, work.train)

    def backward_workspace(self, work, input_grad=True, dout_contiguous=True):
        return batchnorm_backward_workspace(work.n_in, work.itemsize, grads=work.grads,
                                            dout_contiguous=dout_contiguous)

    def to_torch(self, bridge, order):
        """``BatchNorm2d`` on volumes, ``BatchNorm1d`` on vectors (PyTorch's momentum convention)."""
        shape = self.input_shape
        norm = bridge.nn.BatchNorm2d if len(shape) == 3 else bridge.nn.BatchNorm1d
        return bridge.step(self, [norm(shape[-1], eps=self.eps, momentum=self.momentum)], holder=0, order=order), order

    def torch_arrays(self, gather, scatter):
        return [(ours, theirs, gather, scatter) for ours, theirs in
                (("gamma", "weight"), ("beta", "bias"), ("running_mean", "running_mean"),
                 ("running_var", "running_var"))]

    def to_onnx(self, graph, x, input_shape):
        """``BatchNormalization`` (inference: the running averages), on volumes and on vectors alike."""
        arrays = [self.gamma, self.beta, self.running_mean, self.running_var]
        names = [graph.weight(name, array) for name, array in zip(("gamma", "beta", "mean", "var"), arrays)]
        return graph.op("BatchNormalization", [x, *names], "batchnorm", epsilon=self.eps)


class Dropout(Layer):
    """Inverted dropout: in training, zero each activation with probability p and scale the rest by 1/(1 - p).

    The scaling keeps every activation's expected value, so inference
    (``train=False``) is the identity: the input is returned as it is.

    Args:
        p: probability of dropping an activation, in [0, 1). Default: 0.5.

    Input shape: any; output shape: the same. No parameters.

    Random numbers: building the layer spawns its own ``numpy.random.Generator``
    from the network's (``rng.spawn``), so a network built with the same seed
    drops the same activations, and adding a Dropout does not change the
    initial weights of the other layers. The generator is the public attribute
    ``rng``; :meth:`rng_state` and :meth:`set_rng_state` read and restore its
    state as a JSON-serialisable dict, which is what checkpoints store.

    Raises:
        ValueError: unless ``0 <= p < 1``.

    Example:
        >>> import numpy as np
        >>> from volnet import Sequential
        >>> net = Sequential([Dropout(0.5)], input_shape=(2, 4, 1), seed=0)
        >>> x = np.ones((1, 2, 4, 1), dtype=np.float32)
        >>> net.forward(x, train=True)[0, :, :, 0]   # kept ones scaled by 1/(1 - 0.5)
        array([[2., 0., 2., 0.],
               [0., 2., 0., 2.]], dtype=float32)
        >>> net.forward(x, train=False) is x           # inference: the identity
        True
    """

    kind = "dropout"
    keyword = Keyword("DROPOUT", ("p",), positional=1)

    def __init__(self, p: float = 0.5):
        super().__init__()
        self.p = check_dropout_probability(p)
        self.rng: np.random.Generator | None = None

    def output_shape(self, input_shape):
        return input_shape

    def _init_params(self, input_shape, rng, dtype):
        self.rng = rng.spawn(1)[0]
        return []

    def forward(self, x, train=False, *, keep=None, workers=None):
        """Training drops activations; inference is the identity (``keep=True``: its backward too)."""
        if not train:
            self._keep(x.dtype.type(1), False, keep)  # the identity's mask
            return x
        out, mask = ops.dropout_forward(x, self.p, self._require_rng())
        self._keep(mask, train, keep)
        return out

    def backward(self, dout, input_grad=True, *, workers=None):
        return ops.dropout_backward(dout, self._take_cache())

    def rng_state(self) -> dict:
        """The state of the dropout generator (``rng.bit_generator.state``), a JSON-serialisable dict."""
        return self._require_rng().bit_generator.state

    def set_rng_state(self, state: dict) -> None:
        """Restore a state from :meth:`rng_state`: the following forward passes drop the same activations."""
        self._require_rng().bit_generator.state = state

    def _require_rng(self) -> np.random.Generator:
        if self.rng is None:
            raise RuntimeError(f"{self.label}: build the layer first (a Sequential does), "
                               "which gives it its random number generator")
        return self.rng

    def get_config(self):
        return {"p": self.p}

    # -- the description of the kind ---------------------------------------------
    def costs(self, input_shape, output_shape):
        return Costs()  # the identity in inference

    def forward_workspace(self, work):
        return dropout_workspace(work.n_in, work.itemsize, work.train)

    def backward_workspace(self, work, input_grad=True, dout_contiguous=True):
        return dropout_backward_workspace(work.n_in, work.itemsize)

    def to_torch(self, bridge, order):
        return bridge.step(self, [bridge.nn.Dropout(self.p)]), order

    def to_onnx(self, graph, x, input_shape):
        """Nothing: the identity in inference."""
        return x
