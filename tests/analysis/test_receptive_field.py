"""Receptive fields (size, jump, start) and the notes' 3x3-stack vs 7x7 comparison.

Figures checked:

* three stacked 3x3 CONVs see 7x7 (the notes: "effective receptive field is 7x7");
* two stacked 3x3 CONVs see 5x5 (the notes' dilation paragraph);
* a 3x3 CONV with dilation 1 then one with dilation 2 see 7x7 ("dilation = 0" then
  "dilation = 1" in the notes' counting, which starts one lower than volnet's);
* one 7x7 CONV has C*(7*7*C) = 49C^2 weights, three 3x3 CONVs 3*(C*(3*3*C)) = 27C^2;
* VGG-16: conv5_3 sees 196x196 and pool5 212x212 with a jump of 32 (published
  receptive-field tables give the same).
"""

from __future__ import annotations

import pytest

from volnet.analysis import ReceptiveField, analyze_layers, compare_stack, receptive_fields
from volnet.layers import FC, Concat, Conv2D, Flatten, MaxPool, ReLU, Residual


def test_three_stacked_3x3_convs_see_7x7():
    fields = receptive_fields([Conv2D(8, 3, P=1), ReLU(), Conv2D(8, 3, P=1), ReLU(), Conv2D(8, 3, P=1)], (32, 32, 3))
    assert [f.size for f in fields] == [(3, 3), (3, 3), (5, 5), (5, 5), (7, 7)]
    assert all(f.jump == (1, 1) and f.start == (0.0, 0.0) for f in fields)  # P=1 keeps neuron 0 on pixel 0


def test_dilation_1_then_2_sees_7x7():
    fields = receptive_fields([Conv2D(8, 3, P=1), Conv2D(8, 3, P=2, dilation=2)], (32, 32, 3))
    assert [f.size for f in fields] == [(3, 3), (7, 7)]
    # two ordinary 3x3 CONVs see only 5x5: the dilated one merges more with the same weights
    assert receptive_fields([Conv2D(8, 3, P=1), Conv2D(8, 3, P=1)], (32, 32, 3))[-1].size == (5, 5)


def test_jump_and_start():
    # CONV3 without padding: first neuron centred on pixel 1; 2x2 POOL/2: jump 2, centre 1.5
    conv, pool, conv2 = receptive_fields([Conv2D(4, 3), MaxPool(2), Conv2D(4, 3, P=1)], (10, 10, 1))
    assert (conv.size, conv.jump, conv.start) == ((3, 3), (1, 1), (1.0, 1.0))
    assert (pool.size, pool.jump, pool.start) == ((4, 4), (2, 2), (1.5, 1.5))
    # r_out = r_in + (F - 1)*j_in = 4 + 2*2; start_out = 1.5 + ((3 - 1)/2 - 1)*2
    assert (conv2.size, conv2.jump, conv2.start) == ((8, 8), (2, 2), (1.5, 1.5))
    # the recurrence itself, per axis, with a non-square filter
    rf = ReceptiveField().through(F=(3, 5), S=(2, 1), P=(1, 2))
    assert rf == ReceptiveField(size=(3, 5), jump=(2, 1), start=(0.0, 0.0))


def test_vgg16_receptive_fields(vgg16_layers):
    report = analyze_layers(vgg16_layers(), (224, 224, 3))
    convs = [r for r in report.rows if r.kind == "conv"]
    pools = [r for r in report.rows if r.kind == "pool"]
    assert convs[-1].rf.size == (196, 196) and convs[-1].rf.jump == (16, 16)
    assert pools[-1].rf.size == (212, 212) and pools[-1].rf.jump == (32, 32)
    # each CONV3 adds 2 * jump; each POOL2 adds 1 * jump and doubles it
    assert [p.rf.size[0] for p in pools] == [6, 16, 44, 100, 212]


def test_fc_sees_the_whole_volume():
    """An FC layer is a CONV with F = the input's size: r = r_in + (H - 1)*j_in, with or without Flatten."""
    for layers in ([Conv2D(4, 3, P=1), FC(10)], [Conv2D(4, 3, P=1), Flatten(), FC(10)]):
        report = analyze_layers(layers, (8, 8, 3))
        assert report.rows[-1].rf.size == (3 + 7, 3 + 7)  # covers all 8x8 pixels (and the padding)


def test_containers_take_the_widest_path():
    # body: two 3x3 CONVs (5x5); identity shortcut: 1x1 -> the sum sees 5x5
    residual = analyze_layers([Residual([Conv2D(4, 3, P=1), Conv2D(4, 3, P=1)])], (8, 8, 4))
    assert residual.rows[-1].kind == "residual" and residual.rows[-1].rf.size == (5, 5)
    concat = analyze_layers([Concat([[Conv2D(4, 1)], [Conv2D(4, 5, P=2)], []])], (8, 8, 4))
    assert concat.rows[-1].rf.size == (5, 5) and concat.rows[-1].output_shape == (8, 8, 12)


def test_compare_stack_reproduces_the_notes():
    for C in (1, 16, 64):
        c = compare_stack(C)
        assert c.layers == 3
        assert c.big_weights == C * (7 * 7 * C) == 49 * C * C
        assert c.small_weights == 3 * (C * (3 * 3 * C)) == 27 * C * C
        assert c.big_rf == c.small_rf == 7
        assert c.big_macs * 27 == c.small_macs * 49  # per output position, 49C^2 vs 27C^2 multiply-adds
        # "but require more memory to hold all the intermediate CONV layer results": two 32x32xC volumes
        assert c.extra_activations == 2 * 32 * 32 * C
    assert "49C^2" in compare_stack(8).describe() and "27C^2" in compare_stack(8).describe()
    five = compare_stack(8, F_big=5)
    assert (five.layers, five.big_weights, five.small_weights) == (2, 25 * 64, 18 * 64)
    with pytest.raises(ValueError, match="multiple"):
        compare_stack(8, F_big=6)
