"""The notes' "decrease the batch size until it fits": the largest batch within a memory budget."""

from __future__ import annotations

from dataclasses import dataclass

from .memory import memory
from .units import format_bytes, parse_budget


@dataclass(frozen=True)
class BatchFit:
    """The largest batch that fits a budget, and why: see :func:`fit_batch`."""

    batch: int
    budget: int
    fixed: int
    total: int
    mode: str
    explanation: str

    def __int__(self) -> int:
        return self.batch


def fit_batch(report, budget, *, optimizer: str | None = None, dtype=None, mode: str = "train",
              cores: int | None = None) -> BatchFit:
    """The notes' "decrease the batch size until it fits": the largest N whose :class:`Memory` total fits.

    ``report`` is a :class:`~volnet.analysis.Report`; :func:`volnet.analysis.batch_fit` takes a network.

    ``fixed`` is what no batch size changes (parameters, gradients,
    optimizer cache, buffers); ``total`` the memory at the batch found.
    A batch of 0 means even one volume does not fit; ``explanation`` says
    whether the parameters alone already exceed the budget.
    """
    limit = parse_budget(budget)

    def at(n):
        return memory(report, mode, n, optimizer, dtype, cores)

    one = at(1)
    fixed = one.params + one.grads + one.optimizer_cache + one.buffers
    if one.total > limit:
        if fixed > limit:
            why = (f"even the parameters do not fit: {format_bytes(fixed)} for weights"
                   f"{', gradients and optimizer cache' if mode == 'train' else ''} against a budget of "
                   f"{format_bytes(limit)}; a smaller network (fewer or smaller FC layers hold most weights), "
                   "a smaller dtype, or an optimizer with less state (sgd) is needed")
        else:
            why = (f"the parameters take {format_bytes(fixed)} but one volume needs {format_bytes(one.total - fixed)} "
                   f"more, {format_bytes(one.total)} in all, against a budget of {format_bytes(limit)}")
        return BatchFit(0, limit, fixed, one.total, mode, why)
    low, high = 1, 2
    while at(high).total <= limit:
        low, high = high, high * 2
        if high > 2**40:
            break
    while high - low > 1:
        mid = (low + high) // 2
        low, high = (mid, high) if at(mid).total <= limit else (low, mid)
    best = at(low)
    why = (f"batch {low} needs {format_bytes(best.total)} ({format_bytes(fixed)} fixed, "
           f"{format_bytes(best.total - fixed)} for activations, workspace and data) within "
           f"{format_bytes(limit)}; batch {low + 1} needs {format_bytes(at(low + 1).total)}")
    return BatchFit(low, limit, fixed, best.total, mode, why)
