"""The PyTorch engine: volnet's training loop with each step computed by PyTorch (CPU, CUDA, DDP workers).

:class:`TorchEngine` follows :class:`volnet.train.engines.Engine`: the
:class:`~volnet.train.Trainer` keeps the epochs, the seeded order,
augmentation, normalisation, schedule, history and checkpoints; this engine
runs the forward pass, the loss, the backward pass and the update on a
model that :func:`~volnet.interop.to_torch` builds from the volnet network.
Each volnet optimizer becomes its ``torch.optim`` twin (the update rules are
tested equal), the schedule's rate is set on the param groups before every
update, and before every checkpoint the weights, buffers and optimizer
caches are written back into the volnet network and optimizer, so the
checkpoint is the same file the NumPy engine writes (and either engine
resumes it).

Several workers (``distributed=True``, started by :func:`~volnet.interop.ddp.launch` or
``torchrun``): one process per worker, DistributedDataParallel (gloo on
CPU, NCCL on CUDA). Every worker draws the same order and augmentation
from the same seeded generator and takes its own contiguous share of each
batch (``numpy.array_split`` of the batch across workers), so ``--batch-size``
stays the images of one step, across all workers. The loss of each worker
is scaled so that DDP's gradient average is the gradient of the mean loss
over the whole batch: N workers on B/N images each compute the step one
process computes on B images. Without SyncBatchNorm each worker normalises
with its own share's batch statistics, and the running averages are rank
0's (DDP broadcasts them before each forward).

Dropout masks come from PyTorch's generator, seeded before every step from
the volnet Dropout layers' generators (saved in the checkpoint), so a run
with dropout resumes exactly on this engine; the masks differ from the
NumPy engine's.

PyTorch is imported when an engine is made, never when volnet is imported.
"""

from __future__ import annotations

import os
import warnings
from dataclasses import dataclass

import numpy as np

from ..train.restore import layer_generators
from ..train.engines import StepResult
from ..train.loop import check_labelled
from .ddp import follow_launcher
from .torch_bridge import modules_per_layer, paired_arrays, to_torch
from .torch_setup import EngineError, require_torch

DEVICES = ("auto", "cpu", "cuda")

# volnet optimizer state name -> torch.optim state key, per update rule
_STATE_KEYS = {"velocity": "momentum_buffer", "sum_sq": "sum", "square_avg": "square_avg", "m": "exp_avg",
               "v": "exp_avg_sq"}


def is_worker() -> bool:
    """True in a process started by torchrun or :func:`~volnet.interop.ddp.launch` (the launcher sets these
    variables)."""
    return "TORCHELASTIC_RUN_ID" in os.environ or int(os.environ.get("WORLD_SIZE", "1")) > 1


def resolve_device(device: str) -> str:
    """``"cpu"`` or ``"cuda"`` for ``"auto"``, ``"cpu"`` or ``"cuda"``; an EngineError for cuda without a GPU."""
    torch = require_torch()
    if device not in DEVICES:
        raise EngineError(f"device must be one of {', '.join(DEVICES)}, got {device!r}")
    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cuda" and not torch.cuda.is_available():
        build = f"built for CUDA {torch.version.cuda}" if torch.version.cuda else "a CPU-only build"
        raise EngineError(f"--device cuda: PyTorch {torch.__version__} ({build}) sees no CUDA GPU; use --device cpu "
                          "or --device auto")
    return device


def check_sync_bn(sync_bn: bool, device: str) -> None:
    """An EngineError for SyncBatchNorm on CPU, which PyTorch does not support."""
    if sync_bn and device != "cuda":
        raise EngineError("--sync-bn: PyTorch's SyncBatchNorm runs on CUDA only; on CPU each worker normalises "
                          "with its own share's batch statistics (leave --sync-bn out)")


def torch_optimizer(torch, params: list, optimizer):
    """The ``torch.optim`` optimizer with ``optimizer``'s update rule and hyperparameters, on ``params``."""
    config, lr = optimizer.get_config(), optimizer.lr
    name, decay = config["name"], config["weight_decay"]
    if name in ("sgd", "momentum", "nesterov"):
        return torch.optim.SGD(params, lr=lr, momentum=config["momentum"], nesterov=config["nesterov"],
                               weight_decay=decay)
    if name == "adagrad":
        return torch.optim.Adagrad(params, lr=lr, eps=config["eps"], weight_decay=decay)
    if name == "rmsprop":
        return torch.optim.RMSprop(params, lr=lr, alpha=config["decay_rate"], eps=config["eps"], weight_decay=decay)
    if name == "adam":
        return torch.optim.Adam(params, lr=lr, betas=tuple(config["betas"]), eps=config["eps"], weight_decay=decay)
    raise ValueError(f"the torch engine has no twin for the optimizer {name!r}")


@dataclass(frozen=True)
class _Pair:
    """One array of the network in both engines: the volnet Param (None for a buffer), its live array,
    the torch tensor, and the maps between the two layouts (they also map the optimizer's caches)."""

    param: object
    array: np.ndarray
    tensor: object
    forward: object
    backward: object


def _pair_arrays(net, model) -> list[_Pair]:
    """Every parameter and buffer of ``net`` beside its tensor in ``model`` (built by :func:`to_torch`)."""
    pairs = []
    for layer, name, array, tensor, forward, backward in paired_arrays(net, model):
        param = next((p for p in layer.params() if p.name == name), None)  # None for a buffer
        pairs.append(_Pair(param, array, tensor, forward, backward))
    return pairs


def _per_sample_loss(torch, scores, labels, loss: str, weights=None):
    """The sum over the batch of each image's loss (volnet's definitions: softmax cross-entropy, CS231n hinge),
    each times its weight when ``weights`` (a tensor, one per image) is given."""
    if weights is not None:
        if loss == "softmax":
            each = torch.nn.functional.cross_entropy(scores, labels, reduction="none")
        else:
            margins = (scores - scores.gather(1, labels[:, None]) + 1.0).clamp(min=0)
            each = margins.sum(dim=1) - 1.0  # the label's own margin (1) is not counted
        return (each * weights).sum()
    if loss == "softmax":
        return torch.nn.functional.cross_entropy(scores, labels, reduction="sum")
    correct = scores.gather(1, labels[:, None])
    margins = (scores - correct + 1.0).clamp(min=0)
    return margins.sum() - margins.gather(1, labels[:, None]).sum()  # the label's own margin (1) is not counted


class TorchEngine:
    """Run volnet's training steps in PyTorch; pass it to :class:`~volnet.train.Trainer` as ``engine``.

    Args:
        device: ``"auto"`` (CUDA when there is a GPU), ``"cpu"`` or ``"cuda"``. Default: "auto"
        distributed: join the workers that torchrun or :func:`~volnet.interop.ddp.launch` started (reads
            ``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``, ``MASTER_ADDR``, ``MASTER_PORT``). Default: False
        sync_bn: SyncBatchNorm across workers (CUDA only). Default: False

    Raises:
        ImportError: PyTorch is not installed (the message has the install line).
        EngineError: ``device="cuda"`` without a GPU; ``sync_bn`` on CPU.

    Example:
        >>> from volnet import Sequential
        >>> from volnet.layers import FC
        >>> from volnet.optim import SGD
        >>> from volnet.train import fit
        >>> net = Sequential([FC(3)], input_shape=(2, 2, 1))
        >>> images, labels = np.zeros((8, 2, 2, 1), "float32"), np.arange(8) % 3
        >>> len(fit(net, images, labels, SGD(net.params(), lr=0.1), batch_size=4, engine=TorchEngine("cpu")))
        1
    """

    name = "torch"

    def __init__(self, device: str = "auto", *, distributed: bool = False, sync_bn: bool = False):
        self.torch = torch = require_torch()
        self.device_kind = resolve_device(device)
        self.distributed, self.sync_bn = distributed, sync_bn
        check_sync_bn(sync_bn, self.device_kind)
        if distributed:
            follow_launcher()  # before waiting for the other workers: a launcher killed meanwhile ends this one
        self.rank, self.world, local_rank = 0, 1, 0
        if distributed:
            import torch.distributed as dist

            self.dist = dist
            if not dist.is_initialized():
                dist.init_process_group("nccl" if self.device_kind == "cuda" else "gloo")
            self.rank, self.world = dist.get_rank(), dist.get_world_size()
            local_rank = int(os.environ.get("LOCAL_RANK", "0"))
        if self.device_kind == "cuda":
            if local_rank >= torch.cuda.device_count():
                raise EngineError(f"worker {local_rank} of this machine has no GPU: it has "
                                  f"{torch.cuda.device_count()}; start at most that many workers per machine")
            torch.cuda.set_device(local_rank)
            self.device = torch.device("cuda", local_rank)
        else:
            self.device = torch.device("cpu")
        self.net = self.optimizer = self.model = self.module = None
        self._loss = None
        self.class_weight = None  # per-class weights (C,) of the loss's mean, set by the trainer

    @property
    def writes_files(self) -> bool:
        return self.rank == 0

    # -- moving the run between volnet and PyTorch -------------------------------
    def start(self, net, optimizer) -> None:
        """Build the PyTorch model and optimizer from ``net`` and ``optimizer`` as they are now."""
        torch = self.torch
        self.net, self.optimizer = net, optimizer
        plain = to_torch(net).to(self.device)
        self._pairs = _pair_arrays(net, plain)  # tensors that the wrapped model below shares
        index = {id(p): j for j, p in enumerate(optimizer.params)}
        self._param_pairs = [None] * len(optimizer.params)
        for pair in self._pairs:
            if pair.param is not None and id(pair.param) in index:
                self._param_pairs[index[id(pair.param)]] = pair
        if any(pair is None for pair in self._param_pairs):
            raise ValueError("the optimizer holds parameters that are not the network's; build it on net.params()")
        for pair in self._pairs:  # frozen layers' parameters (not the optimizer's): autograd computes no gradient
            if pair.param is not None and id(pair.param) not in index:
                pair.tensor.requires_grad_(False)
        # the frozen first layers run in inference mode, as on the NumPy engine (Sequential.frozen_prefix)
        self._frozen_modules = list(plain)[:sum(modules_per_layer(net)[:net.frozen_prefix])]
        params = [pair.tensor for pair in self._param_pairs]
        self.opt = torch_optimizer(torch, params, optimizer)
        self._load_optimizer_state()
        self.module = plain
        if self.distributed:
            model = torch.nn.SyncBatchNorm.convert_sync_batchnorm(plain) if self.sync_bn else plain
            ids = [self.device.index] if self.device_kind == "cuda" else None
            self.model = torch.nn.parallel.DistributedDataParallel(model, device_ids=ids)  # syncs buffers too
            self.module = model
        else:
            self.model = plain
        self._generators = [g for _, g in sorted(layer_generators(net).items())]

    def _load_optimizer_state(self) -> None:
        """volnet's caches and step count into the torch optimizer's state, in torch's layout."""
        torch, opt = self.torch, self.opt
        state, steps = self.optimizer.state(), self.optimizer.steps
        for j, pair in enumerate(self._param_pairs):
            tensor, forward = pair.tensor, pair.forward
            entry = {}
            for name, arrays in state.items():
                if name == "velocity" and steps == 0:
                    continue  # torch starts the buffer from the first gradient, as volnet's zeros do
                entry[_STATE_KEYS[name]] = torch.from_numpy(np.ascontiguousarray(forward(arrays[j]))).to(tensor)
            if self.optimizer.name in ("adagrad", "rmsprop", "adam"):
                scalar = torch.float64 if torch.get_default_dtype() == torch.float64 else torch.float32  # torch's
                entry["step"] = torch.tensor(float(steps), dtype=scalar)
            if entry:
                opt.state[tensor] = entry

    def pull(self) -> None:
        """Weights, buffers (BatchNorm's running averages) and optimizer caches back into volnet's arrays."""
        if self.model is None:
            return
        for pair in self._pairs:
            pair.array[...] = pair.backward(pair.tensor.detach().cpu().numpy())
        arrays = {}
        for name, current in self.optimizer.state().items():
            saved = []
            for j, pair in enumerate(self._param_pairs):
                value = self.opt.state.get(pair.tensor, {}).get(_STATE_KEYS[name])
                saved.append(np.zeros_like(current[j]) if value is None else
                             pair.backward(value.detach().cpu().numpy()))
            arrays[name] = saved
        self.optimizer.load_state_dict({"arrays": arrays, "scalars": {"steps": self.optimizer.steps,
                                                                       "lr": self.optimizer.lr}})

    def finish(self) -> None:
        self.pull()

    # -- one step ----------------------------------------------------------------
    def _share(self, n: int) -> np.ndarray:
        """This worker's contiguous share of ``n`` images (all of them in one process)."""
        return np.array_split(np.arange(n), self.world)[self.rank]

    def _tensors(self, images, labels):
        torch = self.torch
        x = np.ascontiguousarray(images.transpose(0, 3, 1, 2), dtype=self.net.dtype)  # the net's float type
        x = torch.from_numpy(x).to(self.device, non_blocking=True)
        y = torch.from_numpy(np.asarray(labels, dtype=np.int64)).to(self.device, non_blocking=True)
        return x, y

    def _all_sum(self, values):
        """The sums over all workers of a few float64 numbers."""
        torch = self.torch
        totals = torch.tensor(values, dtype=torch.float64, device=self.device)
        if self.distributed and self.world > 1:
            self.dist.all_reduce(totals)
        return totals.cpu().numpy()

    def _seed_dropout(self) -> None:
        """Seed PyTorch's generator from the volnet Dropout layers' (saved) generators, a seed per worker."""
        if self._generators:
            seed = sum(int(g.integers(2**62)) for g in self._generators) % 2**62
            self.torch.manual_seed(seed + self.rank)

    def forward(self, images, labels, loss: str) -> StepResult:
        share = self._share(len(labels))
        x, y = self._tensors(images[share], labels[share])
        self._seed_dropout()
        self.model.train()
        for module in self._frozen_modules:
            module.eval()
        scores = self.model(x).flatten(1)  # a net ending in GAP gives N x classes x 1 x 1
        total = _per_sample_loss(self.torch, scores, y, loss, self._weights(labels[share]))
        # the whole batch's images, or with class weights the sum of their weights: the mean's denominator
        count = len(labels) if self.class_weight is None else float(np.asarray(self.class_weight)[labels].sum())
        # DDP averages the workers' gradients: scaled so, the average is the gradient of the mean over the batch
        self._loss = total * (self.world / count)
        finite = self.torch.isfinite(scores).all()
        correct = (scores.argmax(dim=1) == y).sum()
        loss_sum, correct, infinite = self._all_sum([float(total.detach()), float(correct), float(not finite)])
        if infinite:
            return StepResult(float("nan"), 0, False)
        return StepResult(float(loss_sum / count), int(correct), True)

    def _weights(self, labels):
        """Each image's class weight as a tensor in the net's dtype (None without class weights)."""
        if self.class_weight is None:
            return None
        weights = np.asarray(self.class_weight, dtype=self.net.dtype)[np.asarray(labels)]
        return self.torch.from_numpy(weights).to(self.device)

    def update(self) -> None:
        for group in self.opt.param_groups:
            group["lr"] = self.optimizer.lr  # the schedule sets the volnet optimizer's rate
        self.opt.zero_grad(set_to_none=True)
        if self.distributed:
            with warnings.catch_warnings():  # this backward pass only, not the rest of the process
                # DDP's reducer warns when a gradient's strides differ from its bucket's only along a dimension
                # of size 1
                warnings.filterwarnings("ignore", message="Grad strides do not match bucket view strides")
                self._loss.backward()
        else:
            self._loss.backward()
        self._loss = None
        self.opt.step()
        self.optimizer.steps += 1

    # -- inference ---------------------------------------------------------------
    def _sync_buffers(self) -> None:
        """Rank 0's BatchNorm running averages on every worker (DDP only does it before a training forward)."""
        if self.distributed and self.world > 1:
            for buffer in self.module.buffers():
                self.dist.broadcast(buffer, 0)

    def _inference_sums(self, images, labels, loss: str, batch_size: int, transform=None):
        """``[loss sum, correct, non-finite, weight sum]`` of this worker's share, in inference mode (the weight
        sum is the number of images without class weights)."""
        torch = self.torch
        share = self._share(len(labels))
        self.module.eval()
        sums = [0.0, 0.0, 0.0, 0.0]
        with torch.no_grad():
            for start in range(0, len(share), batch_size):
                index = share[start:start + batch_size]
                batch = images[index] if transform is None else transform(images[index])
                x, y = self._tensors(batch, labels[index])
                scores = self.module(x).flatten(1)
                if not torch.isfinite(scores).all():
                    sums[2] += 1
                    continue
                weights = self._weights(labels[index])
                sums[0] += float(_per_sample_loss(torch, scores, y, loss, weights))
                sums[1] += float((scores.argmax(dim=1) == y).sum())
                sums[3] += len(index) if weights is None else float(weights.sum())
        return self._all_sum(sums)

    def inference_loss(self, images, labels, loss: str) -> tuple[bool, float]:
        self._sync_buffers()
        loss_sum, _, infinite, count = self._inference_sums(images, labels, loss, max(len(labels), 1))
        return (False, float("nan")) if infinite else (True, float(loss_sum / count))

    def evaluate(self, images, labels, batch_size: int, loss: str, transform=None) -> tuple[float, float]:
        if self.model is None:  # not training: the volnet network, in NumPy
            from ..train.loop import evaluate

            return evaluate(self.net, images, labels, batch_size=batch_size, loss=loss, transform=transform,
                            class_weight=self.class_weight)
        images, labels = check_labelled(self.net, images, labels, "evaluation")
        self._sync_buffers()
        loss_sum, correct, infinite, count = self._inference_sums(images, labels, loss, batch_size, transform)
        if infinite:
            return float("nan"), float(correct / len(labels))
        return float(loss_sum / count), float(correct / len(labels))

    # -- workers -----------------------------------------------------------------
    def agree(self, value: int) -> int:
        if not (self.distributed and self.world > 1):
            return int(value)
        largest = self.torch.tensor([int(value)], dtype=self.torch.int64, device=self.device)
        self.dist.all_reduce(largest, op=self.dist.ReduceOp.MAX)
        return int(largest.item())

    def barrier(self) -> None:
        if self.distributed and self.world > 1:
            self.dist.barrier()

    def close(self) -> None:
        """Leave the group of workers (when this engine joined one)."""
        if self.distributed and self.dist.is_initialized():
            self.dist.destroy_process_group()
