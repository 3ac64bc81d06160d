"""Optimizers and learning-rate schedules: hand-computed steps, torch.optim, state round-trips."""

import contextlib
import doctest
import json
import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from strategies import numba_off

import volnet.optim
import volnet.optim.schedules
from volnet.layers import Param
from volnet.ops import jit
from volnet.optim import (SGD, Adagrad, Adam, Constant, CosineAnnealing, LinearWarmup, RMSProp, StepDecay,
                          cache_multiplier, make_optimizer, optimizer_from_config, schedule_from_config)

NAMES = ["sgd", "momentum", "nesterov", "adagrad", "rmsprop", "adam"]


def two_steps(opt, p, g1, g2):
    """Values of ``p`` after a step with ``g1`` and after another with ``g2``."""
    p.grad = np.array(g1, dtype=float)
    opt.step()
    first = p.value.copy()
    p.grad = np.array(g2, dtype=float)
    opt.step()
    return first, p.value.copy()


# -- each rule, two steps by hand ---------------------------------------------

def test_sgd_by_hand():
    p = Param("w", np.array([1.0, -2.0]))
    first, second = two_steps(SGD([p], lr=0.1, momentum=0), p, [0.5, 1.0], [-1.0, 0.5])
    np.testing.assert_allclose(first, [0.95, -2.1], rtol=1e-12)  # w -= 0.1*g
    np.testing.assert_allclose(second, [1.05, -2.15], rtol=1e-12)


def test_momentum_by_hand():
    p = Param("w", np.array([1.0, -2.0]))
    opt = SGD([p], lr=0.1, momentum=0.9)
    first, second = two_steps(opt, p, [0.5, 1.0], [-1.0, 0.5])
    np.testing.assert_allclose(first, [0.95, -2.1], rtol=1e-12)  # v = g = [0.5, 1]
    # v = 0.9*[0.5, 1] + [-1, 0.5] = [-0.55, 1.4]; w -= 0.1*v
    np.testing.assert_allclose(second, [1.005, -2.24], rtol=1e-12)
    np.testing.assert_allclose(opt.state()["velocity"][0], [-0.55, 1.4], rtol=1e-12)


def test_nesterov_by_hand():
    p = Param("w", np.array([1.0, -2.0]))
    first, second = two_steps(SGD([p], lr=0.1, momentum=0.9, nesterov=True), p, [0.5, 1.0], [-1.0, 0.5])
    # v = [0.5, 1]; w -= 0.1*(g + 0.9*v) = 0.1*[0.95, 1.9]
    np.testing.assert_allclose(first, [0.905, -2.19], rtol=1e-12)
    # v = [-0.55, 1.4]; g + 0.9*v = [-1.495, 1.76]
    np.testing.assert_allclose(second, [1.0545, -2.366], rtol=1e-12)


def test_adagrad_by_hand():
    p = Param("w", np.array([1.0, -2.0]))
    opt = Adagrad([p], lr=0.1, eps=1e-12)
    first, second = two_steps(opt, p, [3.0, -4.0], [4.0, 3.0])
    np.testing.assert_allclose(first, [0.9, -1.9], rtol=1e-10)  # s = [9, 16]; w -= 0.1*[3/3, -4/4]
    np.testing.assert_allclose(second, [0.82, -1.96], rtol=1e-10)  # s = [25, 25]; w -= 0.1*[4/5, 3/5]
    np.testing.assert_allclose(opt.state()["sum_sq"][0], [25, 25])


def test_rmsprop_by_hand():
    p = Param("w", np.array([1.0, -2.0]))
    opt = RMSProp([p], lr=0.1, decay_rate=0.75, eps=1e-12)
    first, second = two_steps(opt, p, [2.0, -4.0], [-1.0, 2.0])
    np.testing.assert_allclose(first, [0.8, -1.8], rtol=1e-10)  # s = 0.25*g^2 = [1, 4]; w -= 0.1*[2/1, -4/2]
    # s = 0.75*[1, 4] + 0.25*[1, 4] = [1, 4]; w -= 0.1*[-1/1, 2/2]
    np.testing.assert_allclose(second, [0.9, -1.9], rtol=1e-10)
    np.testing.assert_allclose(opt.state()["square_avg"][0], [1, 4])


def test_adam_by_hand():
    p = Param("w", np.array([1.0, -2.0]))
    opt = Adam([p], lr=0.1, betas=(0.5, 0.75), eps=1e-12)
    first, second = two_steps(opt, p, [2.0, -4.0], [1.0, 2.0])
    # t=1: m = [1, -2], v = [1, 4]; m/(1-0.5) = [2, -4], v/(1-0.75) = [4, 16]; w -= 0.1*[2/2, -4/4]
    np.testing.assert_allclose(first, [0.9, -1.9], rtol=1e-10)
    # t=2: m = 0.5*[1, -2] + 0.5*[1, 2] = [1, 0]; v = 0.75*[1, 4] + 0.25*[1, 4] = [1, 4]
    # corrections 1 - 0.5**2 = 0.75 and 1 - 0.75**2 = 0.4375: w -= 0.1 * (m/0.75) / sqrt(v/0.4375)
    np.testing.assert_allclose(second, [0.9 - 0.1 * (1 / 0.75) / math.sqrt(1 / 0.4375), -1.9], rtol=1e-10)
    np.testing.assert_allclose(opt.state()["m"][0], [1, 0])
    np.testing.assert_allclose(opt.state()["v"][0], [1, 4])
    assert opt.state_dict()["scalars"]["steps"] == 2


def test_weight_decay_is_added_to_the_gradient():
    p = Param("w", np.array([1.0, -2.0]))
    first, second = two_steps(SGD([p], lr=0.1, momentum=0, weight_decay=0.5), p, [0.5, 1.0], [0.5, 1.0])
    np.testing.assert_allclose(first, [0.9, -2.0], rtol=1e-12)  # g + 0.5*w = [1, 0]
    np.testing.assert_allclose(second, [0.805, -2.0], rtol=1e-12)  # g + 0.5*w = [0.95, 0]
    np.testing.assert_array_equal(p.grad, [0.5, 1.0])  # the gradient itself is not changed


def test_float32_parameters_stay_float32():
    p = Param("w", np.ones(3, dtype=np.float32))
    opt = Adam([p])
    p.grad = np.ones(3, dtype=np.float32)
    opt.step()
    assert p.value.dtype == np.float32 and opt.state()["v"][0].dtype == np.float32


def test_step_checks_every_gradient_before_changing_any_weight():
    a, b = Param("a", np.ones(2)), Param("b", np.ones(2))
    opt = SGD([a, b], momentum=0)
    a.grad = np.ones(2)
    with pytest.raises(RuntimeError, match=r"parameter 1 \(b\) has no gradient"):
        opt.step()
    np.testing.assert_array_equal(a.value, [1, 1])
    b.grad = np.ones(3)
    with pytest.raises(ValueError, match=r"parameter 1 \(b\): gradient of shape \(3,\)"):
        opt.step()


# -- against torch.optim --------------------------------------------------------

TORCH_CASES = [
    ("sgd", {"lr": 0.05}, "SGD", {"lr": 0.05}),
    ("momentum", {"lr": 0.05, "momentum": 0.9}, "SGD", {"lr": 0.05, "momentum": 0.9}),
    ("nesterov", {"lr": 0.05, "momentum": 0.8}, "SGD", {"lr": 0.05, "momentum": 0.8, "nesterov": True}),
    ("adagrad", {"lr": 0.1}, "Adagrad", {"lr": 0.1}),
    ("rmsprop", {"lr": 0.01, "decay_rate": 0.9}, "RMSprop", {"lr": 0.01, "alpha": 0.9}),
    ("adam", {"lr": 0.01, "betas": (0.8, 0.99)}, "Adam", {"lr": 0.01, "betas": (0.8, 0.99)}),
]


@pytest.mark.parametrize("changing_lr", [False, True], ids=["constant-lr", "changing-lr"])
@pytest.mark.parametrize("weight_decay", [0.0, 0.1], ids=["no-decay", "decay"])
@pytest.mark.parametrize("name, kwargs, torch_name, torch_kwargs", TORCH_CASES, ids=[c[0] for c in TORCH_CASES])
def test_matches_torch(name, kwargs, torch_name, torch_kwargs, weight_decay, changing_lr):
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(0)
    values = [rng.standard_normal((3, 4)), rng.standard_normal(5)]
    params = [Param(f"p{i}", v.copy()) for i, v in enumerate(values)]
    tensors = [torch.tensor(v.copy(), requires_grad=True) for v in values]
    opt = make_optimizer(name, params, weight_decay=weight_decay, **kwargs)
    topt = getattr(torch.optim, torch_name)(tensors, weight_decay=weight_decay, **torch_kwargs)
    for step in range(5):
        if changing_lr:  # as a schedule would set it
            opt.lr = topt.param_groups[0]["lr"] = kwargs["lr"] * (1.0, 0.5, 0.5, 0.1, 2.0)[step]
        for p, t in zip(params, tensors):
            g = rng.standard_normal(p.value.shape)
            p.grad, t.grad = g, torch.tensor(g.copy())
        opt.step()
        topt.step()
    for p, t in zip(params, tensors):
        np.testing.assert_allclose(p.value, t.detach().numpy(), rtol=1e-10, atol=1e-14)


# -- state ----------------------------------------------------------------------

def random_params(rng):
    return [Param("W", rng.standard_normal((2, 3))), Param("b", rng.standard_normal(3))]


@pytest.mark.parametrize("name", NAMES)
def test_state_dict_resumes_exactly(name):
    rng = np.random.default_rng(1)
    grads = [[rng.standard_normal((2, 3)), rng.standard_normal(3)] for _ in range(5)]
    params = random_params(rng)
    opt = make_optimizer(name, params, lr=0.05, weight_decay=0.01)

    def run(opt, params, steps):
        for g in steps:
            for p, gi in zip(params, g):
                p.grad = gi
            opt.step()

    run(opt, params, grads[:3])
    saved = opt.state_dict()
    saved_values = [p.value.copy() for p in params]
    json.dumps(saved["scalars"])  # scalars go to JSON, arrays to safetensors
    assert set(saved["arrays"]) == set(opt.state_names) and len(saved["arrays"]) == opt.cache_multiplier

    opt.lr = 0.02  # as a schedule might have set it before saving
    saved = opt.state_dict()
    fresh_params = [Param(p.name, v.copy()) for p, v in zip(params, saved_values)]
    fresh = make_optimizer(name, fresh_params, lr=0.05, weight_decay=0.01)
    fresh.load_state_dict(saved)
    assert fresh.lr == 0.02
    run(opt, params, grads[3:])
    run(fresh, fresh_params, grads[3:])
    for p, q in zip(params, fresh_params):
        np.testing.assert_array_equal(p.value, q.value)
    for key, arrays in opt.state().items():
        for a, b in zip(arrays, fresh.state()[key]):
            np.testing.assert_array_equal(a, b)
    assert fresh.state_dict()["scalars"] == opt.state_dict()["scalars"] == {"steps": 5, "lr": 0.02}


def test_state_dict_holds_copies():
    p = Param("w", np.ones(2))
    opt = SGD([p])
    p.grad = np.ones(2)
    opt.step()
    saved = opt.state_dict()
    opt.step()
    np.testing.assert_array_equal(saved["arrays"]["velocity"][0], [1, 1])


def test_loading_mismatched_state_is_explained():
    rng = np.random.default_rng(2)
    opt = make_optimizer("adam", random_params(rng))
    wrong_shape = make_optimizer("adam", [Param("W", np.zeros((2, 3))), Param("b", np.zeros(4))])
    with pytest.raises(ValueError, match=r"parameter 1 \(b\): loaded state 'm' has shape \(4,\) "
                                         r"but the parameter has shape \(3,\)"):
        opt.load_state_dict(wrong_shape.state_dict())
    with pytest.raises(ValueError, match="has 1 arrays but the optimizer has 2 parameters"):
        opt.load_state_dict(make_optimizer("adam", [Param("W", np.zeros((2, 3)))]).state_dict())
    with pytest.raises(ValueError, match=r"Adam keeps state \['m', 'v'\] but the loaded state has \['square_avg'\]"):
        opt.load_state_dict(make_optimizer("rmsprop", random_params(rng)).state_dict())
    with pytest.raises(ValueError, match="no scalar 'steps'"):
        opt.load_state_dict({"arrays": opt.state_dict()["arrays"], "scalars": {"lr": 0.1}})
    np.testing.assert_array_equal(opt.state()["m"][0], 0)  # nothing was half-loaded


def test_cache_multiplier():
    expected = {"sgd": 0, "momentum": 1, "nesterov": 1, "adagrad": 1, "rmsprop": 1, "adam": 2}
    assert {name: cache_multiplier(name) for name in NAMES} == expected
    params = random_params(np.random.default_rng(3))
    for name, count in expected.items():
        state = make_optimizer(name, params).state()
        assert len(state) == count and all(len(arrays) == len(params) for arrays in state.values())


# -- config and factory ---------------------------------------------------------

@pytest.mark.parametrize("name", NAMES)
def test_config_rebuilds_the_optimizer(name):
    opt = make_optimizer(name, [], lr=0.03, weight_decay=0.001)
    config = json.loads(json.dumps(opt.get_config()))
    assert config["name"] == name and config["lr"] == 0.03 and config["weight_decay"] == 0.001
    assert optimizer_from_config([], config).get_config() == opt.get_config()


def test_config_lists_every_hyperparameter():
    assert Adam([], lr=0.01).get_config() == {"name": "adam", "lr": 0.01, "betas": (0.9, 0.999), "eps": 1e-8,
                                              "weight_decay": 0.0}
    assert SGD([]).get_config() == {"name": "momentum", "lr": 0.01, "momentum": 0.9, "nesterov": False,
                                    "weight_decay": 0.0}
    assert repr(RMSProp([], decay_rate=0.9)) == "RMSProp(decay_rate=0.9)"


def test_factory_errors():
    with pytest.raises(ValueError, match="unknown optimizer 'adamw'; known: sgd, momentum, nesterov"):
        make_optimizer("adamw", [])
    with pytest.raises(ValueError, match="optimizer 'sgd' means momentum=0.0, got momentum=0.9"):
        make_optimizer("sgd", [], momentum=0.9)
    with pytest.raises(ValueError, match="Nesterov momentum needs momentum > 0"):
        make_optimizer("nesterov", [], momentum=0)
    assert isinstance(make_optimizer("nesterov", []), SGD) and make_optimizer("nesterov", []).nesterov


@pytest.mark.parametrize("cls, kwargs, message", [
    (SGD, {"lr": 0}, "learning rate must be a finite number > 0"),
    (SGD, {"lr": -1}, "learning rate must be a finite number > 0"),
    (SGD, {"momentum": 1.0}, r"momentum must be in \[0, 1\)"),
    (SGD, {"momentum": -0.1}, r"momentum must be in \[0, 1\)"),
    (SGD, {"weight_decay": -1e-4}, "weight_decay must be >= 0"),
    (Adagrad, {"eps": 0}, "eps must be > 0"),
    (RMSProp, {"decay_rate": 1.0}, r"decay_rate must be in \[0, 1\)"),
    (Adam, {"betas": (0.9, 1.0)}, r"betas\[1\] must be in \[0, 1\)"),
    (Adam, {"betas": (-0.1, 0.9)}, r"betas\[0\] must be in \[0, 1\)"),
    (Adam, {"betas": (0.9,)}, "betas must be a pair"),
    (Adam, {"eps": -1e-8}, "eps must be > 0"),
    (Adam, {"lr": float("nan")}, "learning rate must be a finite number > 0"),
    (Adam, {"lr": float("inf")}, "learning rate must be a finite number > 0"),
])
def test_rejects_bad_hyperparameters(cls, kwargs, message):
    with pytest.raises(ValueError, match=message):
        cls([], **kwargs)


# -- schedules ------------------------------------------------------------------

def test_step_decay_by_hand():
    s = StepDecay(lr=0.1, every=3, gamma=0.5)
    assert [s.lr_at(t) for t in (0, 2, 3, 5, 6, 9)] == pytest.approx([0.1, 0.1, 0.05, 0.05, 0.025, 0.0125])


def test_cosine_annealing_by_hand():
    s = CosineAnnealing(lr=0.1, T=4, min_lr=0.02)
    # 0.02 + 0.08 * (1 + cos(pi*t/4)) / 2
    expected = [0.1, 0.02 + 0.04 * (1 + math.sqrt(0.5)), 0.06, 0.02 + 0.04 * (1 - math.sqrt(0.5)), 0.02, 0.02, 0.02]
    assert [s.lr_at(t) for t in range(7)] == pytest.approx(expected, rel=1e-12)


def test_linear_warmup_by_hand():
    s = LinearWarmup(StepDecay(lr=0.1, every=2, gamma=0.5), warmup=4, start_factor=0.2)
    # ramp 0.1 * (0.2 + 0.8 * t/4) for t < 4, then the step decay started at t = 4
    expected = [0.02, 0.04, 0.06, 0.08, 0.1, 0.1, 0.05, 0.05, 0.025]
    assert [s.lr_at(t) for t in range(9)] == pytest.approx(expected, rel=1e-12)


def test_schedules_are_pure_functions_of_position():
    s = LinearWarmup(CosineAnnealing(lr=0.1, T=10), warmup=3)
    forward = [s.lr_at(t) for t in range(15)]
    assert [s.lr_at(t) for t in reversed(range(15))] == forward[::-1]
    assert s.lr_at(np.int64(5)) == forward[5]


def torch_lrs(torch, make_scheduler, lr, n):
    """The learning rates torch's scheduler gives at positions 0..n-1."""
    opt = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=lr)
    scheduler, lrs = make_scheduler(opt), []
    for _ in range(n):
        lrs.append(opt.param_groups[0]["lr"])
        opt.step()
        scheduler.step()
    return lrs


def test_schedules_match_torch():
    torch = pytest.importorskip("torch")
    sched = torch.optim.lr_scheduler
    cases = [
        (StepDecay(lr=0.1, every=3, gamma=0.5), lambda o: sched.StepLR(o, step_size=3, gamma=0.5), 0.1, 12),
        (CosineAnnealing(lr=0.1, T=8, min_lr=0.001), lambda o: sched.CosineAnnealingLR(o, T_max=8, eta_min=0.001),
         0.1, 9),
        (LinearWarmup(Constant(0.1), warmup=4, start_factor=0.25),
         lambda o: sched.LinearLR(o, start_factor=0.25, total_iters=4), 0.1, 8),
        (LinearWarmup(CosineAnnealing(lr=0.1, T=6), warmup=3),
         lambda o: sched.SequentialLR(o, [sched.LinearLR(o, start_factor=0.1, total_iters=3),
                                          sched.CosineAnnealingLR(o, T_max=6)], milestones=[3]), 0.1, 10),
    ]
    for ours, make_scheduler, lr, n in cases:
        np.testing.assert_allclose([ours.lr_at(t) for t in range(n)], torch_lrs(torch, make_scheduler, lr, n),
                                   rtol=1e-10, atol=1e-15, err_msg=repr(ours))


@pytest.mark.parametrize("schedule", [
    Constant(0.1), StepDecay(0.1, every=5), CosineAnnealing(0.1, T=20, min_lr=1e-4),
    LinearWarmup(CosineAnnealing(0.1, T=20), warmup=5, start_factor=0.01),
], ids=repr)
def test_schedule_config_round_trip(schedule):
    config = json.loads(json.dumps(schedule.get_config()))
    rebuilt = schedule_from_config(config)
    assert rebuilt.get_config() == schedule.get_config()
    assert [rebuilt.lr_at(t) for t in range(30)] == [schedule.lr_at(t) for t in range(30)]


@pytest.mark.parametrize("make, message", [
    (lambda: StepDecay(0.1, every=0), "every must be an integer >= 1"),
    (lambda: StepDecay(0.1, every=2, gamma=0), r"gamma must be in \(0, 1\]"),
    (lambda: CosineAnnealing(0.1, T=10, min_lr=0.2), r"min_lr must be in \[0, lr=0.1\]"),
    (lambda: CosineAnnealing(0, T=10), "learning rate must be a finite number > 0"),
    (lambda: LinearWarmup(0.1, warmup=3), "wraps a Schedule"),
    (lambda: LinearWarmup(Constant(0.1), warmup=0), "warmup must be an integer >= 1"),
    (lambda: Constant(0.1).lr_at(-1), "position must be >= 0"),
    (lambda: schedule_from_config({"name": "exponential"}), "unknown schedule 'exponential'; known: constant"),
])
def test_schedule_errors(make, message):
    with pytest.raises(ValueError, match=message):
        make()


def test_docstring_examples():
    for module in (volnet.optim, volnet.optim.schedules):
        assert doctest.testmod(module).failed == 0


@pytest.mark.skipif(not jit.ENABLED, reason="Numba is not installed (or VOLNET_NUMBA=0)")
@settings(max_examples=30, deadline=None)
@given(size=st.integers(1, 5000), dtype=st.sampled_from([np.float32, np.float64]), nesterov=st.booleans(),
       weight_decay=st.sampled_from([0.0, 1e-3]), steps=st.integers(1, 3), seed=st.integers(0, 2**32 - 1))
def test_compiled_momentum_step_gives_the_numpy_expressions_bit_for_bit(size, dtype, nesterov, weight_decay, steps,
                                                                       seed):
    rng = np.random.default_rng(seed)
    start = rng.standard_normal(size).astype(dtype)
    grads = [rng.standard_normal(size).astype(dtype) for _ in range(steps)]
    results = []
    for compiled in (True, False):
        with contextlib.nullcontext() if compiled else numba_off():
            p = Param("w", start.copy())
            opt = SGD([p], lr=0.05, momentum=0.9, nesterov=nesterov, weight_decay=weight_decay)
            for g in grads:
                p.grad = g
                opt.step()
            results.append((p.value, opt.state()["velocity"][0]))
    for got, expected in zip(*results):
        np.testing.assert_array_equal(got, expected)
        assert got.dtype == dtype


@pytest.mark.skipif(not jit.ENABLED, reason="Numba is not installed (or VOLNET_NUMBA=0)")
@settings(max_examples=20, deadline=None)
@given(size=st.integers(2, 3000), nesterov=st.booleans(), seed=st.integers(0, 2**32 - 1))
def test_a_momentum_step_split_over_threads_equals_the_one_piece_bit_for_bit(size, nesterov, seed):
    from volnet.ops import sgd, threads

    rng = np.random.default_rng(seed)
    w, g, v = (rng.standard_normal(size).astype(np.float32) for _ in range(3))
    one = [a.copy() for a in (w, g, v)]
    sgd.momentum_step(*one, 0.05, 0.9, nesterov, workers=threads.SERIAL)
    split = [a.copy() for a in (w, g, v)]
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(sgd, "MIN_PART_BYTES", 1)  # the second part starts mid-array
        sgd.momentum_step(*split, 0.05, 0.9, nesterov, workers=threads.Workers(2, blas_held=True))
    for got, expected in zip(split, one):
        np.testing.assert_array_equal(got, expected)
    assert not np.array_equal(one[0], w)  # the step changed the weights


def test_an_update_splits_only_parts_of_its_own_minimum():
    from volnet.ops import sgd, threads

    held = threads.Workers(2, blas_held=True)
    assert held.for_bytes(5 * 4 * 500_000, 500_000, sgd.MIN_PART_BYTES) == 1  # 9.5 MiB: one piece
    assert held.for_bytes(5 * 4 * 1_000_000, 1_000_000, sgd.MIN_PART_BYTES) == 2
    assert threads.memory_workers_for(10 * 2**20, 64, 2, minimum=2**22) == 2
    assert threads.memory_workers_for(10 * 2**20, 64, 2, minimum=2**24) == 1
