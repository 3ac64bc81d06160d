"""Functions that go wrong other than by a wrong value: they raise, return the wrong shape, or never return."""

import numpy as np


def _mask(x):
    raise ValueError("mask not written yet")


def relu_forward(x):
    return np.maximum(0, x), x


def relu_backward(dout, cache):
    return dout * _mask(cache)


def affine_forward(x, w, b):
    out = x.reshape(x.shape[0], -1).dot(w) + b
    return out.T, (x, w, b)


def affine_backward(dout, cache):
    while True:  # an endless loop: volnet check must stop it
        pass


def svm_loss(x, y):
    return 0.0  # forgot dx
