"""volnet.viz.explain and volnet.viz.conv_demo: the maps are what they claim to be."""

from __future__ import annotations

import numpy as np

from volnet.gradcheck import numerical_gradient, relative_error
from volnet.viz import explain
from volnet.viz.conv_demo import conv_demo, conv_demo_data


def test_saliency_equals_finite_differences_in_inference_mode(small_net, rng):
    net = small_net()
    x = rng.standard_normal((10, 10, 2))
    target = 1
    analytic = explain.saliency(net, x, target)

    def score():
        return float(net.forward(x[None], train=False)[0, target])

    assert relative_error(analytic, numerical_gradient(score, x)) < 1e-6


def test_saliency_leaves_the_network_unchanged(small_net, rng):
    net = small_net()
    x = rng.standard_normal((10, 10, 2))
    before = net.forward(x[None], train=False)
    running = net.layers[1].running_mean.copy()
    explain.saliency(net, x, 0)
    explain.grad_cam(net, x, 0)
    np.testing.assert_array_equal(net.forward(x[None], train=False), before)
    np.testing.assert_array_equal(net.layers[1].running_mean, running)


def test_grad_cam_equals_a_pytorch_reference(small_net, rng, torch):
    from volnet.interop import to_torch

    net = small_net()
    x = rng.standard_normal((10, 10, 2))
    target = 2
    layer = explain.gradcam_layer(net)
    assert layer == 4  # the RELU after the last CONV
    ours = explain.grad_cam(net, x, target)

    model = to_torch(net).eval()
    relus = [m for m in model.modules() if isinstance(m, torch.nn.ReLU)]
    kept = {}
    relus[-1].register_forward_hook(lambda module, inputs, output: kept.update(a=output))
    scores = model(torch.tensor(np.ascontiguousarray(x.transpose(2, 0, 1)[None])))
    A = kept["a"]
    (grad,) = torch.autograd.grad(scores[0, target], A)
    alpha = grad[0].mean(dim=(1, 2))
    reference = torch.relu((alpha[:, None, None] * A[0]).sum(0)).detach().numpy()
    np.testing.assert_allclose(ours, reference, rtol=1e-9, atol=1e-12)


def test_occlusion_is_deterministic_and_zero_for_a_square_that_changes_nothing(small_net, rng):
    net = small_net(np.float32)
    x = rng.standard_normal((10, 10, 2)).astype(np.float32)
    first = explain.occlusion(net, x, 0, size=4, stride=2)
    assert first.shape == (4, 4)
    np.testing.assert_array_equal(first, explain.occlusion(net, x, 0, size=4, stride=2))
    np.testing.assert_array_equal(explain.occlusion(net, np.zeros_like(x), 0, size=4, stride=2), 0)


def test_conv_demo_sum_equals_the_layer_output(small_net, rng):
    net = small_net()
    x = rng.standard_normal((10, 10, 2))
    volumes = explain.activations(net, x)
    layer, volume_in, out = net.layers[3], volumes[2], volumes[3]  # the second CONV reads the RELU's output
    for position in [(0, 0), (3, 7), (9, 9)]:
        for k in (0, 4):
            demo = conv_demo(layer, volume_in, position, k)
            assert demo.window.shape == demo.weights.shape == (3, 3, 4)
            np.testing.assert_allclose(demo.products.sum() + demo.bias, out[position + (k,)], rtol=1e-12)
            assert demo.total == out[position + (k,)] or abs(demo.total - out[position + (k,)]) < 1e-12
    data = conv_demo_data(layer, volume_in, out, k=1)
    assert data["out_hw"] == [10, 10] and len(data["input"]) == 4 and len(data["input"][0]) == 12


def test_sliding_map_of_an_fc_net_has_one_probability_per_position(small_net, rng):
    net = small_net(np.float32)
    x = rng.standard_normal((10, 10, 2)).astype(np.float32)
    probabilities = explain.sliding_map(net, x, 0, scale=1.6)
    assert probabilities.ndim == 2 and probabilities.shape[0] > 1
    assert np.all((probabilities >= 0) & (probabilities <= 1))
