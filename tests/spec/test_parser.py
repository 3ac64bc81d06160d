"""volnet.build: the notes' notation -> a Sequential (src/volnet/spec/parser.py and builder.py)."""

import re

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import volnet
from volnet import Sequential, ShapeError, SpecError, build
from volnet.layers import (FC, AvgPool, BatchNorm, Concat, Conv2D, Dropout, Flatten, GlobalAvgPool, Inception,
                           L2Pool, LocallyConnected, MaxPool, ReLU, Residual)
from volnet.spec import build_layers

CIFAR = {"input": "32x32x3", "classes": 10}
PATTERN = "INPUT -> [[CONV -> RELU]*N -> POOL?]*M -> [FC -> RELU]*K -> FC"


def configs(net):
    return [(type(layer).__name__, layer.get_config()) for layer in net.layers]


def conv(K, F=3, S=1, P=1, dilation=1, fit=None, bias=True):
    return ("Conv2D", {"K": K, "F": F, "S": S, "P": P, "dilation": dilation, "fit": fit, "bias": bias})


def pool(F=2, S=2, P=0, fit=None, kind="MaxPool"):
    return (kind, {"F": F, "S": S, "P": P, "fit": fit})


RELU = ("ReLU", {})


def fc(K):
    return ("FC", {"K": K})


# -- the notes' examples (ConvNet Architectures) ---------------------------------


def test_linear_classifier():
    net = build("INPUT -> FC", **CIFAR)
    assert configs(net) == [fc(10)]
    assert net.shapes == [(10,)] and net.num_params == 32 * 32 * 3 * 10 + 10


def test_one_conv_layer():
    net = build("INPUT -> CONV -> RELU -> FC", **CIFAR)
    assert configs(net) == [conv(32), RELU, fc(10)]
    assert net.shapes == [(32, 32, 32), (32, 32, 32), (10,)]


def test_single_conv_between_pools():
    net = build("INPUT -> [CONV -> RELU -> POOL]*2 -> FC -> RELU -> FC", **CIFAR)
    assert configs(net) == [conv(32), RELU, pool(), conv(64), RELU, pool(), fc(512), RELU, fc(10)]
    assert net.shapes == [(32, 32, 32), (32, 32, 32), (16, 16, 32), (16, 16, 64), (16, 16, 64), (8, 8, 64),
                          (512,), (512,), (10,)]


def test_two_convs_before_every_pool():
    net = build("INPUT -> [CONV -> RELU -> CONV -> RELU -> POOL]*3 -> [FC -> RELU]*2 -> FC", **CIFAR)
    expected = []
    for K in (32, 64, 128):
        expected += [conv(K), RELU, conv(K), RELU, pool()]
    assert configs(net) == expected + [fc(512), RELU, fc(512), RELU, fc(10)]
    volumes = [shape for shape in net.shapes if len(shape) == 3]
    assert volumes[::5] == [(32, 32, 32), (16, 16, 64), (8, 8, 128)]
    assert volumes[-1] == (4, 4, 128)
    assert net.shapes[-5:] == [(512,), (512,), (512,), (512,), (10,)]


@pytest.mark.parametrize("letters, written", [
    ({"N": 0, "M": 0, "K": 0}, "INPUT -> FC"),
    ({"N": 1, "M": 2, "K": 1}, "INPUT -> [CONV -> RELU -> POOL]*2 -> FC -> RELU -> FC"),
    ({"N": 2, "M": 3, "K": 2}, "INPUT -> [CONV -> RELU -> CONV -> RELU -> POOL]*3 -> [FC -> RELU]*2 -> FC"),
])
def test_the_pattern_with_letters_is_the_written_out_example(letters, written):
    assert configs(build(PATTERN, **CIFAR, **letters)) == configs(build(written, **CIFAR))


def test_pattern_without_pools_keeps_the_first_width():
    net = build(PATTERN, **CIFAR, N=2, M=2, K=1, optional=False, allocate=False)
    assert configs(net) == [conv(32), RELU] * 4 + [fc(512), RELU, fc(10)]
    assert net.shapes[7] == (32, 32, 32)


# -- concrete specs ------------------------------------------------------------------


def test_alexnet_like_concrete_spec():
    net = build("INPUT[227x227x3] -> CONV(F=11,K=96,S=4,P=0) -> RELU -> POOL(F=3,S=2)"
                " -> CONV5-256/P2 -> RELU -> POOL(F=3,S=2) -> CONV3-384 -> RELU -> CONV3-384 -> RELU"
                " -> CONV3-256 -> RELU -> POOL(F=3,S=2) -> FC4096 -> RELU -> FC4096 -> RELU -> FC1000",
                allocate=False)
    assert configs(net)[:3] == [conv(96, F=11, S=4, P=0), RELU, pool(3, 2)]
    assert configs(net)[3] == conv(256, F=5, P=2)
    assert net.shapes[0] == (55, 55, 96) and net.shapes[2] == (27, 27, 96)
    assert net.shapes[3] == (27, 27, 256) and net.shapes[5] == (13, 13, 256)
    assert net.shapes[6] == (13, 13, 384) and net.shapes[12] == (6, 6, 256)
    assert net.shapes[-1] == (1000,)
    assert net.num_params == 62_378_344  # AlexNet on 227x227, one GPU


def test_compact_modifiers():
    net = build("INPUT[33x33x3] -> CONV3-64/S2/P1/D2 -> CONV5-8/P0 -> CONV3-4/B0 -> CONV1-4/S1", allocate=False)
    assert configs(net) == [conv(64, S=2, P=1, dilation=2), conv(8, F=5, P=0), conv(4, bias=False),
                            conv(4, F=1, P=0)]
    assert net.shapes == [(16, 16, 64), (12, 12, 8), (12, 12, 4), (12, 12, 4)]  # (33 - 5 + 2)/2 + 1 = 16


@pytest.mark.parametrize("text, F, dilation, P", [
    ("CONV3-4/D2", 3, 2, 2),  # spans 5
    ("CONV(F=3,K=4,dilation=3)", 3, 3, 3),  # spans 7
    ("CONV2-4/D3", 2, 3, None),  # spans 3*(2-1)+1 = 4: even, no same padding
    ("CONV5-4", 5, 1, 2),
    ("CONV1-4", 1, 1, 0),
])
def test_same_padding_accounts_for_dilation(text, F, dilation, P):
    spec = f"INPUT[16x16x2] -> {text}"
    if (dilation * (F - 1) + 1) % 2 == 0:
        with pytest.raises(SpecError, match="no symmetric 'same' padding"):
            build(spec)
        return
    net = build(spec)
    assert configs(net) == [conv(4, F=F, P=P, dilation=dilation)]
    assert net.output_shape == (16, 16, 4)


def test_pairs_and_same_padding_per_axis():
    net = build("INPUT[9x9x1] -> CONV(F=3x5,K=2) -> CONV3x1-2/P0x1 -> POOL(F=1x3,S=1)")
    assert configs(net) == [conv(2, F=(3, 5), P=(1, 2)), conv(2, F=(3, 1), P=(0, 1)),
                            pool((1, 3), 1)]
    assert net.shapes == [(9, 9, 2), (7, 11, 2), (7, 9, 2)]


def test_keyword_forms_aliases_and_fit():
    net = build("input[32x32x1] -> conv(size=3, filters=4, stride=2, pad=0, fit=crop) -> "
                "CONV(K=4, F=3, S=2, P=0, fit=pad, bias=false) -> maxpool(f=2, s=1) -> Pool(3, 1) -> "
                "AVGPOOL(F=3,S=1,P=1) -> L2POOL2 -> BATCHNORM(eps=1e-3, momentum=0.01) -> bn -> "
                "DROPOUT -> Dropout(0.25) -> DROPOUT(p=.1) -> FLATTEN -> FC(K=3) -> FC(3) -> FC(k=3)")
    types = [type(layer) for layer in net.layers]
    assert types == [Conv2D, Conv2D, MaxPool, MaxPool, AvgPool, L2Pool, BatchNorm, BatchNorm, Dropout, Dropout,
                     Dropout, Flatten, FC, FC, FC]
    assert configs(net)[:6] == [conv(4, S=2, P=0, fit="crop"), conv(4, S=2, P=0, fit="pad", bias=False),
                                pool(2, 1), pool(3, 1), pool(3, 1, P=1, kind="AvgPool"), pool(kind="L2Pool")]
    assert [layer.get_config() for layer in net.layers[6:11]] == [
        {"eps": 1e-3, "momentum": 0.01}, {"eps": 1e-5, "momentum": 0.1}, {"p": 0.5}, {"p": 0.25}, {"p": 0.1}]
    assert net.shapes[:6] == [(15, 15, 4), (7, 7, 4), (6, 6, 4), (4, 4, 4), (4, 4, 4), (2, 2, 4)]


def test_whitespace_newlines_and_case_are_free():
    text = "\tinput [ 16X16x3 ]\n->  Conv3 - 8 / s1 / P1\n-> relu\n->[ pool2 ]*1 ->fc10  "
    assert configs(build(text)) == [conv(8), RELU, pool(), fc(10)]


def test_input_argument_forms():
    for given in ("8x8x2", " 8 x 8 x 2 ", (8, 8, 2), [8, 8, 2], np.array([8, 8, 2])):
        assert build("FC3", input=given).input_shape == (8, 8, 2)
    assert build("INPUT -> FC3", input="8x8x2").input_shape == (8, 8, 2)
    assert build("INPUT[8x8x2] -> FC3", input=(8, 8, 2)).input_shape == (8, 8, 2)
    assert build("INPUT[8x8x2]").layers == []


def test_seed_and_dtype_reach_the_weights():
    net = build("INPUT[8x8x1] -> CONV3-4 -> FC2", seed=7, dtype=np.float64)
    direct = Sequential([Conv2D(4, 3, P=1), FC(2)], (8, 8, 1), seed=7, dtype=np.float64)
    assert all(np.array_equal(a.value, b.value) and a.value.dtype == np.float64
               for a, b in zip(net.params(), direct.params()))


def test_build_layers_gives_unbuilt_layers():
    shape, layers = build_layers("INPUT[8x8x1] -> CONV3-4 -> FC2")
    assert shape == (8, 8, 1) and [type(layer) for layer in layers] == [Conv2D, FC]
    assert layers[0].params() == []


# -- repetition, options, letters ---------------------------------------------------------


def test_nested_repetition():
    net = build("INPUT[16x16x1] -> [[CONV3-4 -> RELU]*2 -> POOL2]*2 -> [RELU*2]*3 -> FC2")
    assert configs(net) == ([conv(4), RELU, conv(4), RELU, pool()] * 2 + [RELU] * 6 + [fc(2)])
    assert net.shapes[9] == (4, 4, 4)


def test_star_zero_removes_and_letters_count():
    assert configs(build("INPUT[8x8x1] -> [CONV3-4 -> RELU]*0 -> FC2")) == [fc(2)]
    assert configs(build("INPUT[8x8x1] -> [RELU]*R -> [FC2]*Q", R=3, Q=1)) == [RELU] * 3 + [fc(2)]
    assert configs(build("INPUT[8x8x1] -> [RELU]*R", R=np.int64(2))) == [RELU] * 2


def test_letters_inside_layers():
    net = build("INPUT[8x8x1] -> CONV(F=F1,K=C) -> CONV3-C/S1 -> FC(K=H) -> FC3", F1=1, C=5, H=7)
    assert configs(net) == [conv(5, F=1, P=0), conv(5), fc(7), fc(3)]


def test_optional_elements():
    spec = "INPUT[8x8x1] -> CONV -> POOL? -> [CONV -> BN]? -> FC2"
    assert configs(build(spec))[:4] == [conv(32), pool(), conv(64), ("BatchNorm", {"eps": 1e-5, "momentum": 0.1})]
    assert configs(build(spec, optional=False)) == [conv(32), fc(2)]


def test_bare_width_doubles_after_every_pooling_layer_only():
    net = build("INPUT[16x16x1] -> CONV -> AVGPOOL -> CONV -> L2POOL2 -> CONV -> POOL(F=1,S=1) -> CONV -> GAP"
                " -> CONV -> CONV3-8 -> CONV", allocate=False)
    Ks = [layer.K for layer in net.layers if isinstance(layer, Conv2D)]
    assert Ks == [32, 64, 128, 256, 256, 8, 256]


def test_pools_inside_a_branch_count_only_in_that_branch():
    net = build("INPUT[8x8x1] -> CONCAT{ POOL -> CONV | CONV2-2/S2/P0 -> CONV } -> CONV", allocate=False)
    first, second = net.layers[0].branches
    assert first[1].K == 64 and second[1].K == 32 and net.layers[1].K == 32


def test_hidden_fc_is_512_and_last_fc_is_classes():
    net = build("INPUT[4x4x1] -> FC -> RELU -> FC -> DROPOUT -> FC -> RELU", classes=7)
    assert configs(net)[::2] == [fc(512), fc(512), fc(7)]
    assert configs(build("INPUT[4x4x1] -> FC -> FC9", classes=9)) == [fc(512), fc(9)]
    assert configs(build("INPUT[4x4x1] -> FC -> FC9")) == [fc(512), fc(9)]
    assert configs(build("INPUT[4x4x1] -> CONV3-2", classes=5)) == [conv(2)]  # no FC: classes unused


# -- containers and other layers -------------------------------------------------------


def test_residual_concat_inception_gap_lc():
    net = build("INPUT[8x8x4] -> RES{ CONV3-4 -> BN -> RELU -> CONV3-4 } -> RELU"
                " -> RES{ CONV2-8/S2/P0 -> RELU -> CONV3-8 | POOL2 -> CONV1-8/P0 }"
                " -> CONCAT{ CONV1-2 | CONV3-3 -> RELU | POOL3/S1/P1 | }"
                " -> INCEPTION(2,2,4,1,2,2) -> LC3-2/P0 -> GAP -> FC3", allocate=False)
    kinds = [type(layer) for layer in net.layers]
    assert kinds == [Residual, ReLU, Residual, Concat, Inception, LocallyConnected, GlobalAvgPool, FC]
    identity, projection, concat, inception = net.layers[0], net.layers[2], net.layers[3], net.layers[4]
    assert identity.shortcut == [] and len(identity.body) == 4
    assert [type(layer) for layer in projection.shortcut] == [MaxPool, Conv2D]
    assert [len(branch) for branch in concat.branches] == [1, 2, 1, 0]
    assert inception.get_config() == {"c1": 2, "c3_reduce": 2, "c3": 4, "c5_reduce": 1, "c5": 2, "pool_proj": 2}
    assert net.layers[5].get_config() == {"K": 2, "F": 3, "S": 1, "P": 0, "fit": None}
    assert net.shapes == [(8, 8, 4), (8, 8, 4), (4, 4, 8), (4, 4, 2 + 3 + 8 + 8), (4, 4, 10), (2, 2, 2),
                          (1, 1, 2), (3,)]


def test_nested_containers_and_repeated_blocks():
    net = build("INPUT[8x8x2] -> [RES{ CONCAT{ CONV3-1 | CONV1-1 } -> RELU }]*N -> GAP", N=3)
    assert [type(layer) for layer in net.layers] == [Residual] * 3 + [GlobalAvgPool]
    assert net.layers[0] is not net.layers[1]  # every repetition is a new layer
    assert isinstance(net.layers[2].body[0], Concat) and net.output_shape == (1, 1, 2)


# -- errors --------------------------------------------------------------------------------


def spec_error(text, **kwargs) -> SpecError:
    with pytest.raises(SpecError) as info:
        build(text, **kwargs)
    return info.value


def test_error_shows_column_caret_and_what_was_expected():
    error = spec_error("INPUT[8x8x1] -> CONV3-4 FC2")
    assert error.column == 25 and error.line == 1
    assert str(error) == ("expected '->' or end of spec, found 'FC2' at column 25\n"
                          "  INPUT[8x8x1] -> CONV3-4 FC2\n"
                          "                          ^")
    assert isinstance(error, ValueError)


def test_error_in_a_multiline_spec_names_the_line():
    error = spec_error("INPUT[8x8x1]\n  -> CONV3-4 ->\n  RELU ] FC2")
    assert (error.line, error.column) == (3, 8)
    assert str(error).splitlines() == ["expected '->' or end of spec, found ']' at line 3, column 8",
                                       "    RELU ] FC2", "         ^"]


def test_unknown_layer_suggests_the_closest():
    error = spec_error("INPUT[8x8x1] -> CNV3-4 -> RELU")
    assert error.column == 17 and "unknown layer 'CNV'" in str(error) and "did you mean CONV?" in str(error)
    assert "did you mean MAXPOOL?" in str(spec_error("INPUT[8x8x1] -> MAXPOLL2"))
    assert "did you mean DROPOUT?" in str(spec_error("INPUT[8x8x1] -> DROPUT(0.5)"))
    assert "did you mean dilation?" in str(spec_error("INPUT[8x8x1] -> CONV(F=3,K=2,dilaton=2)"))


@pytest.mark.parametrize("text, column, message", [
    ("", 1, "expected a layer (CONV, POOL, FC, RELU, ...) or '[', found end of spec"),
    ("INPUT[8x8x1] ->", 16, "expected a layer"),
    ("INPUT[8x8] -> FC2", 7, "needs three sizes HxWxD, got 8x8"),
    ("INPUT[8x8x1 -> FC2", 13, "expected ']'"),
    ("INPUT[0x8x1] -> FC2", 7, "input sizes must be >= 1"),
    ("INPUT[8x8x1] FC2", 14, "expected '->' or end of spec"),
    ("INPUT[8x8x1] -> [FC2 -> RELU", 29, "expected '->' or ']'"),
    ("INPUT[8x8x1] -> [FC2]*", 23, "expected a repetition count"),
    ("INPUT[8x8x1] -> [FC2]*1.5", 23, "expected a repetition count"),
    ("INPUT[8x8x1] -> FC2 -> INPUT", 24, "INPUT can only be the first element"),
    ("INPUT[8x8x1] -> FC2 -> FC(K=3", 30, "expected ',' or ')'"),
    ("INPUT[8x8x1] -> FC(K=3,K=4)", 24, "K given twice"),
    ("INPUT[8x8x1] -> CONV(3,4)", 22, "name CONV's arguments"),
    ("INPUT[8x8x1] -> FC(K=3, 4)", 25, "positional argument cannot follow a named one"),
    ("INPUT[8x8x1] -> RELU(1)", 21, "RELU takes no arguments"),
    ("INPUT[8x8x1] -> RELU3", 17, "RELU takes no number"),
    ("INPUT[8x8x1] -> FC3/S2", 21, "FC takes no '/' modifiers"),
    ("INPUT[8x8x1] -> CONV3-4/X2", 25, "CONV takes no /X modifier"),
    ("INPUT[8x8x1] -> CONV3-4/S", 25, "expected a modifier after '/'"),
    ("INPUT[8x8x1] -> CONV3-4/S1/S2", 28, "S given twice"),
    ("INPUT[8x8x1] -> CONV3-4(S=2)", 24, "either compactly"),
    ("INPUT[8x8x1] -> CONV3-", 23, "expected the K of CONV after '-'"),
    ("INPUT[8x8x1] -> FC2{ RELU }", 20, "FC takes no { } block"),
    ("INPUT[8x8x1] -> RES( RELU )", 20, "RES takes no arguments"),
    ("INPUT[8x8x1] -> RES RELU", 21, "expected '{' after RES"),
    ("INPUT[8x8x1] -> RES{ RELU | RELU | RELU }", 34, "RES takes at most 2 chains"),
    ("INPUT[8x8x1] -> RES{ RELU -> }", 30, "expected a layer"),
    ("INPUT[8x8x1] -> CONCAT{ RELU ]", 30, "expected '->' or '|' or '}'"),
    ("INPUT[8x8x1] -> FC2 % 3", 21, "unexpected character '%'"),
    ("INPUT[8x8x1] -> CONV4-2", 17, "CONV with F=4 has no symmetric 'same' padding"),
    ("INPUT[8x8x1] -> CONV(F=0,K=2)", 24, "CONV F must be a whole number or an HxW pair >= 1, got 0"),
    ("INPUT[8x8x1] -> CONV(F=3x3x3,K=2)", 24, "got 3x3x3"),
    ("INPUT[8x8x1] -> CONV3-2/S0", 26, "CONV S must be"),
    ("INPUT[8x8x1] -> CONV(F=3,K=2.5)", 28, "CONV K must be a whole number >= 1, got 2.5"),
    ("INPUT[8x8x1] -> CONV(F=3,K=2,fit=wrap)", 34, "CONV fit must be pad, crop or none"),
    ("INPUT[8x8x1] -> CONV3-2/B2", 26, "CONV bias must be true or false"),
    ("INPUT[8x8x1] -> LC3-2/D2", 24, "LC takes no dilation in this volnet"),
    ("INPUT[8x8x1] -> DROPOUT(1.5)", 17, "must be in [0, 1)"),
    ("INPUT[8x8x1] -> BN(eps=0)", 17, "eps"),
    ("INPUT[8x8x1] -> INCEPTION(1,2,3)", 17, "INCEPTION needs c5_reduce, c5, pool_proj"),
    ("INPUT[8x8x1] -> RES{ [RELU]*0 }", 17, "the body needs at least one layer"),
    ("INPUT[8x8x1] -> [RELU]*100000", 23, "expands to more than 10000 layers"),
    ("INPUT[8x8x1] -> " + "[" * 101 + "RELU" + "]" * 101, 117, "nested more than 100 deep"),
    ("INPUT[8x8x1] -> RELU" + "?" * 100, 120, "nested more than 100 deep"),
    ("INPUT[8x8x1] -> " + "[" * 50 + "RELU" + "]*1" * 50 + "*1" * 50, 219, "nested more than 100 deep"),
    ("INPUT[8x8x1] -> " + "RES{" * 50 + "[RELU]" + "?" * 51 + "}" * 50, 25, "nested more than 100 deep"),
])
def test_error_messages(text, column, message):
    error = spec_error(text)
    assert message in error.reason or message in str(error)
    assert error.column == column, str(error)
    assert str(error).endswith(" " * (column - 1) + "^")


def test_missing_input_classes_and_letters():
    error = spec_error("INPUT -> FC2")
    assert "no input volume" in str(error) and "input='32x32x3'" in str(error) and error.column == 1
    assert "no input volume" in str(spec_error("CONV3-2"))
    error = spec_error("INPUT[8x8x1] -> FC -> RELU -> FC")
    assert "has no K" in str(error) and "classes=" in str(error) and error.column == 31
    error = spec_error("INPUT[8x8x1] -> [CONV -> RELU]*N -> FC2")
    assert str(error).startswith("no value for N at column 32") and "pass N=... to build()" in str(error)
    assert "did you mean N? (letters are case-sensitive)" in str(spec_error("INPUT[8x8x1] -> [RELU]*N", n=2))
    error = spec_error("INPUT[8x8x1] -> RELU", M=2)
    assert "M=2 given, but the spec has no letter M" in str(error) and error.column is None
    assert "repetition count must be a whole number >= 0, got -1" in str(spec_error("INPUT[1x1x1] -> RELU*N", N=-1))
    assert "got True" in str(spec_error("INPUT[1x1x1] -> RELU*N", N=True))


def test_conflicting_input_or_classes():
    assert "disagrees with input=" in str(spec_error("INPUT[8x8x1] -> FC2", input="8x8x3"))
    assert "input='8x8' is not a volume" in str(spec_error("FC2", input="8x8"))
    assert "input=(8, 0, 1) is not a volume" in str(spec_error("FC2", input=(8, 0, 1)))
    error = spec_error("INPUT[8x8x1] -> FC5", classes=10)
    assert "the last FC has K=5 but classes=10" in str(error) and error.column == 19
    assert "classes must be a whole number" in str(spec_error("INPUT[8x8x1] -> FC", classes=0))


def test_shape_errors_pass_through_unchanged():
    with pytest.raises(ShapeError) as from_spec:
        build("INPUT[32x32x3] -> CONV3-8 -> RELU -> CONV(F=5,K=16,S=2,P=0)")
    with pytest.raises(ShapeError) as direct:
        Sequential([Conv2D(8, 3, P=1), ReLU(), Conv2D(16, 5, S=2)], (32, 32, 3))
    assert type(from_spec.value) is ShapeError and str(from_spec.value) == str(direct.value)
    assert "layer 3 (Conv2D)" in str(from_spec.value)


def test_spec_must_be_a_string():
    with pytest.raises(SpecError, match="a spec is a string"):
        build(["CONV"], input="8x8x1")


# -- fuzzing: anything is a Sequential, a SpecError or a ShapeError ----------------------------

TOKENS = ["INPUT", "INPUT[8x8x1]", "[8x8x1]", "CONV", "CONV3-4", "CONV(F=3,K=2)", "CONV1-2/S2", "POOL", "POOL2",
          "POOL(F=3,S=1,P=1)", "AVGPOOL", "L2POOL2", "GAP", "FC", "FC3", "FC(K=2)", "RELU", "BN", "DROPOUT",
          "DROPOUT(0.5)", "FLATTEN", "LC", "LC3-2", "INCEPTION(1,1,1,1,1,1)", "RES{", "CONCAT{", "MAXPOOL",
          "->", "->", "->", "[", "]", "*", "*2", "*N", "?", "{", "}", "|", "(", ")", ",", "=", "/", "-", "S2", "P1",
          "D2", "B0", "F=", "K=", "fit=pad", "x", "0", "1", "2", "3", "N", " ", "\n", "e", ".", "#", "conv", "Cnv"]

VALID = [
    "INPUT[8x8x1] -> FC3",
    "INPUT -> [[CONV -> RELU]*N -> POOL?]*2 -> [FC -> RELU]*1 -> FC",
    "INPUT[8x8x1] -> CONV3-4/S1/P1 -> RELU -> POOL2 -> FC(K=3)",
    "INPUT[8x8x1] -> RES{ CONV3-2 -> BN -> RELU | CONV1-2/P0 } -> CONCAT{ CONV1-1 | POOL(F=3,S=1,P=1) | } -> GAP",
    "INPUT[8x8x1] -> CONV(F=3,K=2,S=2,P=0,fit=pad) -> AVGPOOL2 -> INCEPTION(1,1,1,1,1,1) -> LC1-2 -> DROPOUT(0.25)",
    "INPUT[8x8x1] -> [CONV3-2/D2 -> L2POOL(F=2,S=2)]*2 -> FLATTEN -> FC",
]


def try_build(text):
    letters = {"N": 2} if re.search(r"(?<![A-Za-z0-9_])N(?![A-Za-z0-9_])", text) else {}
    try:
        net = build(text, input="8x8x1", classes=3, allocate=False, **letters)
    except (SpecError, ShapeError):
        return None
    assert isinstance(net, Sequential)
    if net.num_params < 200_000:  # small enough to allocate: build it for real too
        assert isinstance(build(text, input="8x8x1", classes=3, **letters), Sequential)
    return net


def test_fuzz_seeds_are_valid():
    for text in VALID:
        assert try_build(text) is not None, text


FUZZ = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@FUZZ
@given(st.lists(st.sampled_from(TOKENS), max_size=14), st.sampled_from(["", " "]))
def test_fuzz_random_token_strings(tokens, joiner):
    try_build(joiner.join(tokens))


@st.composite
def mutated_specs(draw):
    text = draw(st.sampled_from(VALID))
    for _ in range(draw(st.integers(1, 3))):
        by_char = draw(st.booleans())
        pieces = list(text) if by_char else re.findall(r"\s+|->|\w+|.", text)
        index = draw(st.integers(0, len(pieces)))
        operation = draw(st.sampled_from(["delete", "insert", "replace"]))
        new = draw(st.sampled_from("[]{}()*?|,=/-x0123N. >" if by_char else TOKENS))
        if operation == "insert":
            pieces.insert(index, new)
        elif index < len(pieces):
            pieces[index:index + 1] = [] if operation == "delete" else [new]
        text = "".join(pieces)
    return text


@pytest.mark.slow
@FUZZ
@given(mutated_specs())
def test_fuzz_mutated_valid_specs(text):
    try_build(text)


def test_docstring_examples():
    import doctest

    import volnet.spec.builder
    import volnet.spec.notation

    for module in (volnet.spec, volnet.spec.builder, volnet.spec.notation):
        result = doctest.testmod(module)
        assert result.attempted > 0 and result.failed == 0, module.__name__


def test_volnet_exports():
    assert volnet.build is build and volnet.SpecError is SpecError and issubclass(SpecError, ValueError)
