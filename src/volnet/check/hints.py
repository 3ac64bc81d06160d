"""Known mistakes, recognised by what they compute.

Each mistake is written as the wrong computation itself, built from
volnet's reference kernels (a stride of 1, a flipped filter, one image's
share of dw...). When the learner's value equals one of them, the report
names the mistake. A hint is only given on such an exact match (or, for
overlapping pooling windows, when every wrong value lies where windows
overlap), so it never guesses.
"""

from __future__ import annotations

import numpy as np

from . import reference

OVERLAP = ("windows overlap (stride < pool size) and the gradient is assigned with `=`: a later window overwrites "
           "an earlier one's share; add it with `+=` (the assignment's own check pools 2x2 with stride 2, where "
           "no window overlaps, so it cannot see this)")
BATCH_SUM = ("{q} holds one image's share: sum over the whole batch (every image uses the same {what}), "
             "e.g. `{q} += ...` inside the loop over n, or `.sum(axis=0)`")
STRIDE = ("the stride is ignored: output (i, j) looks at the window starting at (i*stride, j*stride), "
          "not at (i, j)")
FLIPPED = ("the filter is flipped: the CONV layer computes sum(x_window * w[f]) with w as it is "
           "(a cross-correlation), not a convolution with the filter turned around")
CROP = ("the padded gradient is cropped at the wrong offset: dx = dx_pad[:, :, pad:pad+H, pad:pad+W] "
        "(the padding is pad rows and columns on each side)")
CROP_EMPTY = ("dx is empty: dx_pad[:, :, pad:-pad, pad:-pad] has nothing in it when pad = 0; "
              "use dx_pad[:, :, pad:pad+H, pad:pad+W]")
PER_N = ("{q} is not divided by N: the loss is the mean over the batch, so its gradient is "
         "divided by N too")


def diagnose(family: str, config: dict, inputs: dict, quantity: str, got) -> str | None:
    """The known mistake whose result equals ``got``, or None."""
    try:
        got = np.asarray(got, dtype=np.float64)
    except (TypeError, ValueError):
        return None
    if quantity == "dx" and family == "conv" and config["pad"] == 0 and 0 in got.shape[2:]:
        return CROP_EMPTY
    if quantity in ("dw", "db") and got.shape[:1] == (inputs["x"].shape[0],):
        right = {"dw": inputs["w"], "db": inputs["b"]}[quantity]
        if got.shape[1:] == right.shape:
            return BATCH_SUM.format(q=quantity, what="filters" if family == "conv" else "weights")
    for hint, wrong in _mistakes(family, config, inputs, quantity):
        if got.shape == wrong.shape and np.allclose(got, wrong, rtol=1e-6, atol=1e-8):
            return hint
    if family == "pool" and quantity == "dx":
        return _overlap_only(config, inputs, got)
    return None


def _mistakes(family, config, inputs, q):
    """(hint, wrong value) pairs for the quantity q, made lazily, cheapest first."""
    x, dout = inputs["x"], inputs.get("dout")
    if family in ("softmax", "svm"):
        right = (reference.softmax_loss if family == "softmax" else reference.svm_loss)(x, inputs["y"])[q]
        yield PER_N.format(q="the loss" if q == "loss" else q), np.asarray(right) * x.shape[0]
        return
    if family == "affine" and q in ("dw", "db"):
        for n in range(x.shape[0]):
            yield BATCH_SUM.format(q=q, what="weights"), reference.affine(x[n:n + 1], inputs["w"], inputs["b"],
                                                                          dout[n:n + 1])[q]
    if family == "conv":
        yield from _conv_mistakes(config, inputs, q)
    if family == "pool":
        yield from _pool_mistakes(config, inputs, q)


def _conv_mistakes(config, inputs, q):
    x, w, b, dout = inputs["x"], inputs["w"], inputs["b"], inputs.get("dout")
    S, P = config["stride"], config["pad"]
    flipped = w[:, :, ::-1, ::-1]
    if q in ("dw", "db"):
        for n in range(x.shape[0]):
            yield BATCH_SUM.format(q=q, what="filters"), reference.conv(x[n:n + 1], w, b, S, P, dout[n:n + 1])[q]
    if S > 1 and q in ("out", "dx", "dw"):
        out_hw = reference.conv(x, w, b, S, P)["out"].shape[2:]
        yield STRIDE, _at_stride_one(lambda d: reference.conv(x, w, b, 1, P, d), q, out_hw, dout)
    if q == "out":
        yield FLIPPED, reference.conv(x, flipped, b, S, P)["out"]
    elif q == "dx":
        yield FLIPPED, reference.conv(x, flipped, b, S, P, dout)["dx"]
    elif q == "dw":
        yield FLIPPED, reference.conv(x, w, b, S, P, dout)["dw"][:, :, ::-1, ::-1]
    if q == "dx" and P > 0:
        H, W = x.shape[2:]
        padded = np.pad(x, ((0, 0), (0, 0), (P, P), (P, P)))
        dx_pad = reference.conv(padded, w, b, S, 0, dout)["dx"]
        for top in range(2 * P + 1):
            for left in range(2 * P + 1):
                if (top, left) != (P, P):
                    yield CROP, dx_pad[:, :, top:top + H, left:left + W]


def _pool_mistakes(config, inputs, q):
    x, dout = inputs["x"], inputs.get("dout")
    ph, pw, S = config["pool_height"], config["pool_width"], config["stride"]
    if S > 1:
        out_hw = reference.max_pool(x, ph, pw, S)["out"].shape[2:]
        yield STRIDE, _at_stride_one(lambda d: reference.max_pool(x, ph, pw, 1, d), q, out_hw, dout)
    if q == "dx" and (S < ph or S < pw):
        yield OVERLAP, _pool_assigned(x, dout, ph, pw, S, whole_window=False)
        yield OVERLAP, _pool_assigned(x, dout, ph, pw, S, whole_window=True)


def _at_stride_one(layer, q, out_hw, dout):
    """The quantity q as if output (i, j) read the window at (i, j): stride 1, cropped to the real output size."""
    Ho, Wo = out_hw
    full = layer(None)["out"]
    if q == "out":
        return full[:, :, :Ho, :Wo]
    spread = np.zeros(full.shape)
    spread[:, :, :Ho, :Wo] = dout
    return layer(spread)[q]


def _pool_assigned(x, dout, ph, pw, S, whole_window):
    """Max-pool backward with `=` instead of `+=`: the argmax entry (or the whole window) is overwritten."""
    dx = np.zeros_like(x)
    N, C, Ho, Wo = dout.shape
    for n in range(N):
        for c in range(C):
            for i in range(Ho):
                for j in range(Wo):
                    window = x[n, c, i * S:i * S + ph, j * S:j * S + pw]
                    a, b = np.unravel_index(np.argmax(window), window.shape)
                    if whole_window:
                        dx[n, c, i * S:i * S + ph, j * S:j * S + pw] = 0
                    dx[n, c, i * S + a, j * S + b] = dout[n, c, i, j]
    return dx


def _overlap_only(config, inputs, got) -> str | None:
    """The overlap hint when every wrong entry of dx lies where two or more windows overlap."""
    ph, pw, S = config["pool_height"], config["pool_width"], config["stride"]
    x, dout = inputs["x"], inputs["dout"]
    if not (S < ph or S < pw) or got.shape != x.shape:
        return None
    right = reference.max_pool(x, ph, pw, S, dout)["dx"]
    windows = np.zeros(x.shape[2:], dtype=int)
    for i in range(dout.shape[2]):
        for j in range(dout.shape[3]):
            windows[i * S:i * S + ph, j * S:j * S + pw] += 1
    wrong = ~np.isclose(got, right, rtol=1e-6, atol=1e-8)
    return OVERLAP if wrong.any() and (windows[None, None] >= 2)[wrong].all() else None
