"""The Python API: volnet.load, Model.predict and Model.save; lazy submodules; `volnet summary CHECKPOINT`."""

import subprocess
import sys

import numpy as np
import pytest

import volnet
from volnet.cli import main
from volnet.ops import softmax
from volnet.data import load as load_data
from volnet.train.checkpoint import CheckpointError



@pytest.fixture(scope="module")
def checkpoint(tiny_checkpoint):
    return tiny_checkpoint


@pytest.fixture(scope="module")
def digits():
    return load_data("mnist5k", split="test").images[:7]  # (7, 28, 28, 1) floats in [0, 1]


@pytest.mark.slow
def test_predict_gives_the_softmax_of_the_nets_scores_on_normalised_images(checkpoint, digits):
    model = volnet.load(checkpoint)
    probabilities = model.predict(digits)
    assert probabilities.shape == (7, 10)
    np.testing.assert_allclose(probabilities.sum(axis=1), 1, rtol=1e-6)
    assert model.normalizer is not None
    normalised = (digits - model.normalizer.mean) / model.normalizer.std  # the checkpoint's own numbers
    expected = softmax(model.net.forward(normalised.astype(np.float32), train=False))
    np.testing.assert_allclose(probabilities, expected, rtol=1e-5, atol=1e-7)
    assert (probabilities.argmax(axis=1) == load_data("mnist5k", split="test").labels[:7]).mean() > 0.5


def test_classes_and_the_network_are_reachable(checkpoint):
    model = volnet.load(checkpoint)
    assert model.classes == tuple("0123456789")
    assert isinstance(model.net, volnet.Sequential)
    assert model.input_shape == (28, 28, 1)
    assert "10 classes" in repr(model)


def test_one_volume_gives_the_row_of_its_batch(checkpoint, digits):
    model = volnet.load(checkpoint)
    one = model.predict(digits[3])
    assert one.shape == (10,)
    np.testing.assert_allclose(one, model.predict(digits)[3], rtol=1e-5, atol=1e-7)  # float32, other BLAS blocking
    np.testing.assert_allclose(model.predict(digits, batch_size=2), model.predict(digits), rtol=1e-5, atol=1e-7)
    assert model.predict(digits[:0]).shape == (0, 10)


@pytest.mark.parametrize("shape", [(28, 28), (28, 28, 3), (2, 28, 28), (2, 32, 32, 1), (1, 2, 28, 28, 1)])
def test_a_wrong_shape_names_the_expected_one(checkpoint, shape):
    with pytest.raises(ValueError, match=r"\(H, W, D\) = \(28, 28, 1\) or a batch \(N, H, W, D\) = "
                                         rf"\(N, 28, 28, 1\), got shape \({shape[0]}, "):
        volnet.load(checkpoint).predict(np.zeros(shape, np.float32))


def test_images_must_be_floats_in_zero_to_one(checkpoint, digits):
    model = volnet.load(checkpoint)
    with pytest.raises(ValueError, match="divide 8-bit images by 255"):
        model.predict((digits * 255).astype(np.uint8))
    with pytest.raises(ValueError, match=r"values in \[0, 1\].*got 0 to 255"):
        model.predict(digits * 255)


def test_save_round_trips_and_the_command_line_reads_the_copy(checkpoint, digits, tmp_path, capsys):
    model = volnet.load(checkpoint)
    copy = model.save(tmp_path / "copy" / "model.safetensors")
    assert sorted(p.name for p in copy.parent.iterdir()) == ["model.safetensors"]  # no temporary file left
    again = volnet.load(copy)
    np.testing.assert_array_equal(again.predict(digits), model.predict(digits))
    assert again.classes == model.classes and again.metadata["train"] == model.metadata["train"]
    assert main(["eval", str(copy)]) == 0
    assert "accuracy" in capsys.readouterr().out


def test_save_writes_the_current_weights(checkpoint, digits, tmp_path):
    model = volnet.load(checkpoint)
    model.net.layers[-1].params()[-1].value[:] += np.arange(10, dtype=np.float32)  # FC biases: favour class 9
    changed = model.predict(digits)
    np.testing.assert_array_equal(volnet.load(model.save(tmp_path / "changed.safetensors")).predict(digits), changed)


def test_a_net_trained_in_python_saves_and_loads(tmp_path, digits):
    net = volnet.build("INPUT[28x28x1] -> FC3")
    model = volnet.Model(net, classes=["zero", "one", "two"])
    loaded = volnet.load(model.save(tmp_path / "net.safetensors"))
    assert loaded.classes == ("zero", "one", "two") and loaded.normalizer is None
    np.testing.assert_array_equal(loaded.predict(digits), model.predict(digits))
    with pytest.raises(ValueError, match="2 class names for a net with 3 output scores"):
        volnet.Model(net, classes=["a", "b"])


def test_load_names_a_missing_file(tmp_path):
    with pytest.raises(CheckpointError, match="does not exist"):
        volnet.load(tmp_path / "nothing.safetensors")


def test_summary_of_a_checkpoint_prints_its_layer_table(checkpoint, capsys):
    assert main(["summary", str(checkpoint)]) == 0
    table = capsys.readouterr().out
    assert "1  Conv2D(K=4, F=3, P=1)  28x28x4" in table and "parameters: 7,898" in table  # 40 + BN 8 + 7,850
    assert main(["summary", "lenet5"]) == 0  # zoo names
    assert "parameters: 61,706" in capsys.readouterr().out
    assert main(["summary", "INPUT[8x8x1] -> FC2"]) == 0  # and notation still work
    assert "parameters: 130" in capsys.readouterr().out
    assert main(["summary", str(checkpoint), "--input", "32x32x1"]) == 2
    assert "do not apply to a checkpoint" in capsys.readouterr().err


def _fresh_python(code):
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    return result.stdout


def test_submodules_are_reachable_after_a_bare_import():
    out = _fresh_python("import volnet\nnet = volnet.zoo.vgg16(allocate=False)\n"
                        "print(net.num_params, volnet.load.__module__, volnet.Sequential.__name__)")
    assert out.split() == ["138357544", "volnet.train.model", "Sequential"]


def test_importing_volnet_and_building_the_parser_imports_neither_numpy_nor_numba():
    # what keeps `volnet --help` quick (about 80 ms on the 2-core VM, against 0.7 s when it imported Numba)
    out = _fresh_python("import sys\nimport volnet\nprint('numba' in sys.modules, 'numpy' in sys.modules)\n"
                        "import volnet.cli\nvolnet.cli.build_parser()\n"
                        "print('numba' in sys.modules, 'numpy' in sys.modules)")
    assert out.split() == ["False", "False", "False", "False"]


def test_an_unknown_attribute_is_an_attribute_error():
    with pytest.raises(AttributeError, match="has no attribute 'nothing'"):
        volnet.nothing  # noqa: B018
