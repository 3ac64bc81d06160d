"""What a network computes on one image, and why it picks a class: activations, saliency,
occlusion sensitivity, Grad-CAM and the FC->CONV sliding-window score map.

All functions take an already normalised input volume ``x`` ``(H, W, D)`` (apply the
checkpoint's normalizer first) and return arrays. Gradients are of the network in
inference mode: BatchNorm uses its running statistics and Dropout passes values through,
so the maps explain the scores the network actually gives.
"""

from __future__ import annotations

import numpy as np

from ..convert import fc_to_conv
from ..ops import softmax


def activations(net, x: np.ndarray) -> list[np.ndarray]:
    """Every top-level layer's output volume for one input ``x`` ``(H, W, D)``, first layer first."""
    out, volumes = x[None].astype(net.dtype), []
    for layer in net.layers:
        out = layer.forward(out, train=False)
        volumes.append(out[0])
    return volumes


def _forward_kept(net, x: np.ndarray, upto: int | None = None) -> list[np.ndarray]:
    """Outputs of layers ``0..upto`` in inference, with what a backward pass through them needs kept."""
    out, outputs = x.astype(net.dtype), []
    for layer in net.layers[: None if upto is None else upto + 1]:
        out = layer.forward(out, train=False, keep=True)
        outputs.append(out)
    return outputs


def _backward_from(net, dout: np.ndarray, last: int, first: int) -> np.ndarray:
    """Backpropagate ``dout`` (gradient w.r.t. layer ``last``'s output) down to layer ``first``'s input."""
    for layer in reversed(net.layers[first: last + 1]):
        dout = layer.backward(dout, input_grad=True)
    return dout


def score_rows(scores: np.ndarray) -> np.ndarray:
    """A batch of class scores as ``(N, classes)``: a net ending in GAP gives them as ``(N, 1, 1, classes)``."""
    return scores.reshape(len(scores), -1)


def class_scores(net, x: np.ndarray) -> np.ndarray:
    """The class scores ``(classes,)`` of one input volume."""
    return score_rows(net.forward(x[None].astype(net.dtype), train=False))[0]


def saliency(net, x: np.ndarray, target: int) -> np.ndarray:
    """``d score[target] / d x``, the gradient of one class score w.r.t. the input volume ``(H, W, D)``.

    Show ``np.abs(...).max(axis=2)`` as the saliency map (Simonyan et al. 2013).
    """
    scores = _forward_kept(net, x[None])[-1]
    dout = np.zeros_like(scores)
    score_rows(dout)[0, target] = 1  # a view: dout keeps the net's output shape
    return _backward_from(net, dout, len(net.layers) - 1, 0)[0]


def gradcam_layer(net) -> int:
    """Index of the layer Grad-CAM reads: the last top-level layer whose output is still a volume
    (after the last CONV's RELU, say), pooling layers skipped."""
    candidates = [i for i, (layer, shape) in enumerate(zip(net.layers, net.shapes))
                  if len(shape) == 3 and layer.kind not in ("pool",) and "pool" not in layer.kind]
    if not candidates:
        raise ValueError("Grad-CAM needs a layer with a volume output (a CONV layer); this network has none")
    return candidates[-1]


def grad_cam(net, x: np.ndarray, target: int, layer: int | None = None) -> np.ndarray:
    """Grad-CAM (Selvaraju et al. 2017) on layer ``layer`` (default :func:`gradcam_layer`): ``(h, w)``.

    ``relu(sum_k alpha_k A[:, :, k])`` with ``alpha_k`` the mean over positions
    of ``d score[target] / d A[:, :, k]``, A the layer's output volume.
    """
    layer = gradcam_layer(net) if layer is None else layer
    outputs = _forward_kept(net, x[None])
    dout = np.zeros_like(outputs[-1])
    dout[0, target] = 1
    grad = _backward_from(net, dout, len(net.layers) - 1, layer + 1)[0]
    volume = outputs[layer][0]
    alpha = grad.mean(axis=(0, 1))
    return np.maximum(volume @ alpha, 0)


def occlusion(net, x: np.ndarray, target: int, size: int | None = None, stride: int | None = None,
              fill: float = 0.0, batch: int = 64) -> np.ndarray:
    """Occlusion sensitivity (Zeiler & Fergus 2013): how much ``target``'s probability drops when a
    ``size`` x ``size`` square of the input is set to ``fill``, for every square position.

    Returns ``(h, w)`` with ``h = (H - size) // stride + 1``; positive where covering the square
    hurts the class. Deterministic: no randomness is involved.
    """
    H, W, _ = x.shape
    size = size or max(2, H // 7)
    stride = stride or max(1, size // 2)
    tops, lefts = range(0, H - size + 1, stride), range(0, W - size + 1, stride)
    base = softmax(class_scores(net, x))[target]
    covered = []
    for top in tops:
        for left in lefts:
            copy = x.copy()
            copy[top: top + size, left: left + size] = fill
            covered.append(copy)
    probabilities = []
    for start in range(0, len(covered), batch):
        scores = net.forward(np.stack(covered[start: start + batch]).astype(net.dtype), train=False)
        probabilities.append(softmax(score_rows(scores))[:, target])
    return (base - np.concatenate(probabilities)).reshape(len(tops), len(lefts))


def sliding_map(net, x: np.ndarray, target: int, scale: float = 1.5) -> np.ndarray:
    """The FC->CONV sliding-window map (the notes' "Converting FC Layers to CONV Layers"): the input
    enlarged by ``scale`` (nearest neighbour), the converted net slid over it in one pass, and
    ``target``'s probability at every position ``(h, w)``.

    Raises ValueError (from :func:`volnet.convert.fc_to_conv`) for a net that does not convert.
    """
    from ..convert import sliding_size

    Hs, Ws = sliding_size(net, scale)
    H, W, _ = x.shape
    rows = np.minimum(np.arange(Hs) * H // Hs, H - 1)
    cols = np.minimum(np.arange(Ws) * W // Ws, W - 1)
    big = x[rows][:, cols]
    converted = fc_to_conv(net, big.shape)
    score_map = converted.forward(big[None].astype(net.dtype), train=False)[0]
    return softmax(score_map)[..., target]


def parameter_gradients(net, images: np.ndarray, labels: np.ndarray) -> dict[str, np.ndarray]:
    """Softmax-loss gradients of every parameter on a batch (inference-mode forward): ``{layer.param: grad}``."""
    from ..ops.losses import softmax_cross_entropy

    scores = _forward_kept(net, images)[-1]
    _, dscores = softmax_cross_entropy(score_rows(scores), labels)
    _backward_from(net, dscores.reshape(scores.shape), len(net.layers) - 1, 0)
    grads = {}
    for index, layer in enumerate(net.layers, start=1):
        for name, p in layer.named_params():
            if p.grad is not None:
                grads[f"{index}.{name}"] = np.array(p.grad)
    return grads
